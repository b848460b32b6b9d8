/**
 * Restarts that do not wait for the driver's code to load. The crash sweeps restart the driver
 * after every kill, dozens of times, and in the emulated guest a fresh process spends seconds
 * loading the bundle before it does anything. A spare process, started once the running one is
 * ready, loads the code and waits at its gate (warm-gate.mjs); the restart opens the gate with
 * the environment of that start. What it then does with the pool and the store is what a cold
 * start does: only the loading was done beforehand.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, mkdirSync, openSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface Spawned { child: ChildProcess; log: string; exited: Promise<number | null> }

/** The driver (dist/dmthin-csi.mjs) with `args`, its output in `log`. */
export function launchDriver(root: string, args: string[], env: NodeJS.ProcessEnv, log: string, nodeArgs: string[] = []): Spawned {
  const fd = openSync(log, 'w');
  const child = spawn(process.execPath, [...nodeArgs, join(root, 'dist/dmthin-csi.mjs'), ...args], { stdio: ['ignore', fd, fd], env });
  closeSync(fd);
  return { child, log, exited: new Promise((resolve) => child.once('exit', (code) => resolve(code))) };
}

const alive = (c: ChildProcess) => c.exitCode === null && c.signalCode === null;

export class Spares {
  private spare: (Spawned & { gate: string; key: string }) | undefined;
  private count = 0;
  private readonly root: string;
  private readonly dir: string;

  /** `root`: the checkout, whose dist/ the spares load; `dir`: where their gate files go. */
  constructor(root: string, dir: string) {
    this.root = root;
    this.dir = dir;
  }

  /**
   * A driver with `args` and `base` + `env` for its environment: the spare, when one waits with
   * the same arguments and environment base (it then writes to the log it was given), else a new
   * process writing to `log`.
   */
  start(args: string[], base: NodeJS.ProcessEnv, env: Record<string, string>, log: string): Spawned {
    const s = this.spare;
    this.spare = undefined;
    if (s && s.key === key(args, base) && alive(s.child)) {
      writeFileSync(`${s.gate}.tmp`, JSON.stringify(env));
      renameSync(`${s.gate}.tmp`, s.gate); // whole, or not there: the spare reads it once it exists
      return s;
    }
    s?.child.kill('SIGKILL');
    return launchDriver(this.root, args, { ...base, ...env }, log);
  }

  /** Starts the next spare; called once the process it stands in for is ready, so as not to slow its start. */
  prepare(args: string[], base: NodeJS.ProcessEnv, log: string): void {
    this.spare?.child.kill('SIGKILL');
    mkdirSync(this.dir, { recursive: true });
    const gate = join(this.dir, `gate-${process.pid}-${++this.count}`);
    rmSync(gate, { force: true });
    // From the checkout, not beside this module: the suites run bundled, from dist/.
    const s = launchDriver(this.root, args, { ...base, DMTHIN_RK_GATE: gate }, log, ['--import', join(this.root, 'test/realkernel/warm-gate.mjs')]);
    this.spare = { ...s, gate, key: key(args, base) };
  }

  async stop(): Promise<void> {
    const s = this.spare;
    this.spare = undefined;
    if (!s) return;
    if (alive(s.child)) s.child.kill('SIGKILL');
    await s.exited;
  }
}

function key(args: string[], base: NodeJS.ProcessEnv): string {
  return JSON.stringify([args, Object.entries(base).sort(([a], [b]) => a.localeCompare(b))]);
}
