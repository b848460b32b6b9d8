import { DmError, type DmDeviceInfo, type ThinPoolStatus, type ThinPoolTable, type ThinStatus, type ThinTable } from './types.ts';

/**
 * Parsers for dmsetup output. Each takes the text dmsetup printed (trailing newline and the
 * kernel's trailing space allowed) and either returns fully numeric values or throws a
 * DmParseError quoting the input: a NaN sneaking into capacity maths is worse than a failure.
 */

export class DmParseError extends Error {
  readonly input: string;
  /** The target type found, when the line parsed but is the wrong kind of device. */
  readonly foundTarget: string | undefined;
  constructor(what: string, input: string, reason: string, foundTarget?: string) {
    super(`cannot parse ${what} ${JSON.stringify(truncate(input))}: ${reason}`);
    this.name = 'DmParseError';
    this.input = input;
    this.foundTarget = foundTarget;
  }
}

function truncate(s: string): string {
  return s.length > 300 ? `${s.slice(0, 300)}…` : s;
}

/** Field list for `dmsetup info -c`; parseInfoRows expects exactly these columns. */
export const INFO_FIELDS = 'name,major,minor,attr,open,segments,events,uuid';
export const INFO_SEPARATOR = '|';

/** dmsetup's whole-output answer when it lists all devices and there are none. */
const NO_DEVICES = 'No devices found';

function uint(token: string | undefined, what: string, input: string, field: string): number {
  if (token === undefined || !/^\d+$/.test(token)) {
    throw new DmParseError(what, input, `${field} is ${token === undefined ? 'missing' : JSON.stringify(token)}, expected an unsigned integer`);
  }
  const n = Number(token);
  if (!Number.isSafeInteger(n)) throw new DmParseError(what, input, `${field} ${token} is too large`);
  return n;
}

/** "USED/TOTAL" pairs of the pool status line. */
function ratio(token: string | undefined, what: string, input: string, field: string): [number, number] {
  const m = token === undefined ? null : /^(\d+)\/(\d+)$/.exec(token);
  if (!m) throw new DmParseError(what, input, `${field} is ${JSON.stringify(token)}, expected USED/TOTAL`);
  return [uint(m[1], what, input, `used ${field}`), uint(m[2], what, input, `total ${field}`)];
}

interface Segment { start: number; length: number; target: string; params: string[] }

/** "START LENGTH TARGET PARAMS..." of a single-segment device, as status and table print it. */
function segment(text: string, what: string, expected: string): Segment {
  const lines = text.split('\n').map((l) => l.trim()).filter((l) => l !== '');
  if (lines.length === 0) throw new DmParseError(what, text, 'empty output (no live table?)');
  if (lines.length > 1) throw new DmParseError(what, text, `${lines.length} segments, expected one`);
  const tokens = (lines[0] as string).split(/\s+/);
  const start = uint(tokens[0], what, text, 'start sector');
  const length = uint(tokens[1], what, text, 'length');
  const target = tokens[2];
  if (target === undefined) throw new DmParseError(what, text, 'target type is missing');
  if (target !== expected) throw new DmParseError(what, text, `target is ${target}, not ${expected}`, target);
  if (start !== 0) throw new DmParseError(what, text, `segment starts at sector ${start}, expected 0`);
  return { start, length, target, params: tokens.slice(3) };
}

const POOL_STATUS = 'thin-pool status';

/**
 * `dmsetup status POOL`. A failed pool prints only 'Fail': its counters are then reported as 0
 * and must not be read as capacity. Fields after the mode were added over kernel versions, so
 * each one is optional.
 */
export function parseThinPoolStatus(text: string): ThinPoolStatus {
  const seg = segment(text, POOL_STATUS, 'thin-pool');
  const p = seg.params;
  if (p.length === 1 && p[0] === 'Fail') {
    return {
      lengthSectors: seg.length, transactionId: 0, usedMetadataBlocks: 0, totalMetadataBlocks: 0,
      usedDataBlocks: 0, totalDataBlocks: 0, mode: 'fail', discardPassdown: false,
      errorIfNoSpace: false, needsCheck: false, metadataLowWatermark: undefined,
    };
  }
  if (p.length === 1 && p[0] === 'Error') throw new DmParseError(POOL_STATUS, text, 'the kernel could not read the pool metadata');
  if (p.length < 5) throw new DmParseError(POOL_STATUS, text, `${p.length} fields, expected at least 5`);
  const [usedMeta, totalMeta] = ratio(p[1], POOL_STATUS, text, 'metadata blocks');
  const [usedData, totalData] = ratio(p[2], POOL_STATUS, text, 'data blocks');
  const held = p[3] === '-' ? {} : { heldMetadataRoot: uint(p[3], POOL_STATUS, text, 'held metadata root') };
  const mode = p[4];
  if (mode !== 'rw' && mode !== 'ro' && mode !== 'out_of_data_space') {
    throw new DmParseError(POOL_STATUS, text, `mode ${JSON.stringify(mode)} is not rw, ro or out_of_data_space`);
  }
  const rest = parsePoolFlags(p.slice(5), text);
  return {
    lengthSectors: seg.length,
    transactionId: uint(p[0], POOL_STATUS, text, 'transaction id'),
    usedMetadataBlocks: usedMeta, totalMetadataBlocks: totalMeta,
    usedDataBlocks: usedData, totalDataBlocks: totalData,
    mode, ...rest, ...held,
  };
}

