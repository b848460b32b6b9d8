// SIGTERM while a system command runs must still stop the process cleanly: execa's subprocess
// cleanup (signal-exit) re-raises a signal it thinks nobody else listens for.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { it } from 'node:test';

const SIGNALS = new URL('../../../src/cli/signals.ts', import.meta.url).href;
const EXEC = new URL('../../../src/system/exec.ts', import.meta.url).href;
const SCRIPT = `
const { untilSignalled } = await import(${JSON.stringify(SIGNALS)});
const { run } = await import(${JSON.stringify(EXEC)});
const signalled = untilSignalled();
const cmd = run({}, 'sleep', ['30']).then(() => 'finished', () => 'ended');
setTimeout(() => console.log('ready'), 100);
const sig = await signalled;
console.log('stopping cleanly after ' + sig);
process.exit(0);
`;

function child(): Promise<{ code: number | null; signal: NodeJS.Signals | null; out: string }> & { kill: (s: NodeJS.Signals) => void; ready: Promise<void> } {
  const p = spawn(process.execPath, ['--input-type=module', '-e', SCRIPT], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  let onReady!: () => void;
  const ready = new Promise<void>((r) => { onReady = r; });
  p.stdout.on('data', (d: Buffer) => { out += String(d); if (out.includes('ready')) onReady(); });
  const done = new Promise<{ code: number | null; signal: NodeJS.Signals | null; out: string }>((r) => p.on('exit', (code, signal) => r({ code, signal, out })));
  return Object.assign(done, { kill: (s: NodeJS.Signals) => { p.kill(s); }, ready });
}

it('a SIGTERM that arrives while a command runs is handed to the stop, not fatal', async () => {
  const c = child();
  await c.ready;
  c.kill('SIGTERM');
  const r = await c;
  assert.equal(r.signal, null, `killed by ${r.signal}: the signal was re-raised`);
  assert.equal(r.code, 0);
  assert.match(r.out, /stopping cleanly after SIGTERM/);
});
