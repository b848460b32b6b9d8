import { createHash } from 'node:crypto';
import { mkdir, readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { writeAtomic } from '../state/file.ts';

/** A publish target the node service made itself, and so may remove again. */
export interface CreatedTarget {
  target: string;
  /** A directory (mount access) or an empty placeholder file (block access). */
  kind: 'dir' | 'file';
  volumeId: string;
}

/**
 * Durable records of the targets publish created, one small file each under the node's state
 * directory. Written before the target is made, so a publish killed right after its mkdir still
 * leaves unpublish the record that says the directory is the driver's to remove.
 */
export class TargetRecords {
  readonly dir: string;
  #ready: Promise<unknown> | undefined;

  constructor(dir: string) {
    this.dir = dir;
  }

  #file(target: string): string {
    return join(this.dir, `${createHash('sha256').update(target).digest('hex').slice(0, 40)}.json`);
  }

  async record(t: CreatedTarget): Promise<void> {
    this.#ready ??= mkdir(this.dir, { recursive: true, mode: 0o700 }).catch((err: unknown) => {
      this.#ready = undefined;
      throw err;
    });
    await this.#ready;
    await writeAtomic(this.#file(t.target), `${JSON.stringify(t)}\n`);
  }

  /** The record for exactly this target, if publish made it; a record for another path never matches. */
  async get(target: string): Promise<CreatedTarget | undefined> {
    let text: string;
    try {
      text = await readFile(this.#file(target), 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
    let rec: CreatedTarget;
    try {
      rec = JSON.parse(text) as CreatedTarget;
    } catch {
      return undefined; // unreadable: not known to be ours, so never removed
    }
    return rec?.target === target && (rec.kind === 'dir' || rec.kind === 'file') ? rec : undefined;
  }

  /** Every target on record (a handful: those published now, or left by a publish that died). */
  async list(): Promise<CreatedTarget[]> {
    let files: string[];
    try {
      files = (await readdir(this.dir)).filter((f) => /^[0-9a-f]{40}\.json$/.test(f));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
    const recs = await Promise.all(files.map(async (f) => JSON.parse(await readFile(join(this.dir, f), 'utf8').catch(() => 'null')) as CreatedTarget | null));
    return recs.filter((r): r is CreatedTarget => typeof r?.target === 'string' && typeof r.volumeId === 'string');
  }

  async forget(target: string): Promise<void> {
    await rm(this.#file(target), { force: true });
  }
}

/** Where a node keeps its target records: beside the store, under the state directory. */
export function nodeTargets(stateDir: string): TargetRecords {
  return new TargetRecords(join(stateDir, 'node-targets'));
}
