// Who gets through a node agent's channel: only the controller's ServiceAccount, with a token
// for the channel's audience, at the node it meant, over TLS to exactly the published certificate.
// Reviews go to the API double's TokenReview; the cache is checked with a counting reviewer.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { ChannelAuth, CHANNEL_AUDIENCE, type TokenReviewer } from '../../../../src/kube/channel/auth.ts';
import { NODE_HEADER } from '../../../../src/kube/channel/server.ts';
import type { ThinPoolCr } from '../../../../src/kube/types.ts';
import { API_AUDIENCE } from '../../../doubles/kube-api/index.ts';
import { channelWorld, collect, CONTROLLER_USER, type ChannelWorld } from './world.ts';

const POOLS = 'thinpools.dmthin.csi.io';

describe('the channel admits only the controller, at the node it meant', () => {
  let c: ChannelWorld;
  let snap: string;
  before(async () => {
    c = await channelWorld();
    snap = await c.snapshot('n1', 'a');
    c.fakes.get('n1')!.add(snap, 1 << 30, [[0, 65536]]);
  });
  after(() => c.close());

  const channelOf = (node: string) => (c.w.d.object(POOLS, node) as unknown as ThinPoolCr).status!.channel!;
  const allocated = async (dialer: ReturnType<ChannelWorld['dialer']>, node = 'n1') => {
    const { client, metadata } = await dialer.dial(node);
    return (await collect(client, 'GetMetadataAllocated', { snapshot_id: snap }, { metadata, deadline: Date.now() + 10_000 }).done).error;
  };
  const handled = () => c.fakes.get('n1')!.contexts.length;

  it('the controller\'s token for the channel audience gets an answer', async () => {
    assert.equal(await allocated(c.dialer()), undefined);
  });

  it('no token: UNAUTHENTICATED, and no handler runs', async () => {
    const ep = channelOf('n1');
    const tls = grpc.credentials.createSsl(Buffer.from(ep.certificate), null, null, { checkServerIdentity: () => undefined });
    const client = new grpc.Client(ep.address, tls, { 'grpc.ssl_target_name_override': 'x' });
    const md = new grpc.Metadata();
    md.set(NODE_HEADER, 'n1');
    const seen = handled();
    const r = await collect(client, 'GetMetadataAllocated', { snapshot_id: snap }, { metadata: md }).done;
    client.close();
    assert.equal(r.error?.code, grpc.status.UNAUTHENTICATED);
    assert.equal(handled(), seen);
  });

  it('another ServiceAccount: PERMISSION_DENIED', async () => {
    const seen = handled();
    const e = await allocated(c.dialer(c.w.d.tokens.serviceAccount('kube-system', 'dmthin-csi-node', [CHANNEL_AUDIENCE])));
    assert.equal(e?.code, grpc.status.PERMISSION_DENIED);
    assert.match(e!.details, /system:serviceaccount:kube-system:dmthin-csi-node may not use the channel/);
    assert.equal(handled(), seen);
  });

  it('the controller\'s API token (another audience), or an unknown token: UNAUTHENTICATED', async () => {
    const api = await allocated(c.dialer(c.w.d.tokens.serviceAccount('kube-system', 'dmthin-csi-controller', [API_AUDIENCE])));
    assert.equal(api?.code, grpc.status.UNAUTHENTICATED);
    assert.match(api!.details, /audiences/);
    assert.equal((await allocated(c.dialer('not-a-token')))?.code, grpc.status.UNAUTHENTICATED);
  });

  it('a published fingerprint the agent\'s certificate does not have: the controller refuses the peer (UNAVAILABLE)', async () => {
    const real = channelOf('n1');
    c.w.d.mutate(POOLS, 'n1', (o) => { (o.status as ThinPoolCr['status'])!.channel = { ...real, fingerprint: channelOf('n2').fingerprint }; });
    const seen = handled();
    try {
      assert.equal((await allocated(c.dialer()))?.code, grpc.status.UNAVAILABLE);
      // Another agent's certificate and fingerprint at this agent's address: refused as well.
      c.w.d.mutate(POOLS, 'n1', (o) => { (o.status as ThinPoolCr['status'])!.channel = { ...channelOf('n2'), address: real.address }; });
      assert.equal((await allocated(c.dialer()))?.code, grpc.status.UNAVAILABLE);
      assert.equal(handled(), seen);
    } finally {
      c.w.d.mutate(POOLS, 'n1', (o) => { (o.status as ThinPoolCr['status'])!.channel = real; });
    }
  });

  it('a call meant for another node (an agent cloned with the same key): FAILED_PRECONDITION', async () => {
    const n2 = channelOf('n2');
    c.w.d.mutate(POOLS, 'n2', (o) => { (o.status as ThinPoolCr['status'])!.channel = channelOf('n1'); });
    const seen = handled();
    try {
      const e = await allocated(c.dialer(), 'n2');
      assert.equal(e?.code, grpc.status.FAILED_PRECONDITION);
      assert.match(e!.details, /node n1's agent, the call was meant for n2/);
      assert.equal(handled(), seen);
    } finally {
      c.w.d.mutate(POOLS, 'n2', (o) => { (o.status as ThinPoolCr['status'])!.channel = n2; });
    }
  });
});

describe('ChannelAuth: verdicts reviewed once per token and while fresh', () => {
  function counting(verdict: () => Promise<{ authenticated: boolean; username?: string }>) {
    const calls: string[] = [];
    const reviewer: TokenReviewer = { review: async (token) => { calls.push(token); return verdict(); } };
    return { reviewer, calls };
  }

  it('reuses a verdict until its time is up, for refusals too', async () => {
    let now = 0;
    const { reviewer, calls } = counting(async () => ({ authenticated: true, username: CONTROLLER_USER }));
    const auth = new ChannelAuth(reviewer, { allowedUser: CONTROLLER_USER, ttlMs: 1000, now: () => now });
    await auth.check('Bearer t1');
    await auth.check('Bearer t1');
    assert.equal(calls.length, 1);
    now = 1001;
    await auth.check('Bearer t1');
    assert.equal(calls.length, 2);
    const denied = counting(async () => ({ authenticated: true, username: 'system:serviceaccount:x:y' }));
    const strict = new ChannelAuth(denied.reviewer, { allowedUser: CONTROLLER_USER, now: () => now });
    for (let i = 0; i < 3; i++) await assert.rejects(strict.check('Bearer t2'), { code: grpc.status.PERMISSION_DENIED });
    assert.equal(denied.calls.length, 1);
  });

  it('a failed review is UNAVAILABLE and not remembered', async () => {
    let fail = true;
    const { reviewer, calls } = counting(async () => {
      if (fail) throw new Error('connection refused');
      return { authenticated: true, username: CONTROLLER_USER };
    });
    const auth = new ChannelAuth(reviewer, { allowedUser: CONTROLLER_USER });
    await assert.rejects(auth.check('Bearer t'), { code: grpc.status.UNAVAILABLE });
    fail = false;
    await auth.check('Bearer t');
    assert.equal(calls.length, 2);
  });

  it('holds at most maxEntries verdicts', async () => {
    const { reviewer, calls } = counting(async () => ({ authenticated: true, username: CONTROLLER_USER }));
    const auth = new ChannelAuth(reviewer, { allowedUser: CONTROLLER_USER, maxEntries: 2 });
    for (const t of ['a', 'b', 'c', 'a']) await auth.check(`Bearer ${t}`);
    assert.equal(calls.length, 4, 'a was evicted by c');
    await assert.rejects(auth.check('Basic abc'), { code: grpc.status.UNAUTHENTICATED });
  });
});
