/**
 * The dm ioctl structs against buffers built by hand from linux/dm-ioctl.h's layout: struct
 * dm_ioctl (312 bytes: version[3] @0, data_size @12, data_start @16, target_count @20,
 * open_count @24, flags @28, event_nr @32, dev @40, name[128] @48, uuid[129] @176),
 * dm_target_spec (40 bytes: sector_start @0, length @8, status @16, next @20, target_type[16] @24),
 * dm_name_list (dev @0, next @8, name @12), dm_target_versions (next @0, version[3] @4, name @16),
 * dm_target_msg (sector @0, message @8).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  decodeDev, decodeHeader, decodeNameList, decodeTargets, decodeVersions, encodeMessage, encodeRequest, encodeTargets,
  Flag, HEADER_SIZE, ioctlRequest, parseTableText, targetsText,
} from '../../../src/devmapper/ioctl/abi.ts';
import { classifyIoctlError } from '../../../src/devmapper/ioctl/control.ts';
import { SysError } from '../../../src/system/ffi.ts';

/** The kernel's new_encode_dev. */
const encodeDev = (major: number, minor: number): bigint => BigInt((minor & 0xff) | (major << 8) | ((minor & ~0xff) << 12));

describe('dm ioctl ABI', () => {
  it('numbers requests as _IOWR(0xfd, cmd, struct dm_ioctl)', () => {
    assert.equal(ioctlRequest(0), 0xc138fd00); // DM_VERSION
    assert.equal(ioctlRequest(3), 0xc138fd03); // DM_DEV_CREATE
    assert.equal(ioctlRequest(14), 0xc138fd0e); // DM_TARGET_MSG
  });

  it('encodes the header at the offsets of struct dm_ioctl', () => {
    const buf = encodeRequest(1024, { name: 'pool', uuid: 'u-1', flags: Flag.SUSPEND | Flag.NOFLUSH, eventNr: 0x400000, targetCount: 2 }, Buffer.from('abc'));
    assert.equal(buf.length, 1024);
    assert.deepEqual([buf.readUInt32LE(0), buf.readUInt32LE(4), buf.readUInt32LE(8)], [4, 0, 0]);
    assert.equal(buf.readUInt32LE(12), 1024, 'data_size is the whole buffer');
    assert.equal(buf.readUInt32LE(16), 312, 'data_start');
    assert.equal(buf.readUInt32LE(20), 2);
    assert.equal(buf.readUInt32LE(28), (1 << 1) | (1 << 11));
    assert.equal(buf.readUInt32LE(32), 0x400000);
    assert.equal(buf.toString('latin1', 48, 53), 'pool\0');
    assert.equal(buf.toString('latin1', 176, 180), 'u-1\0');
    assert.equal(buf.toString('latin1', 312, 315), 'abc');
  });

  it('grows the buffer to hold a payload larger than asked for', () => {
    const buf = encodeRequest(HEADER_SIZE, {}, Buffer.alloc(100, 1));
    assert.equal(buf.length, HEADER_SIZE + 100);
    assert.equal(buf.readUInt32LE(12), HEADER_SIZE + 100);
  });

  it('refuses names the kernel cannot hold (DM_NAME_LEN 128 with its NUL)', () => {
    assert.throws(() => encodeRequest(HEADER_SIZE, { name: 'n'.repeat(128) }), RangeError);
    assert.doesNotThrow(() => encodeRequest(HEADER_SIZE, { name: 'n'.repeat(127) }));
  });

  it('decodes a header the kernel wrote', () => {
    const buf = Buffer.alloc(HEADER_SIZE);
    [4, 47, 0].forEach((v, i) => buf.writeUInt32LE(v, i * 4));
    buf.writeUInt32LE(400, 12);
    buf.writeUInt32LE(312, 16);
    buf.writeUInt32LE(1, 20);
    buf.writeInt32LE(3, 24);
    buf.writeUInt32LE(Flag.ACTIVE_PRESENT | Flag.READONLY, 28);
    buf.writeUInt32LE(9, 32);
    buf.writeBigUInt64LE(encodeDev(253, 300), 40);
    buf.write('vol-1\0', 48, 'latin1');
    buf.write('LVM-x\0', 176, 'latin1');
    assert.deepEqual(decodeHeader(buf), {
      version: [4, 47, 0], dataSize: 400, dataStart: 312, targetCount: 1, openCount: 3,
      flags: Flag.ACTIVE_PRESENT | Flag.READONLY, eventNr: 9, major: 253, minor: 300, name: 'vol-1', uuid: 'LVM-x',
    });
  });

  it('decodes device numbers past 8 bits of minor and 12 of major', () => {
    assert.deepEqual(decodeDev(encodeDev(253, 0)), { major: 253, minor: 0 });
    assert.deepEqual(decodeDev(encodeDev(4095, 1_048_575)), { major: 4095, minor: 1_048_575 });
  });

  it('encodes a table as dm_target_specs with parameters, next relative to each spec', () => {
    const specs = parseTableText('0 2048 thin 253:0 7\n2048 8 zero');
    const buf = encodeTargets(specs);
    assert.equal(buf.readBigUInt64LE(0), 0n);
    assert.equal(buf.readBigUInt64LE(8), 2048n);
    const next = buf.readUInt32LE(20);
    assert.equal(next, 48, '40-byte spec + "253:0 7\\0" (8 bytes, already aligned)');
    assert.equal(buf.toString('latin1', 24, 29), 'thin\0');
    assert.equal(buf.toString('latin1', 40, 48), '253:0 7\0');
    assert.equal(buf.readBigUInt64LE(next), 2048n);
    assert.equal(buf.readBigUInt64LE(next + 8), 8n);
    assert.equal(buf.toString('latin1', next + 24, next + 29), 'zero\0');
    assert.equal(buf[next + 40], 0, 'no parameters: an empty string');
    assert.equal(buf.length % 8, 0);
  });

  it('refuses table text that is not START LENGTH TARGET', () => {
    assert.throws(() => parseTableText(''), RangeError);
    assert.throws(() => parseTableText('zero 8'), RangeError);
  });

  it('decodes TABLE_STATUS answers, next relative to data_start, and prints them as dmsetup does', () => {
    const buf = Buffer.alloc(HEADER_SIZE + 200);
    const at = HEADER_SIZE;
    buf.writeBigUInt64LE(0n, at);
    buf.writeBigUInt64LE(2048n, at + 8);
    buf.writeUInt32LE(48, at + 20);
    buf.write('thin\0', at + 24, 'latin1');
    buf.write('64 63\0', at + 40, 'latin1');
    buf.writeBigUInt64LE(2048n, at + 48);
    buf.writeBigUInt64LE(8n, at + 56);
    buf.write('zero\0', at + 72, 'latin1');
    const specs = decodeTargets(buf, { dataStart: HEADER_SIZE, dataSize: buf.length, targetCount: 2 });
    assert.deepEqual(specs, [
      { start: 0, length: 2048, type: 'thin', params: '64 63' },
      { start: 2048, length: 8, type: 'zero', params: '' },
    ]);
    assert.equal(targetsText(specs), '0 2048 thin 64 63\n2048 8 zero');
    assert.deepEqual(decodeTargets(buf, { dataStart: HEADER_SIZE, dataSize: buf.length, targetCount: 0 }), []);
  });

  it('refuses a target list that runs past the answer', () => {
    const buf = Buffer.alloc(HEADER_SIZE + 20);
    assert.throws(() => decodeTargets(buf, { dataStart: HEADER_SIZE, dataSize: buf.length, targetCount: 1 }), RangeError);
  });

  it('encodes a target message: u64 sector, then the NUL-terminated text', () => {
    const buf = encodeMessage(0, 'create_thin 4');
    assert.equal(buf.readBigUInt64LE(0), 0n);
    assert.equal(buf.toString('latin1', 8, 22), 'create_thin 4\0');
    assert.equal(buf.length, 24);
  });

  it('decodes dm_name_list records with and without the uuid that newer kernels add', () => {
    const buf = Buffer.alloc(HEADER_SIZE + 128);
    let at = HEADER_SIZE;
    buf.writeBigUInt64LE(encodeDev(253, 1), at);
    buf.writeUInt32LE(40, at + 8);
    buf.write('pool\0', at + 12, 'latin1'); // name ends at 17; aligned to 24: event_nr, flags, uuid
    buf.writeUInt32LE(5, at + 24);
    buf.writeUInt32LE(1, at + 28); // DM_NAME_LIST_FLAG_HAS_UUID
    buf.write('u-pool\0', at + 32, 'latin1');
    at += 40;
    buf.writeBigUInt64LE(encodeDev(253, 2), at);
    buf.writeUInt32LE(0, at + 8);
    buf.write('vol\0', at + 12, 'latin1');
    buf.writeUInt32LE(2, at + 20); // DM_NAME_LIST_FLAG_DOESNT_HAVE_UUID
    assert.deepEqual(decodeNameList(buf, { dataStart: HEADER_SIZE, dataSize: buf.length }), [
      { name: 'pool', major: 253, minor: 1, uuid: 'u-pool' },
      { name: 'vol', major: 253, minor: 2, uuid: undefined },
    ]);
  });

  it('reads an empty device list (dev 0 in the first record)', () => {
    assert.deepEqual(decodeNameList(Buffer.alloc(HEADER_SIZE + 64), { dataStart: HEADER_SIZE, dataSize: HEADER_SIZE + 64 }), []);
  });

  it('decodes dm_target_versions records', () => {
    const buf = Buffer.alloc(HEADER_SIZE + 96);
    let at = HEADER_SIZE;
    buf.writeUInt32LE(32, at);
    [1, 23, 0].forEach((v, i) => buf.writeUInt32LE(v, at + 4 + i * 4));
    buf.write('thin-pool\0', at + 16, 'latin1');
    at += 32;
    buf.writeUInt32LE(0, at);
    [1, 4, 0].forEach((v, i) => buf.writeUInt32LE(v, at + 4 + i * 4));
    buf.write('zero\0', at + 16, 'latin1');
    assert.deepEqual(decodeVersions(buf, { dataStart: HEADER_SIZE, dataSize: buf.length }), [
      { name: 'thin-pool', version: [1, 23, 0] }, { name: 'zero', version: [1, 4, 0] },
    ]);
  });
});

