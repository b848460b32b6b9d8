import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { afterEach, beforeEach, describe, it } from 'node:test';
import type * as grpc from '@grpc/grpc-js';
import winston from 'winston';
import { IdentityService } from '../../../src/csi/identity.ts';
import { serve } from '../../../src/csi/server.ts';
import type { SnapshotMetadataRpcs } from '../../../src/csi/stream-rpcs.ts';
import { DmError } from '../../../src/devmapper/types.ts';
import { notFound } from '../../../src/errors.ts';
import { createLogger } from '../../../src/observability/log.ts';
import { Metrics } from '../../../src/observability/metrics.ts';
import { serveDriver, type Running } from '../../../src/driver.ts';
import type { OpContext } from '../../../src/system/context.ts';
import { connectCsi } from '../../support/csi-client.ts';
import { MetadataClient, rangesOf } from '../../support/metadata-client.ts';
import { createVolumeReq, snapshotReq } from '../../support/requests.ts';
import { blockCap, ctx, fakeDriver, GiB } from '../support/fake-driver.ts';

const range = (i: number) => ({ byte_offset: i * 4096, size_bytes: 4096 });
const res = (n: number, from = 0) => ({ block_metadata_type: 'VARIABLE_LENGTH' as const, volume_capacity_bytes: GiB, block_metadata: Array.from({ length: n }, (_, i) => range(from + i)) });

describe('server-streaming RPCs over gRPC', () => {
  let dir: string;
  let server: grpc.Server;
  let client: MetadataClient;
  let logged: string;
  let impl: SnapshotMetadataRpcs;
  /** What the handler saw of its context: why its signal aborted. */
  let seen: { aborted?: unknown };
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'stream-wrap-'));
    const log = createLogger({ level: 'info' });
    log.clear();
    const sink = new PassThrough();
    logged = '';
    sink.on('data', (b: Buffer) => { logged += b.toString(); });
    log.add(new winston.transports.Stream({ stream: sink }));
    seen = {};
    const endpoint = `unix://${join(dir, 'csi.sock')}`;
    const forward: SnapshotMetadataRpcs = {
      GetMetadataAllocated: (c, req, send) => impl.GetMetadataAllocated(c, req, send),
      GetMetadataDelta: (c, req, send) => impl.GetMetadataDelta(c, req, send),
    };
    server = await serve(endpoint, { identity: new IdentityService({ ready: async () => ({ ready: true }) }, false), snapshotMetadata: forward }, { log, metrics: new Metrics() });
    client = new MetadataClient(endpoint);
  });
  afterEach(async () => {
    client.close();
    server.forceShutdown();
    await rm(dir, { recursive: true, force: true });
  });

  const lines = () => logged.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  /** A handler that sends `n` responses of `per` ranges, recording its context's end. */
  const producer = (n: number, per: number, progress?: { sent: number }) => async (c: OpContext, _req: unknown, send: (r: ReturnType<typeof res>) => Promise<void>) => {
    c.signal!.addEventListener('abort', () => { seen.aborted = c.signal!.reason; });
    for (let i = 0; i < n; i++) {
      await send(res(per, i * per));
      if (progress) progress.sent++;
    }
  };
  const both = (fn: SnapshotMetadataRpcs['GetMetadataAllocated']): SnapshotMetadataRpcs => ({ GetMetadataAllocated: fn, GetMetadataDelta: fn as never });

  it('streams every response, then OK, and logs one line with the count', async () => {
    impl = both(producer(5, 3));
    const r = await client.allocated({ snapshot_id: 's' });
    assert.equal(r.code, 'OK');
    assert.equal(rangesOf(r).length, 15);
    assert.equal(r.responses[0]!.volume_capacity_bytes, GiB);
    assert.deepEqual(lines().filter((l) => l.rpc === 'GetMetadataAllocated').map((l) => [l.message, l.code, l.responses]), [['rpc', 'OK', 5]]);
  });

  it('maps a failure through status.ts: a CsiError keeps its code, a DmError is INTERNAL, both after what was sent', async () => {
    impl = both(async (_c, _r, send) => { await send(res(1)); throw notFound('snapshot s does not exist'); });
    const r = await client.allocated({ snapshot_id: 's' });
    assert.deepEqual([r.code, r.details, r.responses.length], ['NOT_FOUND', 'snapshot s does not exist', 1]);
    impl = both(async () => { throw new DmError('unknown', 'thin_dump failed: bad superblock'); });
    const d = await client.delta({ base_snapshot_id: 'a', target_snapshot_id: 'b' });
    assert.equal(d.code, 'INTERNAL');
    assert.deepEqual(lines().filter((l) => l.rpc === 'GetMetadataDelta').map((l) => [l.level, l.code, l.cause]), [['error', 'INTERNAL', 'DmError: thin_dump failed: bad superblock']]);
  });

  it('a client cancel aborts ctx.signal, and the producer blocked in send() stops', async () => {
    let finished: unknown = 'running';
    impl = both(async (c, req, send) => {
      try { await producer(1_000_000, 100)(c, req, send); finished = 'done'; } catch (err) { finished = err; }
    });
    const r = await client.allocated({ snapshot_id: 's' }, { cancelAfter: 2 });
    assert.equal(r.code, 'CANCELLED');
    for (let i = 0; i < 100 && finished === 'running'; i++) await new Promise((resolve) => setTimeout(resolve, 10));
    assert.match(String((finished as Error).message), /cancelled/);
    assert.match(String((seen.aborted as Error).message), /cancelled/);
  });

  it('the deadline aborts ctx.signal of a handler that is still working', async () => {
    impl = both(async (c) => { await new Promise((_, reject) => c.signal!.addEventListener('abort', () => reject(c.signal!.reason))); });
    const r = await client.allocated({ snapshot_id: 's' }, { timeoutMs: 300 });
    assert.equal(r.code, 'DEADLINE_EXCEEDED');
  });

  it('backpressure: a slow reader holds the producer to a bounded lead, not a growing buffer', async () => {
    const progress = { sent: 0 };
    let maxLead = 0;
    impl = both(producer(300, 1000, progress));
    const r = await client.allocated({ snapshot_id: 's' }, {
      readDelayMs: 2, onResponse: (received) => { maxLead = Math.max(maxLead, progress.sent - received); },
    });
    const received = r.responses.length;
    assert.equal(r.code, 'OK');
    assert.equal(received, 300);
    // ~30 KB each: grpc-js and the socket buffer some, but a producer ignoring 'drain' would be
    // all 300 ahead before the reader's first pause ended.
    assert.ok(maxLead < 150, `producer ran ${maxLead} responses ahead of the reader`);
  });
});

