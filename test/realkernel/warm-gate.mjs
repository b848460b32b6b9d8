// Preloaded (node --import) into a driver process that a real-kernel suite starts ahead of need
// (warm.ts): it loads the bundle's code, which takes seconds in the emulated guest, while the
// process it will replace still runs; then it waits until its gate file exists and takes the
// environment of its start from it. The driver's own entry runs only after that, so what the
// process does from there is what a cold start does. Plain JavaScript: it runs unbundled.
import { existsSync, readFileSync } from 'node:fs';
import module from 'node:module';
import { setTimeout as sleep } from 'node:timers/promises';

const gate = process.env.DMTHIN_RK_GATE;
if (gate) {
  process.env.UV_THREADPOOL_SIZE ??= '16'; // as src/cli/main.ts: before anything uses libuv's pool
  module.enableCompileCache?.();
  const dist = new URL('../../dist/', import.meta.url);
  const entry = readFileSync(new URL('dmthin-csi.mjs', dist), 'utf8');
  const run = /import\("\.\/(chunks\/run-[^"]+\.mjs)"\)/.exec(entry)?.[1];
  // Not the run chunk itself: evaluating it starts the command. What it imports is only code.
  if (run) {
    const text = readFileSync(new URL(run, dist), 'utf8');
    const deps = [...text.matchAll(/from "\.\/([^"]+\.mjs)"/g), ...text.matchAll(/import\("\.\/([^"]+\.mjs)"\)/g)].map((m) => m[1]);
    for (const dep of new Set(deps)) await import(new URL(`chunks/${dep}`, dist).href);
  }
  while (!existsSync(gate)) await sleep(25);
  Object.assign(process.env, JSON.parse(readFileSync(gate, 'utf8')));
  delete process.env.DMTHIN_RK_GATE;
}
