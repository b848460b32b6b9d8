// A node deleted from the cluster takes its devices with it; its objects must not keep
// their finalizers forever, while a node that merely has no running agent must keep them.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CoreV1Api } from '@kubernetes/client-node';
import { nodeExists } from '../../../src/cli/kube.ts';
import { KubeBackend } from '../../../src/kube/backend.ts';
import { TOPOLOGY_KEY } from '../../../src/version.ts';
import { createReq, deadline, world } from './harness.ts';

const VOLS = 'thinvolumes.dmthin.csi.io';

describe('kube mode: deleted nodes', () => {
  it('a delete releases the finalizer only when the volume\'s Node is gone', async () => {
    const w = await world();
    try {
      await w.d.seed('nodes', { apiVersion: 'v1', kind: 'Node', metadata: { name: 'n1' } });
      await w.startNode('n1');
      const id = (await w.controller.CreateVolume(deadline(), createReq('doomed', { node: 'n1' }))).volume!.volume_id!;
      await w.stopNode('n1'); // the agent is down: nobody on the node can release the finalizer
      const core = w.d.kubeConfig().makeApiClient(CoreV1Api);
      const backend = new KubeBackend(w.api, { topologyKey: TOPOLOGY_KEY, defaultWaitMs: 300, pollBaseMs: 5, pollMaxMs: 20, nodeExists: (n) => nodeExists(core, n) });
      await assert.rejects(backend.remove(deadline(300), id), /still being deleted/);
      assert.equal(w.d.objects(VOLS).length, 1, 'node still exists: the finalizer stays');
      await core.deleteNode({ name: 'n1' });
      assert.equal(await nodeExists(core, 'n1'), false);
      await backend.remove(deadline(2000), id);
      assert.equal(w.d.objects(VOLS).length, 0, 'node gone: the object is released');
    } finally {
      await w.close();
    }
  });
});
