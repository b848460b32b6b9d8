/**
 * Hostile but well-formed requests to the standalone driver on a real kernel: node calls aimed
 * at the node's own mounts and files, with unknown and real volume ids. Each must be refused (or
 * be a no-op), the guest's mount table and those files must be exactly as before, and the driver
 * must still serve. Then raw random bytes on every method, and 50 concurrent same-name creates.
 */
import * as grpc from '@grpc/grpc-js';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, lstatSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { META } from '../../src/volume/meta.ts';
import { csiPackageDefinition } from '../../src/csi/proto.ts';
import type { RpcName } from '../../src/csi/rpcs.ts';
import { blockCap, codeOf, GiB, MiB, mountCap } from '../support/csi-client.ts';
import { ENDPOINT, KUBELET, liveThins, POOL, records, ROOT, sh, startDriver, STATE, stopDriver, tail, type DriverProcess } from './harness.ts';

let d: DriverProcess;
const N = () => d.clients.node;
const C = () => d.clients.controller;
const UNKNOWN = 'vol-00000000000000000000000000000000';
const USER = '/var/tmp/hostile-user';
const staging = (v: string) => `${KUBELET}/staging/${v}`;
const target = (v: string) => `${KUBELET}/pods/${v}/mount`;

/** Every entry under `dir` with its type, mode, size, mtime and (for files) content hash. */
function tree(dir: string, depth = 8): string[] {
  const out: string[] = [];
  const walk = (p: string, left: number) => {
    const st = lstatSync(p);
    const hash = st.isFile() ? createHash('sha256').update(readFileSync(p)).digest('hex').slice(0, 16) : '';
    out.push(`${p} ${st.mode.toString(8)} ${st.size} ${st.mtimeMs} ${hash}`);
    if (st.isDirectory() && left > 0) for (const e of readdirSync(p).sort()) walk(join(p, e), left - 1);
  };
  walk(dir, depth);
  return out;
}

/**
 * The devices and mounts the suites before this one left in the guest (each leaves its pool
 * behind): their pools (dmthin-rk-*), the thin devices on those pools, the dm-N and loop nodes
 * they bring, and whatever is mounted under their own kubelet and state directories. They are
 * not this suite's to judge.
 */
function othersDevices(): Set<string> {
  const mine = sh('dmsetup', ['info', '-c', '--noheadings', '-o', 'major,minor', POOL]).trim();
  const others = new Set<string>();
  for (const l of sh('dmsetup', ['table']).split('\n')) {
    const m = /^(\S+): \d+ \d+ (thin-pool|thin) (\S+)/.exec(l);
    if (m && m[1]!.startsWith('dmthin-rk-') && m[1] !== POOL) others.add(m[1]!);
    if (m && m[2] === 'thin' && m[3] !== mine) others.add(m[1]!);
  }
  return others;
}
const othersPath = /^\/var\/lib\/(kubelet-rk|dmthin-rk)-(?!hostile\b)/;
const othersNode = /^(dm-\d+|loop\d+)$/;

/** What the hostile calls must not change: the mount table and the files they aimed at. */
function snapshot() {
  const skip = othersDevices();
  const entries = (p: string) => `${p}: ${readdirSync(p).filter((e) => !skip.has(e) && !othersNode.test(e)).sort().join(' ')}`;
  // The host's own files show through the guest's root (and the checkout is the host's): other
  // processes on the host may change them, so of those only the names the calls aimed at count.
  const names = (p: string) => `${p}: ${readdirSync(p).filter((e) => !['.cache', 'dist'].includes(e)).sort().join(' ')}`;
  const mounts = readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter((l) => !othersPath.test(l.split(' ')[4] ?? ''));
  return {
    mountinfo: mounts.join('\n'),
    user: tree(USER),
    kubelet: tree(KUBELET, 3),
    passwd: readFileSync('/etc/passwd', 'utf8'),
    listings: [...['/tmp', '/dev', '/dev/mapper'].map(entries), ...['/etc', ROOT].map(names)],
  };
}

/** Whether `p` is itself a mount point in the guest (the table read the way the kernel shows it). */
function isMountPoint(p: string): boolean {
  return readFileSync('/proc/self/mountinfo', 'utf8').split('\n').some((l) => l.split(' ')[4] === p);
}

