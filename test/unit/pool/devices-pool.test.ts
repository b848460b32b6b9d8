// Devices: thin id allocation, the transaction-id stamps, and the pool status readings that admit a change.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DmError } from '../../../src/devmapper/types.ts';
import { ctx, GiB, POOL } from '../support/fake-driver.ts';
import { perTestDriver, spec } from './devices-harness.ts';

describe('Devices: ids, transaction ids, status readings', () => {
  const w = perTestDriver();
  const { devices, pool, poolTx } = w;

  describe('id allocation', () => {
    it('never reuses an id while a record holds it, also across a restart', async () => {
      const a = await devices().create(ctx, spec('a'));
      const b = await devices().create(ctx, spec('b'));
      assert.notEqual(a.deviceId, b.deviceId);
      await devices().remove(ctx, 'a');
      const c = await devices().create(ctx, spec('c'));
      assert.notEqual(c.deviceId, b.deviceId);
      await w.fd.restart();
      const d = await devices().create(ctx, spec('d'));
      assert.ok(![b.deviceId, c.deviceId].includes(d.deviceId));
      assert.deepEqual(w.fd.dm.metadataThinIds(POOL), [b.deviceId, c.deviceId, d.deviceId].sort((x, y) => x - y));
    });
    it('EEXIST from an id held by a device with no record picks another id and leaves the orphan alone', async () => {
      await w.fd.dm.message(ctx, POOL, 'create_thin 0');
      const rec = await devices().create(ctx, spec('a'));
      assert.notEqual(rec.deviceId, 0);
      assert.equal(rec.state, 'Created');
      assert.deepEqual(w.fd.dm.metadataThinIds(POOL), [0, rec.deviceId]);
      assert.equal(pool().isIdUsed(0), true);
      assert.equal((await w.fd.store.getDevice('a'))?.deviceId, rec.deviceId);
    });
  });

  describe('transaction ids', () => {
    it('every create, snapshot and delete is stamped with the next tx once settled, and the pool record follows', async () => {
      const t0 = await poolTx();
      const steps: Array<() => Promise<unknown>> = [
        () => devices().create(ctx, spec('v')),
        () => devices().create(ctx, spec('s', { kind: 'snapshot', origin: 'v' })),
        () => devices().remove(ctx, 's'),
        () => devices().remove(ctx, 'v'),
      ];
      for (const [i, step] of steps.entries()) {
        await step();
        await pool().settled();
        assert.equal(await poolTx(), t0 + i + 1);
        assert.equal((await w.fd.store.getPool())?.transactionId, t0 + i + 1);
        assert.equal(pool().transactionId, t0 + i + 1);
      }
      assert.equal(pool().txMismatch, undefined);
    });
    it('a failed stamp fails no change: the id stays, and the next change stamps once for both', async () => {
      await pool().settled();
      const t0 = await poolTx();
      w.fd.dm.inject({ op: 'message', match: /set_transaction_id/, error: new DmError('unknown', 'stamp broke') });
      assert.equal((await devices().create(ctx, spec('v'))).state, 'Created');
      await pool().settled();
      assert.equal(await poolTx(), t0);
      assert.equal((await w.fd.store.getPool())?.transactionId, t0);
      await devices().create(ctx, spec('w'));
      await pool().settled();
      assert.equal(await poolTx(), t0 + 1);
      assert.equal((await w.fd.store.getPool())?.transactionId, t0 + 1);
      assert.equal(pool().txMismatch, undefined);
      const d = await w.fd.restart();
      assert.equal(d.startup.tx.verdict, 'in_sync');
    });
    it('a start reads the pool status once: its reconcile takes the reading attach made; later reads are fresh', async () => {
      await devices().create(ctx, spec('v'));
      const statusReads = () => w.fd.dm.ops.filter((o) => o.op === 'poolStatus').length;
      const before = statusReads();
      const d = await w.fd.restart();
      assert.equal(statusReads() - before, 1);
      assert.equal(d.startup.tx.verdict, 'in_sync');
      await w.fd.dm.message(ctx, POOL, `set_transaction_id ${await poolTx()} ${(await poolTx()) + 1}`);
      const reads = statusReads();
      assert.equal((await d.pool.status(ctx)).transactionId, await poolTx(), 'a read after the start is a new one');
      assert.equal(statusReads() - reads, 2); // this one, and poolTx()'s own
    });
    it('a foreign set_transaction_id is detected as a mismatch, at runtime and at restart', async () => {
      await devices().create(ctx, spec('v'));
      await pool().settled();
      const t = await poolTx();
      await w.fd.dm.message(ctx, POOL, `set_transaction_id ${t} ${t + 10}`);
      await devices().create(ctx, spec('w'));
      await pool().settled();
      assert.match(pool().txMismatch ?? '', /another tool/);
      assert.equal((await w.fd.store.getDevice('w'))?.state, 'Created');
      await w.fd.dm.message(ctx, POOL, `set_transaction_id ${await poolTx()} ${(await poolTx()) + 7}`);
      const d = await w.fd.restart();
      assert.equal(d.startup.tx.verdict, 'mismatch');
      assert.ok(d.pool.txMismatch);
    });
  });

  describe('status readings for admission', () => {
    it('a healthy reading up to 30 s old admits a change with no read first; the change reads the status after its message', async () => {
      let t = 0;
      await w.replace({ clock: () => t });
      const ops = () => w.fd.dm.ops.map((o) => (o.op === 'message' ? o.args[1]!.split(' ')[0]! : o.op)).filter((o) => ['poolStatus', 'create_thin'].includes(o));
      const after = async (id: string, at: number) => {
        t = at;
        await w.fd.clearOps();
        await devices().create(ctx, spec(id, { roomBytes: GiB }));
        await pool().settled();
        return ops();
      };
      assert.deepEqual(await after('a', 1_000), ['create_thin'], 'a recent reading is used as it is');
      assert.deepEqual(await after('b', 20_000), ['create_thin', 'poolStatus'], 'an older one admits, and is read again after the change');
      assert.deepEqual(await after('c', 21_000), ['create_thin'], 'that reading is recent');
      assert.deepEqual(await after('d', 60_000), ['poolStatus', 'create_thin'], 'one over 30 s old is read before admitting');
    });
    it('Probe takes a reading up to 5 s old only: it must see a pool that went bad', async () => {
      let t = 0;
      await w.replace({ clock: () => t });
      const probe = async (at: number) => {
        t = at;
        await w.fd.clearOps();
        const r = await w.fd.driver.identity.Probe({});
        return { ready: r.ready.value, reads: w.fd.dm.ops.filter((o) => o.op === 'poolStatus').length };
      };
      assert.deepEqual(await probe(4_000), { ready: true, reads: 0 });
      w.fd.dm.setPoolMode(POOL, 'ro');
      assert.deepEqual(await probe(10_000), { ready: false, reads: 1 });
    });
    it('an older reading that is not healthy is read again before admitting', async () => {
      let t = 0;
      await w.replace({ clock: () => t, metadataBlocks: 200 });
      await devices().create(ctx, spec('v', { sizeBytes: 4 * GiB }));
      await devices().activate(ctx, 'v');
      w.fd.dm.write('dm-v', 2.5 * GiB);
      await pool().health(ctx); // metadata above its threshold
      t = 10_000;
      await w.fd.clearOps();
      await assert.rejects(devices().create(ctx, spec('s', { kind: 'snapshot', origin: 'v' })), { code: 8 });
      assert.equal(w.fd.dm.ops.filter((o) => o.op === 'poolStatus').length, 1);
    });
  });
});
