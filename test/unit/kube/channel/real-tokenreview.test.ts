// The channel's admission against a real kube-apiserver (../shared/bin, on this host, ~15 s):
// real ServiceAccount tokens from the TokenRequest API, the node agent reviewing them with the
// chart's own RBAC (snapshotMetadata.enabled), the real audience checks. The API double's
// TokenReview (test/doubles/kube-api/tokenreview.ts) is modelled on what this test sees.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { AuthenticationV1Api, KubeConfig } from '@kubernetes/client-node';
import { ChannelAuth, CHANNEL_AUDIENCE, KubeTokenReviewer } from '../../../../src/kube/channel/auth.ts';
import { loadOrCreateIdentity } from '../../../../src/kube/channel/cert.ts';
import { ChannelDialer } from '../../../../src/kube/channel/client.ts';
import { ChannelServer } from '../../../../src/kube/channel/server.ts';
import { implementStreams } from '../../../../src/csi/server.ts';
import { silentLogger } from '../../../../src/observability/log.ts';
import { Metrics } from '../../../../src/observability/metrics.ts';
import { NS } from '../../../realkernel/realkube/chart.ts';
import { ControlPlane } from '../../../realkernel/realkube/cluster.ts';
import { pathOf } from '../../../realkernel/realkube/http.ts';
import { renderChart, ROOT } from '../../deploy/render.ts';
import { FakeSnapshotMetadata } from './fake-metadata.ts';
import { collect, service } from './world.ts';

const RBAC = new Set(['ServiceAccount', 'ClusterRole', 'ClusterRoleBinding', 'Role', 'RoleBinding']);

describe('channel admission on a real kube-apiserver', { concurrency: false, timeout: 180_000 }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'dmthin-channel-apiserver-'));
  const base = 20000 + Math.floor(Math.random() * 20000);
  const p = new ControlPlane({ root: ROOT, dir: join(dir, 'plane'), logs: join(dir, 'logs'), etcdPort: base, apiPort: base + 2 });
  let server: ChannelServer;
  let address = '';
  let identity: Awaited<ReturnType<typeof loadOrCreateIdentity>>;
  const fake = new FakeSnapshotMetadata();
  fake.add('snap-1', 1 << 30, [[0, 65536], [1 << 20, 65536]]);

  const token = async (sa: string, audiences?: string[]) => (await p.admin.create(`/api/v1/namespaces/${NS}/serviceaccounts/${sa}/token`,
    { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenRequest', spec: { expirationSeconds: 3600, ...(audiences ? { audiences } : {}) } })).status.token as string;
  const reviewerAs = async (sa: string) => {
    const kc = new KubeConfig();
    kc.loadFromOptions({
      clusters: [{ name: 'real', server: p.apiUrl, skipTLSVerify: true }], users: [{ name: sa, token: await token(sa) }],
      contexts: [{ name: 'real', cluster: 'real', user: sa }], currentContext: 'real',
    });
    return new KubeTokenReviewer(kc.makeApiClient(AuthenticationV1Api));
  };
  const call = async (t: string) => {
    const dialer = new ChannelDialer({ lookup: async () => ({ address, fingerprint: identity.fingerprint, certificate: identity.certPem }), token: async () => t });
    try {
      const { client, metadata } = await dialer.dial('n1');
      return await collect(client, 'GetMetadataAllocated', { snapshot_id: 'snap-1' }, { metadata, deadline: Date.now() + 20_000 }).done;
    } finally {
      dialer.close();
    }
  };

  before(async () => {
    await p.start();
    for (const o of (await renderChart({ values: { snapshotMetadata: { enabled: true } } })).map((d) => d.object as any).filter((o) => RBAC.has(o.kind))) {
      await p.admin.create(pathOf(o, false), o);
    }
    await p.admin.create(`/api/v1/namespaces/${NS}/serviceaccounts`, { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'nobody', namespace: NS } });
    identity = await loadOrCreateIdentity(join(dir, 'channel'), 'dmthin-csi node n1');
    const auth = new ChannelAuth(await reviewerAs('dmthin-csi-node'), { allowedUser: `system:serviceaccount:${NS}:dmthin-csi-controller` });
    server = new ChannelServer({ node: 'n1', identity, auth, log: silentLogger() });
    server.host(service(), implementStreams(service(), fake, { log: silentLogger(), metrics: new Metrics() }));
    address = `127.0.0.1:${await server.listen('127.0.0.1', 0)}`;
  });
  after(async () => {
    await server?.stop(100);
    await p.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('admits the controller\'s token for the channel audience, reviewed with the node\'s RBAC', async () => {
    const r = await call(await token('dmthin-csi-controller', [CHANNEL_AUDIENCE]));
    assert.equal(r.error, undefined);
    assert.deepEqual(r.messages[0]!.block_metadata, [{ byte_offset: 0, size_bytes: 65536 }, { byte_offset: 1 << 20, size_bytes: 65536 }]);
  });

  it('refuses the node\'s own token (PERMISSION_DENIED), the controller\'s API token and a forged one (UNAUTHENTICATED)', async () => {
    const node = await call(await token('dmthin-csi-node', [CHANNEL_AUDIENCE]));
    assert.equal(node.error?.code, grpc.status.PERMISSION_DENIED);
    assert.match(node.error!.details, /system:serviceaccount:kube-system:dmthin-csi-node may not use the channel/);
    const apiToken = await call(await token('dmthin-csi-controller'));
    assert.equal(apiToken.error?.code, grpc.status.UNAUTHENTICATED);
    const real = await token('dmthin-csi-controller', [CHANNEL_AUDIENCE]);
    const forged = await call(`${real.slice(0, -8)}AAAAAAAA`);
    assert.equal(forged.error?.code, grpc.status.UNAUTHENTICATED);
  });

  it('a reviewer without the chart\'s TokenReview grant cannot admit anyone: UNAVAILABLE, not a verdict', async () => {
    const auth = new ChannelAuth(await reviewerAs('nobody'), { allowedUser: `system:serviceaccount:${NS}:dmthin-csi-controller` });
    await assert.rejects(auth.check(`Bearer ${await token('dmthin-csi-controller', [CHANNEL_AUDIENCE])}`), (e: { code: number; message: string }) => {
      assert.equal(e.code, grpc.status.UNAVAILABLE);
      assert.match(e.message, /403/);
      return true;
    });
  });
});
