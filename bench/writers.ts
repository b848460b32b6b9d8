// The "under write" load: buffered writers whose dirty pages a snapshot's suspend (with its fs freeze) must flush.
import { spawn, type ChildProcess } from 'node:child_process';
import { sh } from './lib.ts';

export class Writers {
  readonly #procs: ChildProcess[] = [];

  /** ~1 MiB every 100 ms into DIR/load. */
  start(dir: string): void {
    this.#procs.push(spawn('bash', ['-c', `while :; do dd if=/dev/zero of="${dir}/load" bs=64k count=16 conv=notrunc status=none; sleep 0.1; done`], { stdio: 'ignore' }));
  }

  /** Every writer gone, and what they wrote synced. */
  async stop(): Promise<void> {
    for (const w of this.#procs.splice(0)) {
      const gone = new Promise((r) => w.once('exit', r));
      w.kill('SIGTERM');
      await gone;
    }
    await sh('sync', []);
  }
}
