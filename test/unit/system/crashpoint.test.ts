// The crash points the real-kernel crash suites arm: a child process armed for step n of one
// scope dies by SIGKILL right after that step, steps of other scopes do not count, and an
// unarmed process is untouched.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { it } from 'node:test';

const MODULE = new URL('../../../src/system/crashpoint.ts', import.meta.url).href;
const SCRIPT = `
const { crashScope, step } = await import(${JSON.stringify(MODULE)});
await crashScope('other/x', async () => { for (let i = 0; i < 5; i++) step('other ' + i); });
await crashScope('make/v', async () => {
  for (let i = 1; i <= 4; i++) { await new Promise((r) => setTimeout(r, 1)); console.log('did ' + i); step('make ' + i); }
});
step('outside');
console.log('finished');
`;

function runWith(env: Record<string, string>) {
  return spawnSync(process.execPath, ['--input-type=module', '-e', SCRIPT], { encoding: 'utf8', env: { ...process.env, ...env } });
}

it('an armed process dies by SIGKILL right after step n of its scope, counting only that scope', () => {
  const r = runWith({ DMTHIN_CRASH_SCOPE: 'make/v', DMTHIN_CRASH_AFTER_STEPS: '3' });
  assert.equal(r.signal, 'SIGKILL');
  assert.deepEqual(r.stdout.trim().split('\n'), ['did 1', 'did 2', 'did 3']);
  assert.match(r.stderr, /crash injected after step 3 \(make 3\) of make\/v/);
});

it('a process armed past the last step, or not armed at all, runs to the end', () => {
  for (const env of [{ DMTHIN_CRASH_SCOPE: 'make/v', DMTHIN_CRASH_AFTER_STEPS: '5' }, {}] as Array<Record<string, string>>) {
    const r = runWith(env);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout.trim().split('\n').at(-1), 'finished');
  }
});

it('a query (a command that only reads) is not a step; a command that acts is', () => {
  const exec = new URL('../../../src/system/exec.ts', import.meta.url).href;
  const script = `
const { crashScope } = await import(${JSON.stringify(MODULE)});
const { run } = await import(${JSON.stringify('EXEC')});
await crashScope('make/v', async () => {
  await run({}, 'true', ['query'], { query: true });
  console.log('after the query');
  await run({}, 'true', ['act']);
  console.log('after the act');
});
`.replace('EXEC', exec);
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', env: { ...process.env, DMTHIN_CRASH_SCOPE: 'make/v', DMTHIN_CRASH_AFTER_STEPS: '1' } });
  assert.equal(r.signal, 'SIGKILL', r.stderr);
  assert.deepEqual(r.stdout.trim().split('\n'), ['after the query']);
  assert.match(r.stderr, /crash injected after step 1 \(true act\)/);
});
