/**
 * The node agent SIGKILLed at every step boundary of create, snapshot, restore, expand,
 * delete and group snapshot, on a real pool, with the API server test double standing in for the cluster.
 *
 * A step is one side effect of the agent's work on one object (a system command that acts, or an API
 * write); the agent is started with DMTHIN_CRASH_SCOPE/DMTHIN_CRASH_AFTER_STEPS, so it kills
 * itself right after step n of that operation (src/system/crashpoint.ts). For n = 1, 2, ...
 * until an operation finishes without reaching step n, the suite kills after step n, restarts
 * the agent (armed for step n+1 of the next object), lets the CO's retry finish, and checks:
 * every resource settled, nothing suspended, the pool's thin ids exactly the resources' ids,
 * and every line fsynced to a mounted volume before the kill still there.
 */
import assert from 'node:assert/strict';
import { closeSync, fsyncSync, openSync, readFileSync, writeSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { sleep } from '../../src/system/delay.ts';
import { groupIdFor, idFor } from '../../src/volume/ids.ts';
import { MiB } from '../support/csi-client.ts';
import { KubeWorld, target, until } from './kube-world.ts';

const w = new KubeWorld({ warmRestarts: true });
const MAX_STEPS = 60;
const BASE_SIZE = 256 * MiB;
let base = '';
let snap0 = '';
let second = '';
let durable = 0;

/** Appends one line to the base volume's file and fsyncs it: it must survive whatever follows. */
function appendDurable(): void {
  const fd = openSync(`${target(base)}/log.txt`, 'a');
  writeSync(fd, `line ${durable + 1}\n`);
  fsyncSync(fd);
  closeSync(fd);
  durable++;
}

function assertDurable(context: string): void {
  const lines = readFileSync(`${target(base)}/log.txt`, 'utf8').split('\n').filter(Boolean);
  assert.ok(lines.length >= durable, `${context}: ${durable} fsynced lines, ${lines.length} found`);
  assert.deepEqual(lines.slice(0, durable), Array.from({ length: durable }, (_, i) => `line ${i + 1}`), `${context}: fsynced lines intact`);
}

interface CrashOp {
  /** The crash scope of attempt n: the agent's action and the object it acts on. */
  scope(n: number): string;
  /** Objects attempt n needs, made before it runs (their own steps are another scope). */
  prepare?(n: number): Promise<unknown>;
  /** The CO's request of attempt n; it is retried until it succeeds. */
  run(n: number): Promise<unknown>;
}

const armed = (scope: string, n: number) => ({ DMTHIN_CRASH_SCOPE: scope, DMTHIN_CRASH_AFTER_STEPS: String(n) });
const alive = () => w.nodeProc!.child.exitCode === null && w.nodeProc!.child.signalCode === null;

/** Kills the agent after each step of `op` in turn; returns how many step boundaries it has. */
async function everyBoundary(kind: string, op: CrashOp): Promise<number> {
  await w.startNode(armed(op.scope(1), 1));
  for (let n = 1; ; n++) {
    assert.ok(n <= MAX_STEPS, `${kind}: still crashing after ${MAX_STEPS} steps`);
    await op.prepare?.(n);
    appendDurable();
    const t0 = Date.now();
    const outcome = op.run(n).then(() => 'done' as const, (err: unknown) => err);
    const first = await Promise.race([outcome, w.nodeProc!.exited.then(() => 'killed' as const)]);
    // A kill after the last step can lose the race to the answer, and the pool's transaction
    // stamp (its own steps) follows the answer by design (STAMP_DELAY_MS, then a command).
    if (first === 'done') await sleep(2000);
    if (first === 'done' && alive()) {
      w.assertConverged(`${kind}: finished without a kill at step ${n}`);
      return n - 1;
    }
    assert.ok(first === 'done' || first === 'killed', `${kind} step ${n}: ${String(first)}`);
    const t1 = Date.now();
    await w.startNode(armed(op.scope(n + 1), n + 1));
    const t2 = Date.now();
    await outcome;
    await until(`${kind} killed after step ${n}: the retried request succeeds`, () => op.run(n).then(() => true), 240_000);
    console.log(`${kind} step ${n}: killed after ${t1 - t0} ms, agent ready ${t2 - t1} ms, retry done ${Date.now() - t2} ms`);
    w.assertConverged(`${kind}: killed after step ${n}`);
    assertDurable(`${kind}: killed after step ${n}`);
  }
}

const ctrl = () => w.csi.ctrl.controller;
const volId = (name: string) => idFor('vol', name);
const snapId = (name: string) => idFor('snap', name);
const steps: Record<string, number> = {};
/** Diagnosis aid: KUBE_CRASH_OPS=create,expand runs only those (the final check then fails, on purpose). */
const only = process.env.KUBE_CRASH_OPS?.split(',');
const op = (name: string) => (only && !only.includes(name) ? it.skip : it);

describe('Kubernetes mode: the node agent killed at every step boundary', { timeout: 3_600_000 }, () => {
  before(async () => {
    await w.start();
    base = await w.createVolume('base', BASE_SIZE);
    await w.stagePublish(base);
    appendDurable();
    snap0 = (await ctrl().call('CreateSnapshot', { name: 'snap0', source_volume_id: base }, 180_000)).snapshot.snapshot_id;
    second = await w.createVolume('second', 64 * MiB);
  });
  after(() => w.stop());

  op('create')('create', async () => {
    steps.create = await everyBoundary('create', {
      scope: (n) => `make/${volId(`new-${n}`)}`,
      run: (n) => w.createVolume(`new-${n}`, 64 * MiB),
    });
  });

  op('snapshot')('snapshot of the mounted volume under fsynced writes', async () => {
    steps.snapshot = await everyBoundary('snapshot', {
      scope: (n) => `make/${snapId(`snap-${n}`)}`,
      run: (n) => ctrl().call('CreateSnapshot', { name: `snap-${n}`, source_volume_id: base }, 180_000),
    });
  });

  op('restore')('restore from a snapshot, larger than it', async () => {
    steps.restore = await everyBoundary('restore', {
      scope: (n) => `make/${volId(`restore-${n}`)}`,
      run: (n) => w.createVolume(`restore-${n}`, BASE_SIZE + 64 * MiB, { snapshot: { snapshot_id: snap0 } }),
    });
    const last = volId(`restore-${steps.restore + 1}`);
    await w.stagePublish(last);
    assert.equal(readFileSync(`${target(last)}/log.txt`, 'utf8'), 'line 1\n', 'the restore holds what the snapshot held');
  });

  op('expand')('expand of the mounted volume', async () => {
    const size = (n: number) => BASE_SIZE + n * 32 * MiB;
    steps.expand = await everyBoundary('expand', {
      scope: (n) => `expand/${base}@${size(n)}`,
      run: (n) => ctrl().call('ControllerExpandVolume', { volume_id: base, capacity_range: { required_bytes: size(n) } }, 180_000),
    });
    const cr = w.crs('thinvolumes.dmthin.csi.io').find((o) => o.metadata.name === base)!;
    assert.equal(cr.status?.sizeBytes, size(steps.expand + 1));
  });

  op('delete-volume')('delete of a volume', async () => {
    steps.deleteVolume = await everyBoundary('delete volume', {
      scope: (n) => `delete/${volId(`del-${n}`)}`,
      prepare: (n) => w.createVolume(`del-${n}`, 64 * MiB),
      run: (n) => ctrl().call('DeleteVolume', { volume_id: volId(`del-${n}`) }, 180_000),
    });
  });

  op('delete-snapshot')('delete of a snapshot', async () => {
    steps.deleteSnapshot = await everyBoundary('delete snapshot', {
      scope: (n) => `delete/${snapId(`dsnap-${n}`)}`,
      prepare: (n) => ctrl().call('CreateSnapshot', { name: `dsnap-${n}`, source_volume_id: base }, 180_000),
      run: (n) => ctrl().call('DeleteSnapshot', { snapshot_id: snapId(`dsnap-${n}`) }, 180_000),
    });
  });

  // The group's second member is not mounted (no table): one suspend fewer per boundary keeps
  // this cheap; group.test.ts and the standalone crash suite freeze mounted members together.
  op('group')('group snapshot of the mounted volume and another', async () => {
    steps.group = await everyBoundary('group', {
      scope: (n) => `group/${groupIdFor(`grp-${n}`)}`,
      run: (n) => w.csi.ctrl.group.call('CreateVolumeGroupSnapshot', { name: `grp-${n}`, source_volume_ids: [base, second] }, 180_000),
    });
    const grp = w.crs('thingroupsnapshots.dmthin.csi.io') as Array<{ status?: { state?: string } }>;
    assert.equal(grp.length, steps.group + 1, 'one group per attempt, each made whole by its retry');
  });

  it('every operation had step boundaries to kill at (else this suite proves nothing)', () => {
    console.log(`step boundaries killed at: ${JSON.stringify(steps)}`);
    for (const [kind, n] of Object.entries(steps)) assert.ok(n >= 3, `${kind}: only ${n} step boundaries`);
    assert.equal(Object.keys(steps).length, 7);
  });
});
