/**
 * The request loop of the ioctl DeviceMapper with a kernel double behind it: the buffer grows
 * and the request is made again when the answer did not fit (DM_BUFFER_FULL_FLAG), a request
 * that acted is never made twice, quick requests stay on the calling thread, errnos become kinds.
 */
import assert from 'node:assert/strict';
import { fstatSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { Flag, HEADER_SIZE, ioctlRequest } from '../../../src/devmapper/ioctl/abi.ts';
import { Control, type Transport } from '../../../src/devmapper/ioctl/control.ts';
import { DmError } from '../../../src/devmapper/types.ts';
import { SysError } from '../../../src/system/ffi.ts';

interface Seen { how: 'sync' | 'async'; request: number; size: number }

/** A kernel double whose answer needs `needs` bytes of buffer, or that fails with `errno`. */
function kernel(needs: number, errno?: string): { t: Transport; seen: Seen[] } {
  const seen: Seen[] = [];
  const answer = async (how: Seen['how'], request: number, buf: Buffer, what: string) => {
    seen.push({ how, request, size: buf.length });
    if (errno) throw new SysError(what, errno, 1);
    if (buf.length < needs) buf.writeUInt32LE(buf.readUInt32LE(28) | Flag.BUFFER_FULL, 28);
  };
  return {
    seen,
    t: { sync: (_fd, r, b, w) => answer('sync', r, b, w), async: (_c, _fd, r, b, w) => answer('async', r, b, w) },
  };
}

const control = (t: Transport) => {
  const path = join(tmpdir(), `dm-control-double-${process.pid}`);
  writeFileSync(path, '');
  return new Control(path, 1000, t);
};

describe('Control', () => {
  it('grows the buffer twofold until the answer fits, then returns it', async () => {
    const k = kernel(70_000);
    const c = control(k.t);
    const a = await c.call({}, 'LIST_DEVICES', { size: 16 << 10 });
    assert.deepEqual(k.seen.map((s) => s.size), [16384, 32768, 65536, 131072]);
    assert.equal(a.buf.length, 131072);
    assert.equal(a.header.flags & Flag.BUFFER_FULL, 0);
    await c.close();
  });

  it('never repeats a request that acted, even when the kernel says the answer did not fit', async () => {
    const k = kernel(1 << 20);
    const c = control(k.t);
    await c.call({}, 'TARGET_MSG', { name: 'pool' });
    assert.equal(k.seen.length, 1);
    await c.close();
  });

  it('asks quick questions on the calling thread and blocking ones on a worker', async () => {
    const k = kernel(0);
    const c = control(k.t);
    await c.call({}, 'DEV_STATUS', { name: 'v' });
    await c.call({}, 'DEV_SUSPEND', { name: 'v', flags: Flag.SUSPEND });
    await c.call({}, 'TARGET_MSG', { name: 'pool' });
    assert.deepEqual(k.seen.map((s) => [s.how, s.request]), [
      ['sync', ioctlRequest(7)], ['async', ioctlRequest(6)], ['async', ioctlRequest(14)],
    ]);
    assert.equal(k.seen[0]!.size, HEADER_SIZE);
    await c.close();
  });

  it('fails with the errno as a DmError kind', async () => {
    const c = control(kernel(0, 'ENXIO').t);
    await assert.rejects(c.call({}, 'DEV_STATUS', { name: 'v' }), (e: unknown) => e instanceof DmError && e.kind === 'not_found' && e.errno === 'ENXIO');
    const busy = control(kernel(0, 'EBUSY').t);
    await assert.rejects(busy.call({}, 'DEV_CREATE', { name: 'v' }), (e: unknown) => e instanceof DmError && e.kind === 'exists');
    await assert.rejects(busy.call({}, 'DEV_REMOVE', { name: 'v' }), (e: unknown) => e instanceof DmError && e.kind === 'busy');
    await c.close();
    await busy.close();
  });

  it('says the kernel has no device-mapper when the control node cannot be opened', async () => {
    const c = new Control('/nonexistent/control', 1000, kernel(0).t);
    await assert.rejects(c.call({}, 'VERSION'), (e: unknown) => e instanceof DmError && e.kind === 'unsupported');
  });

  it('keeps the descriptor open for a call still in the kernel past its deadline, and closes it after', async () => {
    let returned!: () => void;
    const settled = new Promise<void>((r) => { returned = r; });
    const fds: number[] = [];
    const t: Transport = {
      sync: async () => undefined,
      async: async (_c, fd, _r, _b, what) => { fds.push(fd); throw new SysError(what, 'ETIMEDOUT', 110, 'no answer', settled); },
    };
    const c = control(t);
    await assert.rejects(c.call({}, 'DEV_SUSPEND', { name: 'v' }), (e: unknown) => e instanceof DmError && e.kind === 'timeout');
    const fd = fds[0]!;
    await c.close();
    assert.ok(fstatSync(fd), 'the descriptor the kernel is still using stays open after close()');
    await c.call({}, 'DEV_STATUS', { name: 'v' }).catch(() => undefined);
    await assert.rejects(c.call({}, 'DEV_SUSPEND', { name: 'v' }));
    assert.notEqual(fds[1], fd, 'a call after close() opens a descriptor of its own');
    returned();
    await settled;
    await new Promise((r) => setImmediate(r));
    assert.throws(() => fstatSync(fd), /EBADF/, 'closed once the call returned');
    await c.close();
  });
});
