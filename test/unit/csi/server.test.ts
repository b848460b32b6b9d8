import assert from 'node:assert/strict';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { afterEach, beforeEach, describe, it } from 'node:test';
import type * as grpc from '@grpc/grpc-js';
import winston from 'winston';
import { idFor } from '../../../src/volume/ids.ts';
import { serve, socketPath } from '../../../src/csi/server.ts';
import { lockKeys } from '../../../src/csi/wrap.ts';
import { createLogger, redact } from '../../../src/observability/log.ts';
import { blockCap, codeOf, connectCsi, GiB, mountCap, type CsiClients } from '../../support/csi-client.ts';
import { ctx, fakeDriver, POOL, type FakeDriver } from '../support/fake-driver.ts';

describe('CSI over gRPC', () => {
  let fd: FakeDriver;
  let server: grpc.Server;
  let csi: CsiClients;
  let logged: string;
  beforeEach(async () => {
    fd = await fakeDriver();
    const log = createLogger({ level: 'debug' });
    log.clear();
    const sink = new PassThrough();
    logged = '';
    sink.on('data', (b: Buffer) => { logged += b.toString(); });
    log.add(new winston.transports.Stream({ stream: sink }));
    server = await serve(fd.cfg.endpoint, { identity: fd.driver.identity, controller: fd.driver.controller, node: fd.driver.node }, { log, metrics: fd.driver.metrics });
    csi = connectCsi(fd.cfg.endpoint);
  });
  afterEach(async () => {
    csi.close();
    server.forceShutdown();
    await fd.cleanup();
  });

  const createReq = (name: string, o: Record<string, unknown> = {}) => ({ name, volume_capabilities: [mountCap()], capacity_range: { required_bytes: GiB }, ...o });

  it('serves on a socket of mode 0600', async () => {
    const st = await stat(socketPath(fd.cfg.endpoint));
    assert.ok(st.isSocket());
    assert.equal(st.mode & 0o777, 0o600);
  });

  it('identity answers; Probe is ready on a healthy pool and not on a failed one', async () => {
    const info = await csi.identity.call('GetPluginInfo');
    assert.ok(info.name);
    assert.equal((await csi.identity.call('Probe')).ready.value, true);
    fd.dm.setPoolMode(POOL, 'fail');
    // Probe answers from a healthy reading of the last few seconds; the next reading has the failure.
    await fd.driver.pool.health(ctx);
    assert.equal((await csi.identity.call('Probe')).ready.value, false);
  });

  it('codes travel over the wire', async () => {
    assert.equal(await codeOf(csi.controller.call('CreateVolume', { volume_capabilities: [mountCap()] })), 'INVALID_ARGUMENT');
    assert.equal(await codeOf(csi.controller.call('CreateVolume', createReq('x', { volume_capabilities: [mountCap('ext4', 'MULTI_NODE_MULTI_WRITER')] }))), 'INVALID_ARGUMENT');
    assert.equal(await codeOf(csi.controller.call('CreateVolume', createReq('x', { capacity_range: { required_bytes: 1024 ** 5 } }))), 'OUT_OF_RANGE');
    assert.equal(await codeOf(csi.controller.call('DeleteVolume', { volume_id: 'vol-00000000000000000000000000000000' })), 'OK');
    assert.equal(await codeOf(csi.controller.call('ListVolumes', { starting_token: 'nope' })), 'ABORTED');
    assert.equal(await codeOf(csi.node.call('NodeStageVolume', { volume_id: 'vol-00000000000000000000000000000000', staging_target_path: join(fd.dir, 's'), volume_capability: mountCap() })), 'NOT_FOUND');
    const v = (await csi.controller.call('CreateVolume', createReq('a'))).volume;
    assert.equal(Number(v.capacity_bytes), GiB);
    assert.equal(await codeOf(csi.controller.call('CreateVolume', createReq('a', { capacity_range: { required_bytes: 2 * GiB } }))), 'ALREADY_EXISTS');
    assert.equal(await codeOf(csi.controller.call('CreateVolume', createReq('a', { volume_capabilities: [blockCap()] }))), 'ALREADY_EXISTS');
    const staging = join(fd.dir, 'staging');
    await csi.node.call('NodeStageVolume', { volume_id: v.volume_id, staging_target_path: staging, volume_capability: mountCap() });
    assert.equal(await codeOf(csi.controller.call('DeleteVolume', { volume_id: v.volume_id })), 'FAILED_PRECONDITION');
    const target = join(fd.dir, 'target');
    await csi.node.call('NodePublishVolume', { volume_id: v.volume_id, staging_target_path: staging, target_path: target, volume_capability: mountCap() });
    await csi.node.call('NodeUnpublishVolume', { volume_id: v.volume_id, target_path: target });
    await csi.node.call('NodeUnstageVolume', { volume_id: v.volume_id, staging_target_path: staging });
    assert.equal(await codeOf(csi.controller.call('DeleteVolume', { volume_id: v.volume_id })), 'OK');
  });

  it('methods the driver does not implement are UNIMPLEMENTED', async () => {
    assert.equal(await codeOf(csi.controller.call('ControllerPublishVolume', { volume_id: 'vol-00000000000000000000000000000000', node_id: 'node-1', volume_capability: mountCap() })), 'UNIMPLEMENTED');
    assert.equal(await codeOf(csi.controller.call('ControllerUnpublishVolume', { volume_id: 'x', node_id: 'node-1' })), 'UNIMPLEMENTED');
  });

  it('concurrent RPCs on the same volume are serialised: one device, one create_thin', async () => {
    const results = await Promise.all(Array.from({ length: 6 }, () => csi.controller.call('CreateVolume', createReq('same'))));
    const ids = new Set(results.map((r) => r.volume.volume_id));
    assert.equal(ids.size, 1);
    assert.equal((await fd.store.listDevices()).length, 1);
    assert.equal(fd.dm.ops.filter((o) => o.op === 'message' && o.args[1]!.startsWith('create_thin')).length, 1);
    const id = [...ids][0]!;
    // Snapshots and a delete of the same volume race; each either sees the volume or not, nothing half-made stays.
    const outcomes = await Promise.all([
      codeOf(csi.controller.call('CreateSnapshot', { name: 's1', source_volume_id: id })),
      codeOf(csi.controller.call('DeleteVolume', { volume_id: id })),
      codeOf(csi.controller.call('CreateSnapshot', { name: 's2', source_volume_id: id })),
    ]);
    for (const c of outcomes) assert.ok(['OK', 'NOT_FOUND'].includes(c), outcomes.join());
    const recs = await fd.store.listDevices();
    assert.ok(recs.every((r) => r.state === 'Created'), JSON.stringify(recs.map((r) => r.state)));
    assert.deepEqual(fd.dm.metadataThinIds(POOL), recs.map((r) => r.deviceId).sort((a, b) => a - b));
    assert.deepEqual(fd.dm.violations, []);
  });

  it('secrets never reach the log', async () => {
    const secret = 'hunter2-very-secret';
    await codeOf(csi.controller.call('CreateVolume', createReq('sec', { secrets: { password: secret, token: secret } })));
    await codeOf(csi.node.call('NodeStageVolume', { volume_id: 'vol-00000000000000000000000000000000', staging_target_path: join(fd.dir, 's'), volume_capability: mountCap(), secrets: { key: secret } }));
    await codeOf(csi.controller.call('CreateVolume', { name: '', secrets: { a: secret } }));
    await new Promise((r) => setImmediate(r));
    assert.match(logged, /rpc request/);
    assert.ok(!logged.includes(secret), logged);
  });
});

