// The driver's process and its system commands at a stop: a SIGTERM while a command runs must
// still stop the process cleanly (an exit handler that re-raises a signal it thinks nobody else
// listens for once killed it), and a command is never cut short by the process's exit.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { it } from 'node:test';
import { sleep } from '../../../src/system/delay.ts';

const SIGNALS = new URL('../../../src/cli/signals.ts', import.meta.url).href;
const EXEC = new URL('../../../src/system/exec.ts', import.meta.url).href;
const SCRIPT = `
const { untilSignalled } = await import(${JSON.stringify(SIGNALS)});
const { run } = await import(${JSON.stringify(EXEC)});
const signalled = untilSignalled();
const cmd = run({}, 'sleep', ['3']).then(() => 'finished', () => 'ended');
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

it('a command outlives an abrupt exit of the process: a storage step is finished, never cut in half', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'dmthin-exit-'));
  const mark = join(dir, 'finished');
  try {
    // The command marks its end 0.5 s after the process that ran it has exited.
    const script = `
const { run } = await import(${JSON.stringify(EXEC)});
run({}, 'sh', ['-c', 'sleep 0.5; touch "$0"', ${JSON.stringify(mark)}]);
setTimeout(() => process.exit(0), 100);
`;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { stdio: 'inherit' });
    assert.equal(r.status, 0);
    assert.equal(existsSync(mark), false, 'the process exited before its command ended');
    for (let waited = 0; !existsSync(mark) && waited < 5000; waited += 50) await sleep(50);
    assert.ok(existsSync(mark), 'the command was killed when the process exited');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
