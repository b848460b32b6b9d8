import assert from 'node:assert/strict';
import { CONVERGED, convergence, fakeDriver, type FakeDriver } from './fake-driver.ts';

class Crash extends Error { constructor() { super('process crashed'); this.name = 'Crash'; } }

/**
 * Counts side effects (store writes and mutating dm calls). At step `at` the effect happens
 * and then the "process" dies: that call and every later side effect throws without effect.
 */
export function crashSwitch(fd: FakeDriver) {
  const state = { at: Infinity, n: 0, crashed: false };
  const patch = (obj: object, names: string[]) => {
    const o = obj as Record<string, (...a: unknown[]) => Promise<unknown>>;
    for (const name of names) {
      const orig = o[name]!.bind(obj);
      o[name] = async (...a: unknown[]) => {
        if (state.crashed) throw new Crash();
        const res = await orig(...a);
        if (++state.n === state.at) { state.crashed = true; throw new Crash(); }
        return res;
      };
    }
  };
  patch(fd.store, ['createDevice', 'updateDevice', 'deleteDevice', 'updatePool', 'putGroup', 'deleteGroup']);
  patch(fd.dm, ['create', 'reload', 'remove', 'suspend', 'resume', 'message']);
  return {
    arm(at: number) { Object.assign(state, { at, n: 0, crashed: false }); },
    disarm() { Object.assign(state, { at: Infinity, crashed: false }); },
    get crashed() { return state.crashed; },
  };
}

/** Runs `op` crashing after each step in turn; after each crash a restart must converge. */
export async function crashEverywhere(setup: (fd: FakeDriver) => Promise<void>, op: (fd: FakeDriver) => Promise<unknown>, check?: (fd: FakeDriver) => Promise<void>) {
  for (let at = 1; at < 100; at++) {
    const fd = await fakeDriver();
    try {
      await setup(fd);
      const sw = crashSwitch(fd);
      sw.arm(at);
      const outcome = await op(fd).then(() => 'ok', (e: unknown) => e);
      const crashed = sw.crashed;
      sw.disarm();
      if (!crashed) {
        assert.equal(outcome, 'ok');
        assert.ok(at > 2, 'the operation should have side effects');
        return;
      }
      assert.ok(outcome instanceof Error, `crash at step ${at}`);
      const d = await fd.restart();
      assert.deepEqual(d.startup.faulty, [], `crash at step ${at}: ${JSON.stringify(d.startup.faulty)}`);
      assert.deepEqual(await convergence(fd), CONVERGED, `crash at step ${at}`);
      assert.deepEqual(fd.dm.violations, []);
      await check?.(fd);
      // Reconciling again changes nothing.
      const again = await fd.restart();
      assert.deepEqual(again.startup.repaired, [], `crash at step ${at}: second reconcile repaired ${JSON.stringify(again.startup.repaired)}`);
    } finally {
      await fd.cleanup();
    }
  }
  assert.fail('the operation never completed');
}


/** Crashes the operation at step `at`, then crashes the first restart (inside reconcile) at each step in turn. */
export async function crashTwice(setup: (fd: FakeDriver) => Promise<void>, op: (fd: FakeDriver) => Promise<unknown>) {
  let sawCrashInReconcile = false;
  for (let at = 1; at < 40; at++) {
    let opCrashed = true;
    for (let again = 1; again < 40; again++) {
      const fd = await fakeDriver();
      try {
        await setup(fd);
        const sw = crashSwitch(fd);
        sw.arm(at);
        await op(fd).catch(() => undefined);
        opCrashed = sw.crashed;
        if (!opCrashed) break;
        sw.arm(again);
        await fd.restart().catch(() => undefined);
        const crashed = sw.crashed;
        sw.disarm();
        const d = await fd.restart();
        assert.deepEqual(d.startup.faulty, [], `crash at ${at}, then in reconcile at ${again}`);
        assert.deepEqual(await convergence(fd), CONVERGED, `crash at ${at}, then in reconcile at ${again}`);
        if (!crashed) break;
        sawCrashInReconcile = true;
      } finally {
        await fd.cleanup();
      }
    }
    if (!opCrashed) {
      assert.ok(sawCrashInReconcile);
      return;
    }
  }
  assert.fail('the operation never completed');
}
