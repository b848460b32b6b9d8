import assert from 'node:assert/strict';
import { beforeEach, describe, it } from 'node:test';
import { DmError } from '../../../src/devmapper/types.ts';
import type { NewDevice } from '../../../src/pool/devices.ts';
import { ctx, GiB, POOL } from '../support/fake-driver.ts';
import { msgs, perTestDriver, spec } from './devices-harness.ts';

describe('Devices', () => {
  const w = perTestDriver();
  const { devices, pool, poolTx } = w;

  describe('activate', () => {
    it('creates the table with one command when the record says inactive', async () => {
      await devices().create(ctx, spec('v'));
      await w.fd.clearOps();
      await devices().activate(ctx, 'v');
      assert.deepEqual(w.fd.dm.ops.map((o) => o.op), ['create']);
      assert.equal((await w.fd.store.getDevice('v'))?.state, 'Activated');
    });
    it('adopts a live device its record does not know of, as it is, when the name is taken', async () => {
      await devices().create(ctx, spec('v'));
      await devices().activate(ctx, 'v');
      await w.fd.dm.suspend(ctx, 'dm-v');
      await w.fd.store.updateDevice('v', (r) => { r.state = 'Deactivated'; });
      await w.fd.clearOps();
      await devices().activate(ctx, 'v');
      assert.deepEqual(w.fd.dm.ops.map((o) => o.op), ['create', 'info', 'resume']);
      const rec = await w.fd.store.getDevice('v');
      assert.equal(rec?.state, 'Activated');
      assert.equal(rec?.error, undefined, 'the refused create leaves no error behind');
      assert.equal((await w.fd.dm.info(ctx, 'dm-v'))?.suspended, false);
    });
  });

  describe('records', () => {
    it('hold the record fields only, whatever else the caller\'s spec carries', async () => {
      const extra = { roomBytes: GiB, requisite: [{ zone: 'a' }] } as Partial<NewDevice>;
      await devices().create(ctx, spec('v', extra));
      await devices().create(ctx, spec('s', { kind: 'snapshot', origin: 'v', ...extra }));
      for (const id of ['v', 's']) {
        const keys = Object.keys((await w.fd.store.getDevice(id))!).sort();
        assert.deepEqual(keys, ['createdAt', 'deviceId', 'dmName', 'id', 'kind', 'meta', ...(id === 's' ? ['origin'] : []), 'revision', 'sizeBytes', 'state', 'updatedAt']);
      }
    });
  });

  describe('delete', () => {
    it('a device recorded inactive gets the delete message with no info read first', async () => {
      await devices().create(ctx, spec('v'));
      await w.fd.clearOps();
      await devices().remove(ctx, 'v');
      await pool().settled();
      assert.deepEqual(w.fd.dm.ops.map((o) => `${o.op} ${o.args[1] ?? ''}`.replace(/ \d+/g, '')), ['message delete', 'message set_transaction_id']);
      assert.equal(await w.fd.store.getDevice('v'), undefined);
      assert.deepEqual(w.fd.dm.metadataThinIds(POOL), []);
    });
    it('a table the record does not know of makes the kernel refuse; the full path then removes it and deletes', async () => {
      const rec = await devices().create(ctx, spec('v'));
      await w.fd.dm.create(ctx, 'dm-v', devices().table(rec));
      await pool().settled();
      const t0 = await poolTx();
      await devices().remove(ctx, 'v');
      await pool().settled();
      assert.equal(await w.fd.dm.info(ctx, 'dm-v'), undefined);
      assert.equal(await w.fd.store.getDevice('v'), undefined);
      assert.deepEqual(w.fd.dm.metadataThinIds(POOL), []);
      assert.equal(await poolTx(), t0 + 1, 'the refused message moved no transaction id');
      assert.equal((await w.fd.store.getPool())?.transactionId, t0 + 1);
    });
    it('...and when that device is open, FAILED_PRECONDITION with the record as it was', async () => {
      const rec = await devices().create(ctx, spec('v'));
      await w.fd.dm.create(ctx, 'dm-v', devices().table(rec));
      w.fd.dm.adjustOpen('/dev/mapper/dm-v', 1);
      await assert.rejects(devices().remove(ctx, 'v'), (e: { code: number; message: string }) => e.code === 9 && /in use/.test(e.message));
      const after = await w.fd.store.getDevice('v');
      assert.equal(after?.state, 'Created');
      assert.equal(after?.error, undefined);
      assert.deepEqual(w.fd.dm.metadataThinIds(POOL), [rec.deviceId]);
    });
  });

  describe('snapshot of an active origin', () => {
    beforeEach(async () => {
      await devices().create(ctx, spec('v'));
      await devices().activate(ctx, 'v');
      await w.fd.clearOps();
    });
    it('suspends the origin, sends create_snap, resumes; no violations', async () => {
      await devices().create(ctx, spec('s', { kind: 'snapshot', origin: 'v' }));
      const seq = w.fd.dm.ops.filter((o) => ['suspend', 'resume', 'message'].includes(o.op)).map((o) => `${o.op} ${o.args.join(' ')}`);
      const i = seq.findIndex((s) => s.startsWith('suspend dm-v'));
      assert.ok(i >= 0, seq.join('\n'));
      assert.match(seq[i + 1]!, /^message test-pool create_snap \d+ \d+$/);
      assert.equal(seq[i + 2], 'resume dm-v');
      assert.deepEqual(w.fd.dm.violations, []);
      assert.equal((await w.fd.dm.info(ctx, 'dm-v'))?.suspended, false);
      assert.equal((await w.fd.store.getDevice('v'))?.state, 'Activated');
    });
    it('an id collision (EEXIST) while the origin is suspended still resumes it and retries with another id', async () => {
      const next = Math.max(...w.fd.dm.metadataThinIds(POOL)) + 1;
      await w.fd.dm.message(ctx, POOL, `create_thin ${next}`);
      const s = await devices().create(ctx, spec('s', { kind: 'snapshot', origin: 'v' }));
      assert.notEqual(s.deviceId, next);
      assert.equal((await w.fd.dm.info(ctx, 'dm-v'))?.suspended, false);
      assert.deepEqual(w.fd.dm.violations, []);
      const seq = w.fd.dm.ops.filter((o) => o.op === 'suspend' || o.op === 'resume').map((o) => o.op);
      assert.deepEqual(seq, ['suspend', 'resume', 'suspend', 'resume']);
    });
    it('resumes the origin when create_snap fails, and leaves no snapshot behind', async () => {
      const before = w.fd.dm.metadataThinIds(POOL);
      w.fd.dm.inject({ op: 'message', match: /create_snap/, error: new DmError('unknown', 'boom') });
      await assert.rejects(devices().create(ctx, spec('s', { kind: 'snapshot', origin: 'v' })), { code: 13 });
      assert.equal((await w.fd.dm.info(ctx, 'dm-v'))?.suspended, false);
      assert.equal((await w.fd.store.getDevice('v'))?.state, 'Activated');
      assert.equal(await w.fd.store.getDevice('s'), undefined);
      assert.deepEqual(w.fd.dm.metadataThinIds(POOL), before);
      assert.deepEqual(w.fd.dm.violations, []);
    });
    it('a failed resume marks the origin Faulty, and a restart resumes it', async () => {
      w.fd.dm.inject({ op: 'resume', match: /dm-v/, error: new DmError('unknown', 'resume broke'), times: 5 });
      await assert.rejects(devices().create(ctx, spec('s', { kind: 'snapshot', origin: 'v' })));
      const v = await w.fd.store.getDevice('v');
      assert.equal(v?.state, 'Faulty');
      assert.equal(v?.faultyFrom, 'Resuming');
      assert.equal((await w.fd.dm.info(ctx, 'dm-v'))?.suspended, true);
      assert.equal(await w.fd.store.getDevice('s'), undefined, 'the snapshot is rolled back');
      await pool().settled();
      assert.equal((await w.fd.store.getPool())?.transactionId, await poolTx(), 'the pool record follows the pool after the rollback');
      w.fd.dm.clearFaults();
      await w.fd.restart();
      assert.equal((await w.fd.dm.info(ctx, 'dm-v'))?.suspended, false);
      assert.equal((await w.fd.store.getDevice('v'))?.state, 'Activated');
    });
  });

  describe('rollback of a half-made device', () => {
    it('create_thin failing before the message leaves no record and frees the id', async () => {
      w.fd.dm.inject({ op: 'message', match: /create_thin/, error: new DmError('no_space', 'full') });
      await assert.rejects(devices().create(ctx, spec('a')), { code: 8 });
      assert.equal(await w.fd.store.getDevice('a'), undefined);
      assert.deepEqual(w.fd.dm.metadataThinIds(POOL), []);
      assert.equal(pool().isIdUsed(0), false);
      assert.ok(!msgs(w.fd).some((m) => m.startsWith('delete')));
    });
    it('an ambiguous failure after the message deletes the device', async () => {
      w.fd.dm.inject({ op: 'message', match: /create_thin/, when: 'after', error: new DmError('timeout', 'slow') });
      await assert.rejects(devices().create(ctx, spec('a')), { code: 4 });
      assert.equal(await w.fd.store.getDevice('a'), undefined);
      assert.deepEqual(w.fd.dm.metadataThinIds(POOL), []);
      assert.ok(msgs(w.fd).some((m) => m.startsWith('delete')));
      await pool().settled();
      assert.equal((await w.fd.store.getPool())?.transactionId, await poolTx());
    });
    it('a failed rollback marks the record Faulty and keeps its id', async () => {
      w.fd.dm.inject({ op: 'message', match: /create_thin/, when: 'after', error: new DmError('timeout', 'slow') });
      w.fd.dm.inject({ op: 'message', match: /^test-pool delete/, error: new DmError('unknown', 'delete broke') });
      await assert.rejects(devices().create(ctx, spec('a')));
      const rec = await w.fd.store.getDevice('a');
      assert.equal(rec?.state, 'Faulty');
      assert.equal(rec?.faultyFrom, 'Creating');
      assert.equal(pool().isIdUsed(rec!.deviceId), true);
      const next = await devices().create(ctx, spec('b'));
      assert.notEqual(next.deviceId, rec!.deviceId);
    });
  });

  describe('concurrency', () => {
    it('concurrent creates, snapshots and deletes on different devices keep ids distinct and share stamps', async () => {
      for (const id of ['a', 'b', 'c']) await devices().create(ctx, spec(id));
      await devices().activate(ctx, 'a');
      await pool().settled();
      const t0 = await poolTx();
      const stampsBefore = msgs(w.fd).filter((m) => m.includes('set_transaction_id')).length;
      await Promise.all([
        ...['d', 'e', 'f', 'g'].map((id) => devices().create(ctx, spec(id))),
        devices().create(ctx, spec('sa', { kind: 'snapshot', origin: 'a' })),
        devices().create(ctx, spec('sb', { kind: 'snapshot', origin: 'b' })),
        devices().remove(ctx, 'c'),
      ]);
      await pool().settled();
      const stamps = msgs(w.fd).filter((m) => m.includes('set_transaction_id')).length - stampsBefore;
      assert.ok(stamps >= 1 && stamps < 7, `7 changes queued together took ${stamps} stamps`);
      assert.equal(await poolTx(), t0 + stamps);
      assert.equal((await w.fd.store.getPool())?.transactionId, t0 + stamps);
      const recs = await w.fd.store.listDevices();
      assert.equal(new Set(recs.map((r) => r.deviceId)).size, recs.length);
      assert.deepEqual(w.fd.dm.metadataThinIds(POOL), recs.map((r) => r.deviceId).sort((x, y) => x - y));
      assert.deepEqual(w.fd.dm.violations, []);
    });
  });

  describe('overprovisioning', () => {
    it('capacity and ensureRoom agree and scale with the ratio', async () => {
      const free = await pool().capacity(ctx);
      await w.replace({ overprovisionRatio: 3 });
      assert.equal(await pool().capacity(ctx), free * 3);
      await pool().ensureRoom(ctx, free * 3);
      await assert.rejects(pool().ensureRoom(ctx, free * 3 + 1), { code: 8 });
    });
  });

  describe('resize', () => {
    it('grows a live table with reload and resume (the resume suspends to swap), reading only its table first', async () => {
      await devices().create(ctx, spec('v'));
      await devices().activate(ctx, 'v');
      await w.fd.clearOps();
      await devices().resize(ctx, 'v', 2 * GiB);
      // The status read: a resume that suspends must not meet a full pool (ensureNoFreeze).
      assert.deepEqual(w.fd.dm.ops.map((o) => o.op), ['liveThinSectors', 'poolStatus', 'reload', 'resume']);
      assert.equal(w.fd.dm.sizeOf('/dev/mapper/dm-v'), 2 * GiB);
      assert.equal((await w.fd.store.getDevice('v'))?.sizeBytes, 2 * GiB);
    });
    it('a failed size read is a gRPC error with its code (a timeout is DEADLINE_EXCEEDED), and records nothing', async () => {
      await devices().create(ctx, spec('v'));
      await devices().activate(ctx, 'v');
      w.fd.dm.inject({ op: 'liveThinSectors', error: new DmError('timeout', 'dmsetup table dm-v: timed out') });
      await assert.rejects(devices().resize(ctx, 'v', 2 * GiB), (e: { code?: number; message: string }) => e.code === 4 && /resizing v/.test(e.message));
      assert.equal((await w.fd.store.getDevice('v'))?.sizeBytes, GiB);
    });
    it('an inactive device only records the size; activation uses it', async () => {
      await devices().create(ctx, spec('v'));
      await devices().resize(ctx, 'v', 3 * GiB);
      await devices().activate(ctx, 'v');
      assert.equal(w.fd.dm.sizeOf('/dev/mapper/dm-v'), 3 * GiB);
    });
  });

  describe('a full or read-only pool', () => {
    it('refuses new volumes with RESOURCE_EXHAUSTED, snapshots at once (RESOURCE_EXHAUSTED when full, FAILED_PRECONDITION when read-only), without touching existing records', async () => {
      await devices().create(ctx, spec('v'));
      await pool().settled(); // the stamp is a commit, and a commit would take the pool out of out_of_data_space
      const before = await w.fd.store.listDevices();
      for (const mode of ['out_of_data_space', 'ro'] as const) {
        w.fd.dm.setPoolMode(POOL, mode);
        await pool().health(ctx); // a fresh reading (Probe, GetCapacity): the checks now see the mode
        await assert.rejects(pool().ensureRoom(ctx, GiB), { code: 8 });
        assert.deepEqual(await w.fd.store.listDevices(), before);
        await w.fd.clearOps();
        await assert.rejects(devices().create(ctx, spec('s', { kind: 'snapshot', origin: 'v' })), { code: mode === 'ro' ? 9 : 8 });
        assert.deepEqual(await w.fd.store.listDevices(), before);
        assert.deepEqual(w.fd.dm.ops.map((o) => o.op).filter((o) => o === 'suspend' || o === 'message'), [], 'refused before any suspend or message');
      }
      assert.equal(await pool().capacity(ctx), 0);
    });
    it('metadata above its threshold refuses snapshots too, but deletes still work', async () => {
      await w.replace({ metadataBlocks: 200 });
      await devices().create(ctx, spec('v', { sizeBytes: 4 * GiB }));
      await devices().activate(ctx, 'v');
      w.fd.dm.write('dm-v', 2.5 * GiB);
      const h = await pool().health(ctx);
      assert.equal(h.condition, 'low_space', h.reasons.join());
      assert.match(h.reasons.join(), /metadata/);
      await assert.rejects(devices().create(ctx, spec('s', { kind: 'snapshot', origin: 'v' })), { code: 8 });
      assert.equal(await w.fd.store.getDevice('s'), undefined);
      await devices().deactivate(ctx, 'v');
      await devices().remove(ctx, 'v');
      assert.deepEqual(w.fd.dm.metadataThinIds(POOL), []);
    });
    it('a burst of creates reads the pool status once; a pool that turned read-only since is refused by the kernel, and says why', async () => {
      await devices().create(ctx, spec('v'));
      const statusReads = () => w.fd.dm.ops.filter((o) => o.op === 'poolStatus').length;
      const reads = statusReads();
      for (const id of ['a', 'b', 'c']) await devices().create(ctx, spec(id, { roomBytes: GiB }));
      assert.ok(statusReads() - reads <= 1, `${statusReads() - reads} status reads for 3 creates`);
      const before = await w.fd.store.listDevices();
      w.fd.dm.setPoolMode(POOL, 'ro');
      await pool().ensureMetadataWritable(ctx); // the healthy reading of a moment ago still stands
      // A copy of a volume (no suspend) admits on that reading; a snapshot reads afresh (ensureSnapshotable).
      await assert.rejects(devices().create(ctx, spec('s', { origin: 'v', roomBytes: 0 })),
        (e: { code: number; message: string }) => e.code === 8 && /refused the change: .*read-only/.test(e.message));
      assert.deepEqual(await w.fd.store.listDevices(), before, 'no record left of the refused snapshot');
      assert.deepEqual(w.fd.dm.violations, []);
    });
    it('needs_check refuses snapshots too, as FAILED_PRECONDITION (a repair must come first)', async () => {
      await devices().create(ctx, spec('v'));
      w.fd.dm.setNeedsCheck(POOL, true);
      await assert.rejects(devices().create(ctx, spec('s', { kind: 'snapshot', origin: 'v' })), { code: 9 });
      assert.equal(await w.fd.store.getDevice('s'), undefined);
    });
  });
});
