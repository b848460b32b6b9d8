import * as path from 'node:path';
import type { OpContext } from '../system/context.ts';
import { run } from '../system/exec.ts';
import { toMountError } from './system.ts';
import { type LoopDevices, MountError } from './types.ts';

export interface LosetupOptions {
  maxMs?: number;
  /** Run losetup from this directory instead of PATH (tests). */
  binDir?: string;
}

/** LoopDevices backed by util-linux losetup. */
export class LosetupLoopDevices implements LoopDevices {
  readonly #maxMs: number;
  readonly #binDir: string | undefined;

  constructor(opts: LosetupOptions = {}) {
    this.#maxMs = opts.maxMs ?? 30_000;
    this.#binDir = opts.binDir;
  }

  async #losetup(ctx: OpContext, args: readonly string[]): Promise<string> {
    const cmd = this.#binDir === undefined ? 'losetup' : path.join(this.#binDir, 'losetup');
    try {
      return (await run(ctx, cmd, args, { maxMs: this.#maxMs })).stdout;
    } catch (err) {
      throw toMountError(err, 'losetup');
    }
  }

  async find(ctx: OpContext, file: string): Promise<string | undefined> {
    const out = await this.#losetup(ctx, ['-j', file, '-n', '-O', 'NAME']);
    return out.split('\n').map((l) => l.trim()).find((l) => l !== '');
  }

  async attach(ctx: OpContext, file: string): Promise<string> {
    const existing = await this.find(ctx, file);
    if (existing !== undefined) return existing;
    const dev = (await this.#losetup(ctx, ['-f', '--show', file])).trim();
    if (dev === '') throw new MountError(`losetup -f --show ${file}: printed no device`);
    return dev;
  }

  async detach(ctx: OpContext, device: string): Promise<void> {
    await this.#losetup(ctx, ['-d', device]);
  }

  /** Makes the loop device pick up a changed backing-file size (losetup -c). */
  async refresh(ctx: OpContext, device: string): Promise<void> {
    await this.#losetup(ctx, ['-c', device]);
  }
}
