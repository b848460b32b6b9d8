import type { OpContext } from '../system/context.ts';
import { CommandError } from '../system/exec.ts';
import { runLines } from '../system/exec-lines.ts';
import { stderrSummary } from './errors.ts';
import { DmParseError } from './parse.ts';
import { blockDevicePath } from './thin-ls.ts';
import { DmError } from './types.ts';

/** A run of logical blocks of a thin device, in the pool's data blocks. */
export interface BlockRun { begin: number; length: number }

/**
 * How a run compares between two thin devices, as thin_delta names it: mapped to the same
 * data blocks in both, to different ones, or mapped in only one (left = the first device).
 */
export type DeltaKind = 'same' | 'different' | 'left_only' | 'right_only';
export interface DeltaRun extends BlockRun { kind: DeltaKind }

/** Which pool's metadata to read: the pool's name, and its metadata device as its table names it. */
export interface MetadataSource { pool: string; metadataDev: string }

/**
 * Reads the block maps of a pool's thin devices from its reserved metadata snapshot (the caller
 * holds it: pool/metadata-snap.ts). Runs come in ascending order of `begin`, never overlapping;
 * adjacent runs may or may not be merged. A device the snapshot does not hold fails with DmError
 * 'not_found'; no metadata snapshot held fails with 'no_data'.
 */
export interface ThinMetadataReader {
  mappings(ctx: OpContext, src: MetadataSource, devId: number): AsyncGenerator<BlockRun>;
  delta(ctx: OpContext, src: MetadataSource, left: number, right: number): AsyncGenerator<DeltaRun>;
}

const attr = (line: string, name: string): number | undefined => {
  const m = new RegExp(`\\b${name}="(\\d+)"`).exec(line);
  return m ? Number(m[1]) : undefined;
};

function need(line: string, name: string, what: string): number {
  const n = attr(line, name);
  if (n === undefined) throw new DmParseError(what, line, `no ${name}`);
  return n;
}

/** One line of `thin_dump --dev-id`: a mapping run, 'device' for the device's own element, or nothing. */
export function parseDumpLine(line: string): BlockRun | 'device' | undefined {
  const t = line.trim();
  if (t.startsWith('<range_mapping ')) return { begin: need(t, 'origin_begin', 'thin_dump output'), length: need(t, 'length', 'thin_dump output') };
  if (t.startsWith('<single_mapping ')) return { begin: need(t, 'origin_block', 'thin_dump output'), length: 1 };
  if (t.startsWith('<device ')) return 'device';
  return undefined;
}

const DELTA_LINE = /^<(same|different|left_only|right_only) begin="(\d+)" length="(\d+)"\/>$/;

/** One line of (non-verbose) `thin_delta` output: a run, or nothing for the enclosing elements. */
export function parseDeltaLine(line: string): DeltaRun | undefined {
  const t = line.trim();
  const m = DELTA_LINE.exec(t);
  if (m) return { kind: m[1] as DeltaKind, begin: Number(m[2]), length: Number(m[3]) };
  if (/^<\/?(superblock|diff)\b/.test(t) || t === '') return undefined;
  throw new DmParseError('thin_delta output', t, 'not a superblock, diff or range element');
}

/**
 * Turns the tools' failures into DmErrors: a device missing from the metadata, no metadata
 * snapshot held, a missing binary, anything else with the tool's stderr.
 */
function toolError(err: unknown, binary: string): never {
  if (!(err instanceof CommandError)) throw err;
  if (err.errno === 'ENOENT' && err.exitCode === undefined) throw new DmError('unsupported', `${binary} not found: install thin-provisioning-tools`, { cause: err });
  if (err.timedOut) throw new DmError('timeout', `${binary} timed out`, { cause: err });
  if (/no current metadata snap/i.test(err.stderr)) throw new DmError('no_data', `${binary}: no metadata snapshot is held`, { cause: err, stderr: err.stderr });
  if (/Unable to find mapping tree/i.test(err.stderr)) throw new DmError('not_found', `${binary}: ${stderrSummary(err.stderr)}`, { cause: err, stderr: err.stderr });
  throw new DmError('unknown', `${binary} failed: ${stderrSummary(err.stderr) || err.message}`, { cause: err, exitCode: err.exitCode, stderr: err.stderr });
}

/** thin-provisioning-tools (0.9.0's output format): thin_dump for one device's map, thin_delta for two. */
export class ThinTools implements ThinMetadataReader {
  private readonly bin: { dump: string; delta: string };
  constructor(bin: { dump?: string; delta?: string } = {}) {
    this.bin = { dump: bin.dump ?? 'thin_dump', delta: bin.delta ?? 'thin_delta' };
  }

  async *mappings(ctx: OpContext, src: MetadataSource, devId: number): AsyncGenerator<BlockRun> {
    const dev = await blockDevicePath(src.metadataDev);
    let seen = false;
    try {
      for await (const line of runLines(ctx, this.bin.dump, ['-m', '--dev-id', String(devId), dev])) {
        const r = parseDumpLine(line);
        if (r === 'device') seen = true;
        else if (r) yield r;
      }
    } catch (err) {
      toolError(err, this.bin.dump);
    }
    // thin_dump prints an empty superblock, and succeeds, for an id the metadata lacks.
    if (!seen) throw new DmError('not_found', `thin device ${devId} is not in the metadata snapshot of ${src.pool}`);
  }

  async *delta(ctx: OpContext, src: MetadataSource, left: number, right: number): AsyncGenerator<DeltaRun> {
    const dev = await blockDevicePath(src.metadataDev);
    try {
      for await (const line of runLines(ctx, this.bin.delta, ['-m', '--snap1', String(left), '--snap2', String(right), dev])) {
        const r = parseDeltaLine(line);
        if (r) yield r;
      }
    } catch (err) {
      toolError(err, this.bin.delta);
    }
  }
}
