// The cluster bench (bench/cluster/) in a small configuration, so that it cannot rot: the real
// kube-apiserver and etcd, the real controller process, three simulated nodes in two processes,
// 45 volumes (about 30-60 s alone on a 2-core machine, most of it the apiserver's start).
// Correctness facts only (every volume made and removed, no foreign watch events, the writes
// counted); its rates and timings are the bench's to report, not this test's to assert.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, it } from 'node:test';
import { runClusterBench } from '../../../bench/cluster/bench.ts';
import { foreignEvents, perOp, phase, render, writes } from '../../../bench/cluster/report.ts';

const ROOT = resolve(import.meta.dirname, '..', '..', '..');

describe('the cluster bench, small', () => {
  it('creates, snapshots, restores and deletes every volume through the real apiserver, and counts what it cost', { timeout: 300_000 }, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'dmthin-cbench-test-'));
    try {
      const r = await runClusterBench({
        root: ROOT, dir, nodes: 3, volumes: 45, perHost: 2, small: { 1: 4, 16: 16 }, snapshots: 4,
        sampleEvery: 15, bundle: false, idleSeconds: 0,
      });
      for (const p of [...r.phases, ...r.snapshots]) {
        assert.equal(p.failureCount, 0, `${p.who} ${p.name} c=${p.concurrency}: ${p.failures.join('; ')}`);
        assert.equal(p.ok, p.n);
      }
      assert.deepEqual(r.phases.map((p) => `${p.who} ${p.name} ${p.concurrency}`), [
        'driver create 1', 'driver delete 1', 'floor create 1', 'floor delete 1',
        'driver create 16', 'driver delete 16', 'floor create 16', 'floor delete 16',
        'driver create 64', 'driver delete 64', 'floor create 64', 'floor delete 64',
      ]);
      assert.deepEqual(r.snapshots.map((p) => p.name), ['snapshot', 'restore', 'delete restore', 'delete snapshot']);
      assert.deepEqual(r.leftover, { volumes: 0, snapshots: 0 }, 'every object removed');
      assert.deepEqual(r.watch.atEnd.map((a) => a.thinDevices), [0, 0, 0], 'every device deleted by its agent, in its pool');
      assert.equal(perOp(r, phase(r, 'driver', 'delete', 64)!)['PATCH thinvolumes'], undefined, 'no finalizer dropped by the controller: the nodes exist');
      assert.equal(foreignEvents(r), 0, "no agent heard of another node's object");
      assert.equal(r.watch.atEnd.length, 3);
      for (const a of r.watch.beforeRestart) assert.ok(a.own > 0, `${a.node} saw its own objects`);
      // Writes counted from the apiserver's own metrics: the CR and the agent's two status writes at least.
      const created = perOp(r, phase(r, 'driver', 'create', 64)!);
      assert.equal(created['POST thinvolumes'], 1);
      assert.equal(created['PUT thinvolumes/status'], 2);
      assert.ok(writes(created) >= 3);
      // The floor's own resource only: the agents' periodic ThinPool writes may fall in its phase.
      const floor = Object.fromEntries(Object.entries(perOp(r, phase(r, 'floor', 'create', 64)!)).filter(([k]) => / thinvolumes/.test(k)));
      assert.equal(writes(floor), 3, 'the floor: POST and two status PUTs');
      // The agents' reconcile lists come from the watch cache and never wait on it: a list not older
      // than a version that cache has no event for is held up to 3 s and refused with a 504.
      assert.deepEqual(Object.keys(r.lists!.byCode), ['200'], `list answers: ${JSON.stringify(r.lists)}`);
      assert.ok(r.lists!.fromCache > 0, 'lists served from the watch cache');
      assert.equal(r.restarts.agentVolumes, 15);
      assert.ok(r.restarts.controllerMs > 0 && r.restarts.agentMs > 0);
      assert.equal(r.etcd.volumes, 45);
      assert.equal(r.scale.map((s) => s.volumes).join(), '0,15,30,45');
      assert.match(render(r), /## Targets/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
