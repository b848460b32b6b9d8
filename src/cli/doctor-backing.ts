import { parseThinPoolStatus, parseThinPoolTable } from '../devmapper/parse.ts';
import { readBacking, backingShortfall, type BackingFs } from '../pool/backing.ts';
import { assessPool } from '../pool/health.ts';
import type { CheckResult } from './doctor.ts';
import type { Runner } from './status.ts';
import { formatBytes } from './status.ts';

/**
 * doctor's check of a file pool's backing filesystem: whether it can hold the whole data file
 * (else the node advertises only what it holds, and says so), how much the pool can still take
 * (the figure capacity uses: assessPool's dataFreeBytes), and whether the metadata file is
 * allocated in full. Nothing for a pool on block devices.
 */
export async function checkBacking(runner: Runner, fs: BackingFs, name: string): Promise<CheckResult[]> {
  const label = `pool ${name} backing`;
  let table;
  let status;
  try {
    table = parseThinPoolTable((await runner('dmsetup', ['table', name])).stdout);
    status = parseThinPoolStatus((await runner('dmsetup', ['status', name])).stdout);
  } catch {
    return []; // checkPool already reports a pool it cannot read
  }
  let b;
  try {
    b = await readBacking(fs, table.dataDev, table.metadataDev);
  } catch (err) {
    return [{ level: 'warn', name: label, detail: `cannot read the filesystem under the pool's files: ${(err as Error).message}`, fix: 'check that the pool\'s data file still exists' }];
  }
  if (!b) return [];
  const out: CheckResult[] = [];
  const free = status.mode === 'fail' ? undefined : assessPool(status, table.dataBlockSectors, undefined, b).dataFreeBytes;
  const room = free === undefined ? '' : `; the pool can still take ${formatBytes(free)}`;
  const short = backingShortfall(b);
  out.push(short
    ? { level: 'warn', name: label, detail: short, fix: `free space on the filesystem under ${b.dataFile}, or configure a smaller pool (--loop-data-size); see the README's sizing rule` }
    : { level: 'ok', name: label, detail: `data file ${b.dataFile}: ${formatBytes(b.fileAllocatedBytes)} of ${formatBytes(b.fileBytes)} allocated, filesystem has ${formatBytes(b.fsAvailableBytes)} available${room}` });
  if (short && room) out[0]!.detail += room;
  if (b.metadataUnallocatedBytes > 0) {
    out.push({
      level: 'fail', name: `${label} metadata`, detail: `metadata file ${b.metadataFile ?? ''} has ${formatBytes(b.metadataUnallocatedBytes)} unallocated: a metadata write may fail for want of space and fail the pool`,
      fix: 'free space on its filesystem and restart the driver, which allocates the file in full',
    });
  }
  return out;
}