type PoolFlags = Pick<ThinPoolStatus, 'discardPassdown' | 'errorIfNoSpace' | 'needsCheck' | 'metadataLowWatermark'>;

function parsePoolFlags(p: string[], text: string): PoolFlags {
  const out: PoolFlags = { discardPassdown: false, errorIfNoSpace: false, needsCheck: false, metadataLowWatermark: undefined };
  const [discard, noSpace, check, watermark, ...extra] = p;
  if (discard !== undefined) {
    if (!['discard_passdown', 'no_discard_passdown', 'ignore_discard'].includes(discard)) {
      throw new DmParseError(POOL_STATUS, text, `unknown discard mode ${JSON.stringify(discard)}`);
    }
    out.discardPassdown = discard === 'discard_passdown';
  }
  if (noSpace !== undefined) {
    if (noSpace !== 'error_if_no_space' && noSpace !== 'queue_if_no_space') {
      throw new DmParseError(POOL_STATUS, text, `unknown no-space policy ${JSON.stringify(noSpace)}`);
    }
    out.errorIfNoSpace = noSpace === 'error_if_no_space';
  }
  if (check !== undefined) {
    if (check !== 'needs_check' && check !== '-') throw new DmParseError(POOL_STATUS, text, `unknown flag ${JSON.stringify(check)}`);
    out.needsCheck = check === 'needs_check';
  }
  if (watermark !== undefined) out.metadataLowWatermark = uint(watermark, POOL_STATUS, text, 'metadata low watermark');
  if (extra.length > 0) throw new DmParseError(POOL_STATUS, text, `unexpected trailing fields ${extra.join(' ')}`);
  return out;
}

const THIN_STATUS = 'thin status';

/** `dmsetup status THIN`: mapped sectors and highest mapped sector ('-' when nothing is mapped). */
export function parseThinStatus(text: string): ThinStatus {
  const seg = segment(text, THIN_STATUS, 'thin');
  const p = seg.params;
  if (p.length === 1 && p[0] === 'Fail') {
    return { lengthSectors: seg.length, mappedSectors: 0, highestMappedSector: undefined, fail: true };
  }
  if (p.length === 1 && p[0] === 'Error') throw new DmParseError(THIN_STATUS, text, 'the kernel could not read the pool metadata');
  if (p.length !== 2) throw new DmParseError(THIN_STATUS, text, `${p.length} fields, expected 2`);
  const mapped = uint(p[0], THIN_STATUS, text, 'mapped sectors');
  // The kernel documents the highest sector as unspecified when nothing is mapped; it prints '-'.
  const highestToken = p[1] === '-' ? undefined : uint(p[1], THIN_STATUS, text, 'highest mapped sector');
  const highest = mapped === 0 ? undefined : highestToken;
  return { lengthSectors: seg.length, mappedSectors: mapped, highestMappedSector: highest, fail: false };
}

const POOL_TABLE = 'thin-pool table';

/** `dmsetup table POOL`. The kernel prints devices as MAJOR:MINOR, whatever the table was loaded with. */
export function parseThinPoolTable(text: string): ThinPoolTable {
  const seg = segment(text, POOL_TABLE, 'thin-pool');
  const [metadataDev, dataDev, blockSize, lowWater, count, ...features] = seg.params;
  if (metadataDev === undefined || dataDev === undefined) throw new DmParseError(POOL_TABLE, text, 'metadata or data device is missing');
  const nFeatures = count === undefined ? 0 : uint(count, POOL_TABLE, text, 'feature count');
  if (features.length !== nFeatures) {
    throw new DmParseError(POOL_TABLE, text, `feature count says ${nFeatures} but ${features.length} follow`);
  }
  return {
    lengthSectors: seg.length, metadataDev, dataDev,
    dataBlockSectors: uint(blockSize, POOL_TABLE, text, 'data block size'),
    lowWaterMark: uint(lowWater, POOL_TABLE, text, 'low water mark'),
    features,
  };
}

