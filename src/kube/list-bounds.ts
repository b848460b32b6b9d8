import { mkdir, readFile, rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import { fsyncDir, writeAtomic } from '../state/durable.ts';

/**
 * Per resource, the version an agent's lists may not be older than (CrdStore.listBounds), kept
 * across a graceful restart in the node's state directory. Without it a restarted agent's every
 * list is a quorum read until it writes again, and a quorum read decodes every object of the
 * cluster in etcd: 2 s each at 10,000 objects, five in a start (issue 25's bench).
 *
 * Taken (read and removed) at start, so that after a crash, when the last incarnation's writes
 * may be newer than the file, the lists start from a quorum read again.
 */
export async function takeListBounds(file: string): Promise<Record<string, string>> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch {
    return {};
  }
  await rm(file, { force: true });
  await fsyncDir(dirname(file)); // gone for good before the lists rely on it: a crash must not find it again
  try {
    const parsed = JSON.parse(text) as unknown;
    if (!parsed || typeof parsed !== 'object') return {};
    return Object.fromEntries(Object.entries(parsed).filter((e): e is [string, string] => typeof e[1] === 'string'));
  } catch {
    return {}; // a torn or foreign file: quorum lists, as after a crash
  }
}

/** Written once the agent has stopped and its writes are settled: nothing it wrote is newer. */
export async function keepListBounds(file: string, bounds: Record<string, string>): Promise<void> {
  await mkdir(dirname(file), { recursive: true });
  await writeAtomic(file, JSON.stringify(bounds));
}