describe('socketPath', () => {
  it('accepts unix:///abs, unix:/abs and /abs; refuses anything else with INVALID_ARGUMENT', () => {
    assert.equal(socketPath('unix:///run/x/csi.sock'), '/run/x/csi.sock');
    assert.equal(socketPath('unix:/run/x/csi.sock'), '/run/x/csi.sock');
    assert.equal(socketPath('/run/x/csi.sock'), '/run/x/csi.sock');
    for (const bad of ['tcp://127.0.0.1:10000', 'unix://relative.sock', 'csi.sock', '']) {
      assert.throws(() => socketPath(bad), { code: 3 }, bad);
    }
  });
});

describe('lockKeys and redact', () => {
  it('lock the volume, the new name and the source', () => {
    assert.deepEqual(lockKeys('DeleteVolume', { volume_id: 'vol-1' }), ['vol-1']);
    const keys = lockKeys('CreateVolume', { name: 'n', volume_content_source: { snapshot: { snapshot_id: 'snap-1' } } });
    assert.deepEqual(keys, [idFor('vol', 'n'), 'snap-1']);
    assert.deepEqual(lockKeys('CreateSnapshot', { name: 's', source_volume_id: 'vol-9' }), [idFor('snap', 's'), 'vol-9']);
    assert.deepEqual(lockKeys('NodeGetInfo', {}), []);
  });
  it('redacts secret maps and secret-looking keys, keeps tokens for paging', () => {
    const out = redact({ secrets: { a: 'x' }, node_stage_secrets: { b: 'y' }, nested: { password: 'p', apiKey: 'k' }, starting_token: 'vol-1', name: 'ok' });
    assert.deepEqual(out, { secrets: '[REDACTED]', node_stage_secrets: '[REDACTED]', nested: { password: '[REDACTED]', apiKey: '[REDACTED]' }, starting_token: 'vol-1', name: 'ok' });
  });
});