describe('hostile requests to the node service', { timeout: 600_000 }, () => {
  const ids = { m: '', b: '' };
  let holder: number | undefined;

  before(async () => {
    rmSync(STATE, { recursive: true, force: true });
    rmSync(USER, { recursive: true, force: true });
    mkdirSync(KUBELET, { recursive: true });
    mkdirSync(join(USER, 'dir'), { recursive: true });
    writeFileSync(join(USER, 'file.txt'), 'precious\n');
    writeFileSync(join(USER, 'dir', 'a.txt'), 'also precious\n');
    symlinkSync('/etc', join(USER, 'link'));
    d = await startDriver();
    for (const [k, name, cap] of [['m', 'h-mount', mountCap()], ['b', 'h-block', blockCap()]] as const) {
      const v = (await C().call('CreateVolume', { name, capacity_range: { required_bytes: 64 * MiB }, volume_capabilities: [cap] })).volume;
      ids[k] = v.volume_id;
      await N().call('NodeStageVolume', { volume_id: v.volume_id, staging_target_path: staging(v.volume_id), volume_capability: cap });
      await N().call('NodePublishVolume', { volume_id: v.volume_id, staging_target_path: staging(v.volume_id), target_path: target(v.volume_id), volume_capability: cap, readonly: false });
    }
    writeFileSync(join(target(ids.m), 'in-volume.txt'), 'volume data\n');
    holder = openSync(target(ids.b), 'r'); // a pod using the raw device
  });

  after(async () => {
    if (holder !== undefined) closeSync(holder);
    if (d) {
      const code = await stopDriver(d);
      if (code !== 0) console.log(tail(d.log));
    }
  });

  const PATHS = ['/proc', '/sys', '/dev', '/etc', '/tmp', ROOT, '/proc/1', `${USER}/file.txt`, `${USER}/dir`, `${USER}/link`];

  /** What a real volume's call at `p` must answer; the unknown id is always NOT_FOUND. */
  function expected(rpc: string, vol: 'm' | 'b', p: string): string {
    switch (rpc) {
      case 'NodeUnpublishVolume': return isMountPoint(p) ? 'FAILED_PRECONDITION' : 'OK'; // nothing of its own there: nothing to do
      case 'NodeUnstageVolume': return 'FAILED_PRECONDITION'; // a foreign mount, or the volume is in use elsewhere
      case 'NodeStageVolume': return vol === 'b' ? 'OK' : 'FAILED_PRECONDITION'; // block staging mounts nothing
      case 'NodePublishVolume': return 'FAILED_PRECONDITION';
      default: return 'NOT_FOUND';
    }
  }

  it('refuses node calls aimed at the node\'s own mounts and files, and changes nothing', async () => {
    const before = snapshot();
    const got: string[] = [];
    const want: string[] = [];
    // One sequence of calls per path, the paths side by side: every call leaves things as they
    // were, so the order between paths does not matter (and the guest is slow).
    await Promise.all(PATHS.map(async (p) => {
      for (const vol of ['u', 'm', 'b'] as const) {
        const id = vol === 'u' ? UNKNOWN : ids[vol];
        const cap = vol === 'b' ? blockCap() : mountCap();
        const calls: Array<[RpcName, object]> = [
          ['NodeUnpublishVolume', { volume_id: id, target_path: p }],
          ['NodeUnstageVolume', { volume_id: id, staging_target_path: p }],
          ['NodeStageVolume', { volume_id: id, staging_target_path: p, volume_capability: cap }],
          ['NodePublishVolume', { volume_id: id, staging_target_path: staging(id), target_path: p, volume_capability: cap }],
          ['NodeGetVolumeStats', { volume_id: id, volume_path: p }],
          ['NodeExpandVolume', { volume_id: id, volume_path: p, capacity_range: { required_bytes: 100 * GiB } }],
        ];
        for (const [rpc, req] of calls) {
          got.push(`${rpc} ${vol} ${p} ${await codeOf(N().call(rpc, req))}`);
          want.push(`${rpc} ${vol} ${p} ${vol === 'u' ? 'NOT_FOUND' : expected(rpc, vol, p)}`);
        }
      }
    }));
    // An unknown volume creates nothing on the way to its NOT_FOUND.
    const fresh = `${USER}/new/deeper`;
    for (const [rpc, req] of [
      ['NodeStageVolume', { volume_id: UNKNOWN, staging_target_path: fresh, volume_capability: mountCap() }],
      ['NodePublishVolume', { volume_id: UNKNOWN, staging_target_path: staging(UNKNOWN), target_path: fresh, volume_capability: blockCap() }],
    ] as const) {
      got.push(`${rpc} u ${fresh} ${await codeOf(N().call(rpc, req))}`);
      want.push(`${rpc} u ${fresh} NOT_FOUND`);
    }
    assert.deepEqual(got.sort(), want.sort());
    assert.deepEqual(snapshot(), before);
  });

  it('refuses malformed paths and missing fields before any lookup', async () => {
    const before = snapshot();
    const bad = ['relative/path', '/var/lib/../../etc', '/tmp/x\0/etc', ''];
    for (const id of [UNKNOWN, ids.m]) {
      for (const p of bad) {
        for (const [rpc, req] of [
          ['NodeUnpublishVolume', { volume_id: id, target_path: p }],
          ['NodeUnstageVolume', { volume_id: id, staging_target_path: p }],
          ['NodeStageVolume', { volume_id: id, staging_target_path: p, volume_capability: mountCap() }],
          ['NodePublishVolume', { volume_id: id, staging_target_path: staging(id), target_path: p, volume_capability: mountCap() }],
        ] as const) assert.equal(await codeOf(N().call(rpc, req)), 'INVALID_ARGUMENT', `${rpc} ${id} ${JSON.stringify(p)}`);
        // Stats: the volume is never at a relative path (NOT_FOUND); a missing path is a missing field.
        const stats = p === '' || p.includes('\0') || p.includes('..') ? 'INVALID_ARGUMENT' : 'NOT_FOUND';
        assert.equal(await codeOf(N().call('NodeGetVolumeStats', { volume_id: id, volume_path: p })), stats, `stats ${id} ${JSON.stringify(p)}`);
      }
      assert.equal(await codeOf(N().call('NodeStageVolume', { volume_id: id, staging_target_path: '/var/lib/x' })), 'INVALID_ARGUMENT');
    }
    assert.deepEqual(snapshot(), before);
  });

  it('still serves: the volumes answer at their own paths', async () => {
    assert.equal((await d.clients.identity.call('Probe')).ready.value, true);
    const s = await N().call('NodeGetVolumeStats', { volume_id: ids.m, volume_path: target(ids.m) });
    assert.ok(s.usage.some((u: { unit: string; total: number }) => u.unit === 'BYTES' && Number(u.total) > 0));
    assert.equal(readFileSync(join(target(ids.m), 'in-volume.txt'), 'utf8'), 'volume data\n');
    assert.equal(await codeOf(N().call('NodeGetVolumeStats', { volume_id: ids.b, volume_path: target(ids.b) })), 'OK');
  });

  it('answers raw random bytes on every method with an error, never a crash', async () => {
    const client = new grpc.Client(ENDPOINT, grpc.credentials.createInsecure());
    const raw = (path: string, body: Buffer) => new Promise<string>((resolve) => {
      client.makeUnaryRequest(path, (b: Buffer) => b, (b: Buffer) => b, body, { deadline: Date.now() + 30_000 }, (err) => resolve(err ? grpc.status[err.code] ?? String(err.code) : 'OK'));
    });
    const seen = new Map<string, number>();
    try {
      for (const service of Object.values(csiPackageDefinition())) {
        for (const m of Object.values(service)) {
          // Wire type 7 does not exist: this body can never decode, whatever the message.
          const never = await raw(m.path, Buffer.concat([Buffer.from([0x0f]), randomBytes(63)]));
          assert.notEqual(never, 'OK', `${m.path} accepted undecodable bytes`);
          for (const len of [17, 4096]) {
            const c = await raw(m.path, randomBytes(len));
            assert.ok(!['UNAVAILABLE', 'UNKNOWN', 'CANCELLED', 'DEADLINE_EXCEEDED'].includes(c), `${m.path} ${len} bytes: ${c}`);
            seen.set(c, (seen.get(c) ?? 0) + 1);
          }
        }
      }
    } finally {
      client.close();
    }
    console.log(`random-byte answers: ${JSON.stringify(Object.fromEntries(seen))}`);
    assert.equal(d.child.exitCode, null, 'the driver is still running');
    assert.equal((await d.clients.identity.call('Probe')).ready.value, true);
  });

  it('gives one volume for 50 concurrent creates of one name', async () => {
    const req = { name: 'h-concurrent', capacity_range: { required_bytes: 64 * MiB }, volume_capabilities: [mountCap()] };
    const got = await Promise.all(Array.from({ length: 50 }, () => C().call('CreateVolume', req)));
    const distinct = new Set(got.map((r) => r.volume.volume_id));
    assert.equal(distinct.size, 1);
    assert.equal(records().filter((r) => r.meta[META.name] === 'h-concurrent').length, 1);
    assert.equal(records().filter((r) => r.kind === 'volume').length, 3, 'the two staged volumes and the one created');
    await C().call('DeleteVolume', { volume_id: [...distinct][0] });
  });

  it('tears its own volumes down normally and leaves nothing behind', async () => {
    if (holder !== undefined) closeSync(holder);
    holder = undefined;
    for (const id of [ids.m, ids.b]) {
      await N().call('NodeUnpublishVolume', { volume_id: id, target_path: target(id) });
      await N().call('NodeUnstageVolume', { volume_id: id, staging_target_path: staging(id) });
      await C().call('DeleteVolume', { volume_id: id });
    }
    assert.deepEqual(records(), []);
    assert.deepEqual(liveThins(), []);
    assert.equal(readFileSync(`${USER}/file.txt`, 'utf8'), 'precious\n');
    for (const id of [ids.m, ids.b]) assert.throws(() => lstatSync(target(id)), /ENOENT/, 'the targets publish made are gone');
  });
});
