// The API double's TokenReview against what kube-apiserver answers (the same requests run on
// the real server in test/unit/kube/channel/real-tokenreview.test.ts).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { AuthenticationV1Api } from '@kubernetes/client-node';
import { API_AUDIENCE, startApiDouble, type ApiDouble } from '../../../doubles/kube-api/index.ts';

describe('kube-api double: TokenReview', () => {
  let d: ApiDouble;
  let api: AuthenticationV1Api;
  before(async () => {
    d = await startApiDouble();
    api = d.kubeConfig().makeApiClient(AuthenticationV1Api);
  });
  after(() => d.close());
  const review = (token: string, audiences?: string[]) =>
    api.createTokenReview({ body: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token, ...(audiences ? { audiences } : {}) } } });

  it('names a ServiceAccount token\'s user and groups, and the audiences accepted', async () => {
    const t = d.tokens.serviceAccount('ns1', 'sa1', ['aud-a', 'aud-b']);
    const r = await review(t, ['aud-b', 'aud-c']);
    assert.equal(r.status?.authenticated, true);
    assert.equal(r.status?.user?.username, 'system:serviceaccount:ns1:sa1');
    assert.deepEqual(r.status?.user?.groups, ['system:serviceaccounts', 'system:serviceaccounts:ns1', 'system:authenticated']);
    assert.deepEqual(r.status?.audiences, ['aud-b']);
    assert.equal(r.spec.token, t, 'the spec is echoed');
  });

  it('no audiences asked: the API\'s own, which a token for another audience lacks', async () => {
    assert.deepEqual((await review(d.tokens.serviceAccount('ns1', 'sa1'))).status?.audiences, [API_AUDIENCE]);
    const other = await review(d.tokens.serviceAccount('ns1', 'sa1', ['aud-a']));
    assert.notEqual(other.status?.authenticated, true);
    assert.match(other.status?.error ?? '', /invalid for the target audiences/);
  });

  it('unknown and revoked tokens are not authenticated; an empty one is a bad request; nothing is stored', async () => {
    const t = d.tokens.serviceAccount('ns1', 'sa1');
    d.tokens.revoke(t);
    for (const x of [t, 'garbage']) {
      const r = await review(x);
      assert.notEqual(r.status?.authenticated, true);
      assert.match(r.status?.error ?? '', /invalid bearer token/);
    }
    await assert.rejects(review(''), { code: 400 });
    const get = await fetch(`${d.url}/apis/authentication.k8s.io/v1/tokenreviews`);
    assert.equal(get.status, 405);
  });
});
