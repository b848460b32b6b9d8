/**
 * The proof a backup tool's restore relies on, for the SnapshotMetadata service: a copy of the
 * base plus the delta's ranges copied from the target is the target, byte for byte; zeros plus
 * the allocated ranges are the snapshot. Reads restores of the snapshots (block devices or
 * files) in chunks, so a 16 GiB volume needs no 16 GiB of memory. Shared by the standalone suite
 * and the Kubernetes forwarding suite.
 */
import assert from 'node:assert/strict';
import { closeSync, openSync, readSync } from 'node:fs';

export interface Range { byte_offset: number | string; size_bytes: number | string }
/** A byte window [start, end) to compare. */
export interface Window { start: number; end: number }

const CHUNK = 4 * 1024 * 1024;
/** False "changed" is counted in pages: a range's page whose bytes are equal in base and target. */
export const PAGE = 4096;
const ZEROS = Buffer.alloc(CHUNK);

export interface DeltaCheck {
  /** Bytes compared (the windows and every reported range). */
  compared: number;
  /** Bytes that differ between the reconstruction and the target: a lost change. Must be 0. */
  missingBytes: number;
  /** Offset of the first lost byte, for the failure message. */
  firstMissing?: number;
  reportedBytes: number;
  /** Pages inside reported ranges whose content is the same in base and target. */
  falseChangedBytes: number;
}

export interface AllocatedCheck {
  compared: number;
  /** Non-zero bytes outside every allocated range: data a backup of the ranges would lose. Must be 0. */
  missingBytes: number;
  firstMissing?: number;
  reportedBytes: number;
  /** Pages inside allocated ranges that read back as zeros. */
  zeroAllocatedBytes: number;
}

const spans = (ranges: readonly Range[]) => ranges.map((r) => ({ start: Number(r.byte_offset), end: Number(r.byte_offset) + Number(r.size_bytes) }));

/** The spec's rules for a stream's ranges: positive sizes, strictly ascending, no overlap, inside the capacity. */
export function assertWellFormed(ranges: readonly Range[], capacity: number, startingOffset = 0): void {
  let end = -1;
  spans(ranges).forEach((s, i) => {
    assert.ok(s.end > s.start, `range ${i} has a positive size`);
    assert.ok(s.start >= end, `range ${i} (${s.start}) starts at or after the previous one's end (${end})`);
    assert.ok(s.end <= capacity, `range ${i} ends (${s.end}) inside the capacity (${capacity})`);
    if (i === 0) assert.ok(s.end > startingOffset, 'the first range ends after starting_offset');
    end = s.end;
  });
}

/**
 * Windows of `size` every `every` bytes across a volume: evidence that the rest of a volume too
 * large to compare whole reads the same in both, at a fraction of a whole read's cost.
 */
export function sampled(capacity: number, every: number, size: number): Window[] {
  const out: Window[] = [];
  for (let s = 0; s < capacity; s += every) out.push({ start: s, end: Math.min(capacity, s + size) });
  return out;
}

/** The union of windows and ranges, ascending and merged, cut to chunks. */
function chunksOf(windows: readonly Window[], ranges: readonly Window[], capacity: number): Window[] {
  const all = [...windows, ...ranges].map((w) => ({ start: Math.max(0, w.start), end: Math.min(capacity, w.end) })).filter((w) => w.end > w.start).sort((a, b) => a.start - b.start);
  const merged: Window[] = [];
  for (const w of all) {
    const last = merged.at(-1);
    if (last && w.start <= last.end) last.end = Math.max(last.end, w.end);
    else merged.push({ ...w });
  }
  const out: Window[] = [];
  for (const w of merged) for (let s = w.start; s < w.end; s += CHUNK) out.push({ start: s, end: Math.min(w.end, s + CHUNK) });
  return out;
}

function reader(path: string) {
  const fd = openSync(path, 'r');
  return {
    read(w: Window): Buffer {
      const buf = Buffer.alloc(w.end - w.start);
      for (let got = 0; got < buf.length;) {
        const n = readSync(fd, buf, got, buf.length - got, w.start + got);
        assert.ok(n > 0, `${path}: short read at ${w.start + got}`);
        got += n;
      }
      return buf;
    },
    close: () => closeSync(fd),
  };
}

