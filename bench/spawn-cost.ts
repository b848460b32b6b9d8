// Profiling aid (not part of run.sh's default run): what one `dmsetup version` costs when
// spawned from bash, from Node's child_process.execFile, and through the driver's own
// run() (execa), in the same guest. Run: bench/run.sh --spawn-cost
import { execFile } from 'node:child_process';
import { background } from '../src/system/context.ts';
import { run } from '../src/system/exec.ts';
import { sh, stats } from './lib.ts';

const N = Number(process.argv[2] ?? 20);
const env = { ...process.env, DM_DISABLE_UDEV: '1', LC_ALL: 'C' };
const execFileP = (cmd: string, args: string[]) => new Promise<void>((res, rej) => execFile(cmd, args, { env }, (e) => (e ? rej(e) : res())));

async function series(fn: () => Promise<unknown>): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < N; i++) {
    const t0 = performance.now();
    await fn();
    out.push(performance.now() - t0);
  }
  return out;
}
const show = (label: string, xs: number[]) => {
  const s = stats(xs);
  console.log(`${label.padEnd(44)} median ${s.median.toFixed(1)} ms  p95 ${s.p95.toFixed(1)} ms  (n=${s.n})`);
};

const bashOut = await sh('bash', ['-c', `for i in $(seq ${N}); do t0=\${EPOCHREALTIME/./}; dmsetup version >/dev/null; t1=\${EPOCHREALTIME/./}; echo $((t1 - t0)); done`]);
show('bash: dmsetup version', bashOut.trim().split('\n').map((l) => Number(l) / 1000));
show('node execFile: dmsetup version', await series(() => execFileP('dmsetup', ['version'])));
show('driver run() (execa): dmsetup version', await series(() => run(background, 'dmsetup', ['version'])));
// The same with a heap of ~150 MB, as the driver has after a fill: fork cost grows with the process.
const ballast = Array.from({ length: 1_500_000 }, (_, i) => ({ i, s: `x${i}` }));
show(`execFile, RSS ${Math.round(process.memoryUsage().rss / 2 ** 20)} MiB`, await series(() => execFileP('dmsetup', ['version'])));
show(`run() (execa), RSS ${Math.round(process.memoryUsage().rss / 2 ** 20)} MiB`, await series(() => run(background, 'dmsetup', ['version'])));
show('node execFile: true', await series(() => execFileP('true', [])));
console.log(`(ballast ${ballast.length})`);
