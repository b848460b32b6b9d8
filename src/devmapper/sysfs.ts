import { readdir, readFile } from 'node:fs/promises';

/**
 * The length in sectors of the live table of the block device DEV when it is the dm device NAME
 * (a dm device without a table has size 0; a thin table is never empty), read from sysfs with
 * no command to spawn. Undefined whenever that is not shown, for whatever reason: only ever a
 * positive answer, so a caller that must not miss a live device asks dmsetup then.
 */
export async function liveSectorsInSysfs(dev: string, name: string, sysfs = '/sys'): Promise<number | undefined> {
  const dir = `${sysfs}/dev/block/${dev}`;
  try {
    const [dmName, size] = await Promise.all([readFile(`${dir}/dm/name`, 'utf8'), readFile(`${dir}/size`, 'utf8')]);
    const sectors = Number(size.trim());
    return dmName.trim() === name && Number.isSafeInteger(sectors) && sectors > 0 ? sectors : undefined;
  } catch {
    return undefined;
  }
}

/** Past this many dm disks a scan costs more than the one `dmsetup info` it would save. */
export const MAX_DM_SCAN = 64;

/**
 * The names of the dm devices the kernel shows as disks (`SYSFS/block/dm-N/dm/name`), undefined
 * when the listing cannot be had or trusted: unreadable, more than MAX_DM_SCAN disks, or none at
 * all (a caller with a running pool always has one). A device with a live table always is a disk
 * here (the kernel adds the disk before a table can go live), so a name missing from a trusted
 * listing has no live table, whether or not it has a /dev/mapper node.
 */
export async function dmNamesInSysfs(sysfs = '/sys'): Promise<Set<string> | undefined> {
  let disks: string[];
  try {
    disks = (await readdir(`${sysfs}/block`)).filter((d) => d.startsWith('dm-'));
  } catch {
    return undefined;
  }
  if (disks.length === 0 || disks.length > MAX_DM_SCAN) return undefined;
  try {
    const names = await Promise.all(disks.map((d) => readFile(`${sysfs}/block/${d}/dm/name`, 'utf8').catch((err: unknown) => {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined; // removed since the listing: no longer live
      throw err;
    })));
    return new Set(names.filter((n): n is string => n !== undefined).map((n) => n.trim()));
  } catch {
    return undefined;
  }
}
