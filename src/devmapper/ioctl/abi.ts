/**
 * The device-mapper ioctl ABI of linux/dm-ioctl.h (interface version 4), encoded and decoded by
 * hand: every struct is little-endian on the architectures the driver ships for, with the
 * offsets below. `struct dm_ioctl` is the header of every request and answer; a request's payload
 * and the kernel's answer live in the same buffer from `data_start` on.
 */

export const DM_VERSION_MAJOR = 4;
/** sizeof(struct dm_ioctl): 305 bytes of fields and 7 of padding (libdevmapper's data_start). */
export const HEADER_SIZE = 312;
export const NAME_LEN = 128;
export const UUID_LEN = 129;
export const MAX_TYPE_NAME = 16;
/** sizeof(struct dm_target_spec). */
export const SPEC_SIZE = 40;

/** Field offsets in struct dm_ioctl. */
export const OFF = {
  version: 0, dataSize: 12, dataStart: 16, targetCount: 20, openCount: 24, flags: 28, eventNr: 32,
  dev: 40, name: 48, uuid: 176,
} as const;

export const Cmd = {
  VERSION: 0, LIST_DEVICES: 2, DEV_CREATE: 3, DEV_REMOVE: 4, DEV_SUSPEND: 6, DEV_STATUS: 7,
  TABLE_LOAD: 9, TABLE_STATUS: 12, LIST_VERSIONS: 13, TARGET_MSG: 14, DEV_ARM_POLL: 16,
} as const;
export type CmdName = keyof typeof Cmd;

export const Flag = {
  READONLY: 1 << 0, SUSPEND: 1 << 1, STATUS_TABLE: 1 << 4, ACTIVE_PRESENT: 1 << 5,
  INACTIVE_PRESENT: 1 << 6, BUFFER_FULL: 1 << 8, NOFLUSH: 1 << 11, DEFERRED_REMOVE: 1 << 17,
} as const;

/** libdevmapper's udev flags, carried in the upper 16 bits of event_nr (the "cookie"). */
export const UDEV_FLAGS_SHIFT = 16;
export const UDEV_PRIMARY_SOURCE_FLAG = 0x0040;

/** _IOWR(0xfd, cmd, struct dm_ioctl): direction read|write, size, type, number. */
export function ioctlRequest(cmd: number): number {
  return ((3 << 30) | (HEADER_SIZE << 16) | (0xfd << 8) | cmd) >>> 0;
}

export interface HeaderIn {
  name?: string;
  uuid?: string;
  flags?: number;
  eventNr?: number;
  targetCount?: number;
}

export interface Header {
  version: [number, number, number];
  dataSize: number;
  dataStart: number;
  targetCount: number;
  openCount: number;
  flags: number;
  eventNr: number;
  major: number;
  minor: number;
  name: string;
  uuid: string;
}

function putString(buf: Buffer, offset: number, max: number, value: string, what: string): void {
  const bytes = Buffer.from(value, 'utf8');
  if (bytes.length >= max) throw new RangeError(`${what} ${JSON.stringify(value)} is ${bytes.length} bytes, the kernel takes at most ${max - 1}`);
  bytes.copy(buf, offset);
}

function cString(buf: Buffer, offset: number, end: number): string {
  const stop = buf.indexOf(0, offset);
  return buf.toString('utf8', offset, stop < 0 || stop > end ? end : stop);
}

/**
 * A request buffer of `size` bytes (at least the header) with the header filled in and
 * `payload` copied to data_start. data_size is the whole buffer: the kernel writes its answer
 * there and says DM_BUFFER_FULL_FLAG when it did not fit.
 */
