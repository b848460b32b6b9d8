import { readFile } from 'node:fs/promises';
import type { OpContext } from '../system/context.ts';
import { CommandError, run } from '../system/exec.ts';
import { stderrSummary } from './errors.ts';
import { DmParseError } from './parse.ts';
import { isDmError, type DeviceMapper, type ThinIds } from './types.ts';

/** `thin_ls --no-headers -o DEV` output: one thin id per line. */
export function parseThinLs(text: string): number[] {
  const ids: number[] = [];
  for (const line of text.split('\n')) {
    const t = line.trim();
    if (t === '') continue;
    if (!/^\d+$/.test(t)) throw new DmParseError('thin_ls output', text, `line ${JSON.stringify(t)} is not a thin id`);
    ids.push(Number(t));
  }
  return ids.sort((a, b) => a - b);
}

/** A table's device ("253:1" or a path) as a path thin_ls can open. */
export async function blockDevicePath(dev: string, sysfs = '/sys'): Promise<string> {
  if (!/^\d+:\d+$/.test(dev)) return dev;
  const uevent = await readFile(`${sysfs}/dev/block/${dev}/uevent`, 'utf8');
  const name = /^DEVNAME=(.+)$/m.exec(uevent)?.[1];
  if (!name) throw new DmParseError(`uevent of block device ${dev}`, uevent, 'no DEVNAME');
  return `/dev/${name}`;
}

/**
 * Every thin id in the pool's metadata, inactive devices included (dmsetup only sees active
 * ones): thin_ls reads a metadata snapshot, reserved for the read and released after, so the
 * live pool is never read behind the kernel's back. A snapshot someone else holds is left alone.
 */
export async function thinIdsFromMetadata(ctx: OpContext, dm: DeviceMapper, pool: string, metadataDev?: string, binary = 'thin_ls'): Promise<ThinIds> {
  let metadata: string;
  try {
    metadata = await blockDevicePath(metadataDev ?? (await dm.poolTable(ctx, pool)).metadataDev);
  } catch (err) {
    // An extra check must not stop reconcile: without the device, skip it this time and say why.
    return { unavailable: `cannot find the metadata device of ${pool}: ${(err as Error).message}` };
  }
  try {
    await dm.message(ctx, pool, 'reserve_metadata_snap');
  } catch (err) {
    if (isDmError(err, 'busy')) return { unavailable: `a metadata snapshot of ${pool} is already held (by an operator, or left by a crash: release it with dmsetup message ${pool} 0 release_metadata_snap)` };
    return { unavailable: `cannot reserve a metadata snapshot of ${pool}: ${(err as Error).message}` };
  }
  try {
    const { stdout } = await run(ctx, binary, ['--metadata-snap', '--no-headers', '-o', 'DEV', metadata], { maxMs: 60_000, query: true });
    return { ids: parseThinLs(stdout) };
  } catch (err) {
    if (err instanceof CommandError && err.errno === 'ENOENT' && err.exitCode === undefined) return { unavailable: `${binary} not found: install thin-provisioning-tools` };
    if (err instanceof CommandError) return { unavailable: `${binary} failed on ${metadata}: ${stderrSummary(err.stderr) || err.message}` };
    throw err;
  } finally {
    await dm.message(ctx, pool, 'release_metadata_snap').catch(() => undefined);
  }
}