/** The parts of chunk `w` that `ranges` (ascending) cover, relative to w.start. */
function covered(ranges: readonly Window[], w: Window): Window[] {
  const out: Window[] = [];
  for (const r of ranges) {
    if (r.end <= w.start) continue;
    if (r.start >= w.end) break;
    out.push({ start: Math.max(r.start, w.start) - w.start, end: Math.min(r.end, w.end) - w.start });
  }
  return out;
}

function firstDiff(a: Buffer, b: Buffer): number {
  for (let i = 0; i < a.length; i += PAGE) {
    if (a.subarray(i, i + PAGE).equals(b.subarray(i, i + PAGE))) continue;
    for (let j = i; j < Math.min(a.length, i + PAGE); j++) if (a[j] !== b[j]) return j;
  }
  return -1;
}

function countDiff(a: Buffer, b: Buffer): number {
  let n = 0;
  for (let i = 0; i < a.length; i += PAGE) {
    const x = a.subarray(i, i + PAGE);
    const y = b.subarray(i, i + PAGE);
    if (!x.equals(y)) for (let j = 0; j < x.length; j++) if (x[j] !== y[j]) n++;
  }
  return n;
}

/** Pages of `parts` (page-aligned within the chunk or not) where a and b are equal. */
function equalPages(a: Buffer, b: Buffer, parts: readonly Window[]): number {
  let n = 0;
  for (const p of parts) {
    for (let i = p.start; i < p.end; i += PAGE) {
      const e = Math.min(p.end, i + PAGE);
      if (a.subarray(i, e).equals(b.subarray(i, e))) n += e - i;
    }
  }
  return n;
}

/**
 * Rebuilds the target from the base and the delta's ranges (read from the target) and compares
 * it with the target over `windows` (default: the whole capacity) and every reported range.
 */
export function reconstructDelta(basePath: string, targetPath: string, ranges: readonly Range[], capacity: number, windows: readonly Window[] = [{ start: 0, end: capacity }]): DeltaCheck {
  assertWellFormed(ranges, capacity);
  const rs = spans(ranges);
  const base = reader(basePath);
  const target = reader(targetPath);
  const out: DeltaCheck = { compared: 0, missingBytes: 0, reportedBytes: rs.reduce((n, r) => n + r.end - r.start, 0), falseChangedBytes: 0 };
  try {
    for (const w of chunksOf(windows, rs, capacity)) {
      const b = base.read(w);
      const t = target.read(w);
      const parts = covered(rs, w);
      out.compared += w.end - w.start;
      if (parts.length === 0 && b.equals(t)) continue; // most of a volume: nothing reported, nothing changed
      out.falseChangedBytes += equalPages(b, t, parts);
      const rebuilt = Buffer.from(b);
      for (const p of parts) t.copy(rebuilt, p.start, p.start, p.end);
      if (rebuilt.equals(t)) continue;
      out.missingBytes += countDiff(rebuilt, t);
      out.firstMissing ??= w.start + firstDiff(rebuilt, t);
    }
  } finally {
    base.close();
    target.close();
  }
  return out;
}

/** Zeros plus the allocated ranges (read from the snapshot's restore), compared with it. */
export function reconstructAllocated(snapPath: string, ranges: readonly Range[], capacity: number, windows: readonly Window[] = [{ start: 0, end: capacity }]): AllocatedCheck {
  assertWellFormed(ranges, capacity);
  const rs = spans(ranges);
  const snap = reader(snapPath);
  const out: AllocatedCheck = { compared: 0, missingBytes: 0, reportedBytes: rs.reduce((n, r) => n + r.end - r.start, 0), zeroAllocatedBytes: 0 };
  try {
    for (const w of chunksOf(windows, rs, capacity)) {
      const s = snap.read(w);
      const parts = covered(rs, w);
      const zeros = ZEROS.subarray(0, s.length);
      out.compared += w.end - w.start;
      if (parts.length === 0 && s.equals(zeros)) continue;
      out.zeroAllocatedBytes += equalPages(s, zeros, parts);
      const rebuilt = Buffer.alloc(s.length);
      for (const p of parts) s.copy(rebuilt, p.start, p.start, p.end);
      if (rebuilt.equals(s)) continue;
      out.missingBytes += countDiff(rebuilt, s);
      out.firstMissing ??= w.start + firstDiff(rebuilt, s);
    }
  } finally {
    snap.close();
  }
  return out;
}