export function encodeRequest(size: number, h: HeaderIn, payload?: Buffer): Buffer {
  const total = Math.max(size, HEADER_SIZE + (payload?.length ?? 0));
  const buf = Buffer.alloc(total);
  buf.writeUInt32LE(DM_VERSION_MAJOR, OFF.version);
  buf.writeUInt32LE(total, OFF.dataSize);
  buf.writeUInt32LE(HEADER_SIZE, OFF.dataStart);
  buf.writeUInt32LE(h.targetCount ?? 0, OFF.targetCount);
  buf.writeUInt32LE((h.flags ?? 0) >>> 0, OFF.flags);
  buf.writeUInt32LE((h.eventNr ?? 0) >>> 0, OFF.eventNr);
  if (h.name !== undefined) putString(buf, OFF.name, NAME_LEN, h.name, 'dm name');
  if (h.uuid !== undefined) putString(buf, OFF.uuid, UUID_LEN, h.uuid, 'dm uuid');
  payload?.copy(buf, HEADER_SIZE);
  return buf;
}

/** The kernel's encoding of a device number in dm_ioctl.dev (huge_encode_dev). */
export function decodeDev(dev: bigint): { major: number; minor: number } {
  const d = Number(dev & 0xffffffffn);
  return { major: (d & 0xfff00) >>> 8, minor: (d & 0xff) | ((d >>> 12) & 0xfff00) };
}

export function decodeHeader(buf: Buffer): Header {
  return {
    version: [buf.readUInt32LE(0), buf.readUInt32LE(4), buf.readUInt32LE(8)],
    dataSize: buf.readUInt32LE(OFF.dataSize),
    dataStart: buf.readUInt32LE(OFF.dataStart),
    targetCount: buf.readUInt32LE(OFF.targetCount),
    openCount: buf.readInt32LE(OFF.openCount),
    flags: buf.readUInt32LE(OFF.flags),
    eventNr: buf.readUInt32LE(OFF.eventNr),
    ...decodeDev(buf.readBigUInt64LE(OFF.dev)),
    name: cString(buf, OFF.name, OFF.name + NAME_LEN),
    uuid: cString(buf, OFF.uuid, OFF.uuid + UUID_LEN),
  };
}

export interface TargetSpec { start: number; length: number; type: string; params: string }

const align8 = (n: number): number => (n + 7) & ~7;

/**
 * TABLE_LOAD's payload: one dm_target_spec per segment, each followed by its NUL-terminated
 * parameters and padded to 8 bytes; `next` is the offset from this spec to the next one.
 */
export function encodeTargets(specs: readonly TargetSpec[]): Buffer {
  const parts = specs.map((s) => {
    const params = Buffer.from(s.params, 'utf8');
    const part = Buffer.alloc(align8(SPEC_SIZE + params.length + 1));
    part.writeBigUInt64LE(BigInt(s.start), 0);
    part.writeBigUInt64LE(BigInt(s.length), 8);
    part.writeUInt32LE(part.length, 20);
    putString(part, 24, MAX_TYPE_NAME, s.type, 'target type');
    params.copy(part, SPEC_SIZE);
    return part;
  });
  return Buffer.concat(parts);
}

/**
 * TABLE_STATUS's answer: `count` specs from data_start, each with its status or table text;
 * the kernel's `next` is here the offset from data_start, not from the spec.
 */
export function decodeTargets(buf: Buffer, h: Pick<Header, 'dataStart' | 'dataSize' | 'targetCount'>): TargetSpec[] {
  const out: TargetSpec[] = [];
  const end = Math.min(buf.length, h.dataSize);
  let at = h.dataStart;
  for (let i = 0; i < h.targetCount; i++) {
    if (at + SPEC_SIZE > end) throw new RangeError(`target ${i} at ${at} runs past the answer (${end} bytes)`);
    out.push({
      start: Number(buf.readBigUInt64LE(at)),
      length: Number(buf.readBigUInt64LE(at + 8)),
      type: cString(buf, at + 24, at + 24 + MAX_TYPE_NAME),
      params: cString(buf, at + SPEC_SIZE, end),
    });
    at = h.dataStart + buf.readUInt32LE(at + 20);
  }
  return out;
}