describe('SnapshotMetadata on the standalone driver\'s CSI socket', () => {
  it('is served beside the other services, and Identity advertises SNAPSHOT_METADATA_SERVICE', async () => {
    const fd = await fakeDriver();
    let running: Running | undefined;
    try {
      running = await serveDriver(fd.cfg, fd.driver, createLogger({ silent: true }), { poolCheckMs: 3_600_000 });
      const csi = connectCsi(fd.cfg.endpoint);
      const md = new MetadataClient(fd.cfg.endpoint);
      const caps = await csi.identity.call<{ capabilities: Array<{ service?: { type: string } }> }>('GetPluginCapabilities');
      assert.ok(caps.capabilities.some((c) => c.service?.type === 'SNAPSHOT_METADATA_SERVICE'));
      const vol = (await fd.driver.controller.CreateVolume(ctx, createVolumeReq({ name: 'v', volume_capabilities: [blockCap()], capacity_range: { required_bytes: GiB, limit_bytes: 0 } }))).volume!.volume_id!;
      await fd.driver.devices.activate(ctx, vol);
      fd.dm.write(`dmthin-${vol}`, 3 * 65536, 65536);
      const snap = (await fd.driver.controller.CreateSnapshot(ctx, snapshotReq('s', vol))).snapshot!.snapshot_id!;
      const r = await md.allocated({ snapshot_id: snap });
      assert.deepEqual([r.code, rangesOf(r)], ['OK', [{ byte_offset: 65536, size_bytes: 3 * 65536 }]]);
      assert.equal((await md.allocated({ snapshot_id: 'snap-00000000000000000000000000000000' })).code, 'NOT_FOUND');
      csi.close();
      md.close();
    } finally {
      await running?.stopChecks();
      running?.grpc.forceShutdown();
      await running?.http.stop();
      await fd.cleanup();
    }
  });
});
