// The kube test double isolates the status subresource like the real API server.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CoreV1Api } from '@kubernetes/client-node';
import { TV, fileDouble, merge, rejectsWith, thinVolume } from './helpers.ts';

interface TVObj {
  metadata: { name: string; resourceVersion: string; generation: number; labels?: Record<string, string> };
  spec: { sizeBytes: number };
  status?: Record<string, unknown>;
}

const { d, api } = await fileDouble();

describe('kube double: status subresource', () => {

  it('drops .status on create of a custom resource with a status subresource', async () => {
    const created = (await api.createClusterCustomObject({ ...TV, body: { ...thinVolume('s0'), status: { phase: 'Ready' } } })) as TVObj;
    assert.equal(created.status, undefined);
  });

  it('replace…Status changes only .status; main replace/patch ignore .status', async () => {
    const v1 = (await api.createClusterCustomObject({ ...TV, body: thinVolume('s1', { a: '1' }) })) as TVObj;
    const body = { ...v1, metadata: { ...v1.metadata, labels: { a: 'changed' } }, spec: { sizeBytes: 99 }, status: { phase: 'Ready' } };
    const v2 = (await api.replaceClusterCustomObjectStatus({ ...TV, name: 's1', body })) as TVObj;
    assert.deepEqual(v2.status, { phase: 'Ready' });
    assert.deepEqual(v2.metadata.labels, { a: '1' }, 'metadata changes are ignored on /status');
    assert.equal(v2.spec.sizeBytes, 1048576, 'spec changes are ignored on /status');
    assert.equal(v2.metadata.generation, 1, 'status writes do not bump generation');
    const v3 = (await api.replaceClusterCustomObject({ ...TV, name: 's1', body: { ...v2, spec: { sizeBytes: 5 }, status: { phase: 'Hacked' } } })) as TVObj;
    assert.deepEqual(v3.status, { phase: 'Ready' }, 'main PUT keeps the stored status');
    assert.equal(v3.spec.sizeBytes, 5);
    assert.equal(v3.metadata.generation, 2);
    const v4 = (await api.patchClusterCustomObject({ ...TV, name: 's1', body: { status: { phase: 'Hacked' } } }, merge)) as TVObj;
    assert.deepEqual(v4.status, { phase: 'Ready' }, 'main PATCH ignores .status');
    assert.equal(v4.metadata.resourceVersion, v3.metadata.resourceVersion, 'an ignored change is a no-op');
  });

  it('patch…Status merges into .status and honours a resourceVersion precondition', async () => {
    const v1 = (await api.createClusterCustomObject({ ...TV, body: thinVolume('s2') })) as TVObj;
    const v2 = (await api.patchClusterCustomObjectStatus({ ...TV, name: 's2', body: { status: { phase: 'Pending', usedBytes: 0 } } }, merge)) as TVObj;
    assert.deepEqual(v2.status, { phase: 'Pending', usedBytes: 0 });
    const v3 = (await api.patchClusterCustomObjectStatus({ ...TV, name: 's2', body: { spec: { sizeBytes: 1 }, status: { phase: 'Ready' } } }, merge)) as TVObj;
    assert.deepEqual(v3.status, { phase: 'Ready', usedBytes: 0 });
    assert.equal(v3.spec.sizeBytes, 1048576);
    const stale = { metadata: { resourceVersion: v1.metadata.resourceVersion }, status: { phase: 'Old' } };
    assert.equal((await rejectsWith(api.patchClusterCustomObjectStatus({ ...TV, name: 's2', body: stale }, merge), 409)).reason, 'Conflict');
    await rejectsWith(api.replaceClusterCustomObjectStatus({ ...TV, name: 's2', body: { ...v1, status: { phase: 'Old' } } }), 409);
    const got = (await api.getClusterCustomObjectStatus({ ...TV, name: 's2' })) as TVObj;
    assert.deepEqual(got.status, { phase: 'Ready', usedBytes: 0 });
  });

  it('answers 404 for /status of a missing object', async () => {
    await rejectsWith(api.getClusterCustomObjectStatus({ ...TV, name: 'missing' }), 404);
    await rejectsWith(api.patchClusterCustomObjectStatus({ ...TV, name: 'missing', body: { status: {} } }, merge), 404);
    await rejectsWith(api.replaceClusterCustomObjectStatus({ ...TV, name: 'missing', body: thinVolume('missing') }), 404);
  });

  it('isolates node status (CoreV1Api replaceNodeStatus / replaceNode)', async () => {
    const core = d.kubeConfig().makeApiClient(CoreV1Api);
    const n = await core.createNode({ body: { metadata: { name: 'n1' }, status: { capacity: { cpu: '2' } } } });
    assert.deepEqual(n.status?.capacity, { cpu: '2' }, 'built-in nodes keep status on create');
    const n2 = await core.replaceNodeStatus({ name: 'n1', body: { ...n, spec: { unschedulable: true }, status: { capacity: { cpu: '4' } } } });
    assert.deepEqual(n2.status?.capacity, { cpu: '4' });
    assert.equal(n2.spec?.unschedulable, undefined);
    const n3 = await core.replaceNode({ name: 'n1', body: { ...n2, spec: { unschedulable: true }, status: { capacity: { cpu: '8' } } } });
    assert.equal(n3.spec?.unschedulable, true);
    assert.deepEqual(n3.status?.capacity, { cpu: '4' });
  });
});