/** Table text as dmsetup takes it ("START LENGTH TYPE PARAMS", one segment a line) as specs. */
export function parseTableText(table: string): TargetSpec[] {
  const lines = table.split('\n').map((l) => l.trim()).filter((l) => l !== '');
  if (lines.length === 0) throw new RangeError('empty table');
  return lines.map((line) => {
    const m = /^(\d+)\s+(\d+)\s+(\S+)\s*(.*)$/.exec(line);
    if (!m) throw new RangeError(`table line ${JSON.stringify(line)} is not "START LENGTH TARGET PARAMS"`);
    return { start: Number(m[1]), length: Number(m[2]), type: m[3] as string, params: m[4] as string };
  });
}

/** Specs as `dmsetup table|status` prints them, for the parsers shared with the dmsetup implementation. */
export function targetsText(specs: readonly TargetSpec[]): string {
  return specs.map((s) => `${s.start} ${s.length} ${s.type}${s.params ? ` ${s.params}` : ''}`).join('\n');
}

/** TARGET_MSG's payload: struct dm_target_msg { u64 sector; char message[]; }. */
export function encodeMessage(sector: number, message: string): Buffer {
  const text = Buffer.from(message, 'utf8');
  const buf = Buffer.alloc(align8(8 + text.length + 1));
  buf.writeBigUInt64LE(BigInt(sector), 0);
  text.copy(buf, 8);
  return buf;
}

export interface ListedDevice { name: string; major: number; minor: number; uuid: string | undefined }

/**
 * LIST_DEVICES's answer: dm_name_list records (u64 dev, u32 next, name) chained by `next`
 * (from this record; 0 ends the list); after the name, aligned to 8, newer kernels add
 * u32 event_nr, u32 flags and the uuid when flags says it has one. dev 0 first: no devices.
 */
export function decodeNameList(buf: Buffer, h: Pick<Header, 'dataStart' | 'dataSize'>): ListedDevice[] {
  const out: ListedDevice[] = [];
  const end = Math.min(buf.length, h.dataSize);
  let at = h.dataStart;
  if (at + 12 > end || buf.readBigUInt64LE(at) === 0n) return out;
  for (;;) {
    const next = buf.readUInt32LE(at + 8);
    const recordEnd = next === 0 ? end : at + next;
    const nameEnd = buf.indexOf(0, at + 12);
    const name = cString(buf, at + 12, recordEnd);
    out.push({ name, ...decodeDev(buf.readBigUInt64LE(at)), uuid: uuidAfterName(buf, nameEnd, recordEnd) });
    if (next === 0) return out;
    at += next;
    if (at + 12 > end) throw new RangeError(`name list record at ${at} runs past the answer (${end} bytes)`);
  }
}

function uuidAfterName(buf: Buffer, nameEnd: number, recordEnd: number): string | undefined {
  if (nameEnd < 0) return undefined;
  const extra = align8(nameEnd + 1);
  if (extra + 8 > recordEnd) return undefined;
  const flags = buf.readUInt32LE(extra + 4);
  return flags & 1 ? cString(buf, extra + 8, recordEnd) : undefined;
}

export interface TargetVersion { name: string; version: [number, number, number] }

/** LIST_VERSIONS's answer: dm_target_versions records (u32 next, u32 version[3], name). */
export function decodeVersions(buf: Buffer, h: Pick<Header, 'dataStart' | 'dataSize'>): TargetVersion[] {
  const out: TargetVersion[] = [];
  const end = Math.min(buf.length, h.dataSize);
  let at = h.dataStart;
  while (at + 16 < end) {
    const next = buf.readUInt32LE(at);
    const name = cString(buf, at + 16, next === 0 ? end : at + next);
    if (name === '') break;
    out.push({ name, version: [buf.readUInt32LE(at + 4), buf.readUInt32LE(at + 8), buf.readUInt32LE(at + 12)] });
    if (next === 0) break;
    at += next;
  }
  return out;
}