describe('ioctl errno -> DmError kind', () => {
  const kind = (errno: string, cmd: Parameters<typeof classifyIoctlError>[1] = 'TARGET_MSG') =>
    classifyIoctlError(new SysError('DM_X', errno, 0), cmd, 'DM_X').kind;
  it('maps the kernel errnos without reading any text', () => {
    assert.equal(kind('EEXIST'), 'exists');
    assert.equal(kind('ENODATA'), 'no_data');
    assert.equal(kind('EBUSY'), 'busy');
    assert.equal(kind('ENXIO'), 'not_found');
    assert.equal(kind('EINVAL'), 'invalid');
    assert.equal(kind('ENOSPC'), 'no_space');
    assert.equal(kind('EOPNOTSUPP'), 'invalid');
    assert.equal(kind('ETIMEDOUT'), 'timeout');
    assert.equal(kind('EIO'), 'unknown');
  });
  it('reads EBUSY at DEV_CREATE as a taken name', () => {
    assert.equal(kind('EBUSY', 'DEV_CREATE'), 'exists');
    assert.equal(kind('EBUSY', 'DEV_REMOVE'), 'busy');
  });
  it('keeps the errno on the error', () => {
    assert.equal(classifyIoctlError(new SysError('DM_X', 'ENOSPC', 28), 'TARGET_MSG', 'DM_X').errno, 'ENOSPC');
  });
});
