// The CSI services as src/csi/proto.ts builds them (from the committed JSON descriptor) against
// @grpc/proto-loader's reading of proto/csi.proto, the reference: same methods, same paths, and
// messages that read back alike in both directions.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import type * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { csiPackageDefinition, SERVICES } from '../../../src/csi/proto.ts';
// @ts-expect-error: a plain .mjs script, shared with scripts/generate-types.mjs
import { csiDescriptor } from '../../../scripts/csi-descriptor.mjs';

const ROOT = new URL('../../../', import.meta.url);
const reference = protoLoader.loadSync(new URL('proto/csi.proto', ROOT).pathname, { keepCase: true, longs: Number, enums: String, defaults: true, oneofs: true });
const ours = csiPackageDefinition();

type Method = grpc.MethodDefinition<unknown, unknown>;
const methods = (def: unknown) => def as Record<string, Method>;

/** Requests and responses that exercise oneofs, maps, enums, wrappers, int64 and repeated fields. */
const SAMPLES: Record<string, { req: object; res: object }> = {
  CreateVolume: {
    req: {
      name: 'pvc-1', capacity_range: { required_bytes: 5 * 2 ** 30, limit_bytes: 0 }, parameters: { fsType: 'xfs' }, secrets: { k: 'v' },
      volume_capabilities: [{ mount: { fs_type: 'ext4', mount_flags: ['noatime'] }, access_mode: { mode: 'SINGLE_NODE_MULTI_WRITER' } }, { block: {}, access_mode: { mode: 'SINGLE_NODE_WRITER' } }],
      volume_content_source: { snapshot: { snapshot_id: 'snap-1' } },
      accessibility_requirements: { requisite: [{ segments: { 'dmthin.csi.io/node': 'n1' } }], preferred: [] },
    },
    res: { volume: { volume_id: 'vol-1', capacity_bytes: 2 ** 40 + 7, volume_context: { a: 'b' }, accessible_topology: [{ segments: { z: '1' } }] } },
  },
  Probe: { req: {}, res: { ready: { value: true } } },
  NodeGetVolumeStats: {
    req: { volume_id: 'v', volume_path: '/p' },
    res: { usage: [{ available: 1, total: 2, used: 1, unit: 'BYTES' }, { total: 100, unit: 'INODES' }], volume_condition: { abnormal: true, message: 'x' } },
  },
  CreateSnapshot: {
    req: { source_volume_id: 'vol-1', name: 's', parameters: {} },
    res: { snapshot: { snapshot_id: 'snap-1', source_volume_id: 'vol-1', size_bytes: 3, creation_time: { seconds: 1700000000, nanos: 5 }, ready_to_use: true } },
  },
};

describe('CSI wire definitions', () => {
  it('the committed descriptor (src/csi/generated/csi.json) is csi.proto as it is now (else: npm run generate-types)', () => {
    const committed = JSON.parse(readFileSync(new URL('src/csi/generated/csi.json', ROOT), 'utf8'));
    assert.deepEqual(committed, JSON.parse(JSON.stringify(csiDescriptor(new URL('proto/csi.proto', ROOT).pathname))));
  });

  it('has every method of the three services, with the reference paths and stream flags', () => {
    for (const service of SERVICES) {
      const ref = methods(reference[service]);
      const mine = methods(ours[service]);
      assert.deepEqual(Object.keys(mine).sort(), Object.keys(ref).sort(), service);
      for (const [name, m] of Object.entries(ref)) {
        const { path, requestStream, responseStream, originalName } = m;
        assert.deepEqual({ path: mine[name]!.path, requestStream: mine[name]!.requestStream, responseStream: mine[name]!.responseStream, originalName: mine[name]!.originalName }, { path, requestStream, responseStream, originalName }, `${service}/${name}`);
      }
    }
  });

  it('encodes and decodes so that the reference reads the same, and reads what the reference wrote', () => {
    for (const [name, { req, res }] of Object.entries(SAMPLES)) {
      const service = SERVICES.find((s) => name in methods(reference[s]))!;
      const ref = methods(reference[service])[name]!;
      const mine = methods(ours[service])[name]!;
      // Not byte for byte: protobufjs 8 leaves out proto3 zero values the reference's older protobufjs writes.
      assert.deepEqual(ref.requestDeserialize(mine.requestSerialize(req)), ref.requestDeserialize(ref.requestSerialize(req)), `${name}: request read back alike`);
      assert.deepEqual(ref.responseDeserialize(mine.responseSerialize(res)), ref.responseDeserialize(ref.responseSerialize(res)), `${name}: response read back alike`);
      const reqBytes = ref.requestSerialize(req);
      const resBytes = ref.responseSerialize(res);
      assert.deepEqual(mine.requestDeserialize(reqBytes), ref.requestDeserialize(reqBytes), `${name}: same request object`);
      assert.deepEqual(mine.responseDeserialize(resBytes), ref.responseDeserialize(resBytes), `${name}: same response object`);
    }
  });

  it('refuses to serialize what is not a message', () => {
    const probe = methods(ours['csi.v1.Identity'])['Probe']!;
    // Deliberately not a request: an array is what the serializer must refuse.
    assert.throws(() => probe.requestSerialize([] as never), /cannot serialize an array/);
  });
});
