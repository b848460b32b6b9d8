import { statSync } from 'node:fs';
import * as path from 'node:path';
import type { OpContext } from '../../../src/system/context.ts';
import { type FakeCall, type Fault, FaultInjector } from './fake.ts';
import { type LoopDevices, MountError } from '../../../src/mount/types.ts';

export type FakeLoopOp = 'find' | 'attach' | 'detach' | 'refresh';

/** In-memory LoopDevices: files map to /dev/loopN, lowest free N first like `losetup -f`. */
export class FakeLoopDevices implements LoopDevices {
  readonly #faults = new FaultInjector<FakeLoopOp>();
  /** device → backing file */
  readonly #attached = new Map<string, string>();
  /** device → its capacity in bytes: the file's size at attach or at the last refresh, as the kernel's loop keeps it. */
  readonly #sizes = new Map<string, number>();

  get ops(): readonly FakeCall<FakeLoopOp>[] {
    return this.#faults.ops;
  }
  inject(fault: Fault<FakeLoopOp>): void {
    this.#faults.inject(fault);
  }
  /** Snapshot: device → backing file. */
  attached(): Map<string, string> {
    return new Map(this.#attached);
  }

  #lookup(file: string): string | undefined {
    const abs = path.resolve(file);
    for (const [dev, f] of this.#attached) if (f === abs) return dev;
    return undefined;
  }

  async find(_ctx: OpContext, file: string): Promise<string | undefined> {
    this.#faults.enter('find', file);
    return this.#lookup(file);
  }

  async attach(_ctx: OpContext, file: string): Promise<string> {
    this.#faults.enter('attach', file);
    const existing = this.#lookup(file);
    if (existing !== undefined) return existing;
    let n = 0;
    while (this.#attached.has(`/dev/loop${n}`)) n++;
    const dev = `/dev/loop${n}`;
    this.#attached.set(dev, path.resolve(file));
    this.#sizes.set(dev, fileSize(file));
    return dev;
  }

  async detach(_ctx: OpContext, device: string): Promise<void> {
    this.#faults.enter('detach', device);
    if (!this.#attached.delete(device)) {
      throw new MountError(`losetup -d ${device}: detach failed: No such device or address`, { errno: 'ENXIO', exitCode: 1 });
    }
  }

  async refresh(_ctx: OpContext, device: string): Promise<void> {
    this.#faults.enter('refresh', device);
    if (!this.#attached.has(device)) {
      throw new MountError(`losetup -c ${device}: No such device or address`, { errno: 'ENXIO', exitCode: 1 });
    }
    this.#sizes.set(device, fileSize(this.#attached.get(device) as string));
  }

  /** The loop device's capacity in bytes (what BLKGETSIZE64 answers), undefined when not attached. */
  sizeOf(device: string): number | undefined {
    return this.#attached.has(device) ? this.#sizes.get(device) : undefined;
  }
}

/** A file the tests never made has no size: the fake then models an empty loop. */
function fileSize(file: string): number {
  try {
    return statSync(file).size;
  } catch {
    return 0;
  }
}