const THIN_TABLE = 'thin table';

/** `dmsetup table THIN`: pool device, device id and an optional external origin. */
export function parseThinTable(text: string): ThinTable {
  const seg = segment(text, THIN_TABLE, 'thin');
  const p = seg.params;
  if (p.length < 2 || p.length > 3) throw new DmParseError(THIN_TABLE, text, `${p.length} fields, expected 2 or 3`);
  return {
    lengthSectors: seg.length,
    poolDev: p[0] as string,
    deviceId: uint(p[1], THIN_TABLE, text, 'device id'),
    externalOrigin: p[2],
  };
}

const ATTR = /^([L-])([I-])([s-])([rw])$/;

/**
 * Rows of `dmsetup info -c --noheadings --separator '|' -o INFO_FIELDS`. Splits from the right
 * so a '|' inside a device name cannot shift the numeric columns.
 */
export function parseInfoRows(text: string): DmDeviceInfo[] {
  const what = 'dmsetup info row';
  const lines = text.split('\n').filter((l) => l.trim() !== '');
  if (lines.length === 1 && lines[0]?.trim() === NO_DEVICES) return [];
  return lines.map((line) => {
    const f = line.split(INFO_SEPARATOR);
    if (f.length < 8) throw new DmParseError(what, line, `${f.length} columns, expected 8 (${INFO_FIELDS})`);
    const tail = f.slice(-7);
    const name = f.slice(0, f.length - 7).join(INFO_SEPARATOR);
    const [major, minor, attr, open, segments, events, uuid] = tail as [string, string, string, string, string, string, string];
    const a = ATTR.exec(attr);
    if (!name) throw new DmParseError(what, line, 'empty device name');
    if (!a) throw new DmParseError(what, line, `attr ${JSON.stringify(attr)} is not like L--w`);
    return {
      name,
      major: uint(major, what, line, 'major'),
      minor: uint(minor, what, line, 'minor'),
      live: a[1] === 'L',
      inactiveTable: a[2] === 'I',
      suspended: a[3] === 's',
      readOnly: a[4] === 'r',
      openCount: uint(open, what, line, 'open count'),
      segments: uint(segments, what, line, 'segments'),
      events: uint(events, what, line, 'events'),
      uuid,
    };
  });
}

/**
 * Output of `dmsetup status|table --target T` over all devices: "NAME: START LENGTH T ...".
 * Returns NAME → that device's line without the prefix. A device with several matching
 * segments keeps its first (our devices have one); 'No devices found' is an empty map.
 */
export function parseMultiDevice(text: string): Map<string, string> {
  const out = new Map<string, string>();
  const lines = text.split('\n').filter((l) => l.trim() !== '');
  if (lines.length === 1 && lines[0]?.trim() === NO_DEVICES) return out;
  for (const line of lines) {
    // Greedy name: parameters never contain ": " followed by a segment header, names might.
    const m = /^(.+): (\d+ \d+ \S+.*)$/.exec(line);
    if (!m) throw new DmParseError('dmsetup multi-device line', line, 'expected "NAME: START LENGTH TARGET ..."');
    const name = m[1] as string;
    if (!out.has(name)) out.set(name, m[2] as string);
  }
  return out;
}

/** Target names from `dmsetup targets` ("thin-pool        v1.23.0"). */
export function parseTargets(text: string): string[] {
  return text.split('\n').map((l) => l.trim()).filter((l) => l !== '').map((l) => {
    const m = /^(\S+)\s+v\d+\.\d+\.\d+$/.exec(l);
    if (!m) throw new DmParseError('dmsetup targets line', l, 'expected "NAME vX.Y.Z"');
    return m[1] as string;
  });
}

/**
 * Runs a parser on the output for device `name`, reporting failure as a DmError: 'invalid'
 * when the device is the wrong kind (e.g. a thin-pool query on a linear device), else 'unknown'.
 */
/** `dmsetup table NAME` of one device: empty output means it has no live table, as good as absent. */
export function parseLiveTable<T>(name: string, text: string, parse: (text: string) => T): T {
  if (text.trim() === '') throw new DmError('not_found', `${name} has no live table`);
  return parseAs(name, text, parse);
}

export function parseAs<T>(name: string, text: string, parse: (text: string) => T): T {
  try {
    return parse(text);
  } catch (err) {
    if (!(err instanceof DmParseError)) throw err;
    throw new DmError(err.foundTarget === undefined ? 'unknown' : 'invalid', `${name}: ${err.message}`, { cause: err });
  }
}
