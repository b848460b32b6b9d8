// The in-process ioctl floor: the dm steps of each operation as the driver now makes them
// (src/devmapper/ioctl), on the bare pool, timed in a tight loop with no gRPC, no store, no
// reconcile: what is left of an operation once everything but the kernel's work is gone.
import { mkdirSync } from 'node:fs';
import { IoctlDeviceMapper } from '../src/devmapper/ioctl/device-mapper.ts';
import { KernelMounter } from '../src/mount/kernel.ts';
import { background as ctx } from '../src/system/context.ts';

const dm = new IoctlDeviceMapper({ udev: false });
const mounter = new KernelMounter();
const now = () => performance.now();

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t0 = now();
  await fn();
  return now() - t0;
}

/** "major:minor" of the pool, as the thin tables name it. */
async function poolDev(pool: string): Promise<string> {
  const info = await dm.info(ctx, pool);
  if (!info) throw new Error(`no pool ${pool}`);
  return `${info.major}:${info.minor}`;
}

export const floor = {
  create: (pool: string, id: number) => timed(() => dm.message(ctx, pool, `create_thin ${id}`)),
  restore: (pool: string, id: number, snap: number) => timed(() => dm.message(ctx, pool, `create_snap ${id} ${snap}`)),
  delete: (pool: string, id: number) => timed(() => dm.message(ctx, pool, `delete ${id}`)),
  /** suspend (flush + freeze), create_snap, resume: returns [total, window] (the same here). */
  snapshot: async (pool: string, id: number, origId: number, origin: string): Promise<number> => timed(async () => {
    await dm.suspend(ctx, origin);
    try {
      await dm.message(ctx, pool, `create_snap ${id} ${origId}`);
    } finally {
      await dm.resume(ctx, origin);
    }
  }),
  expand: async (pool: string, name: string, id: number, bytes: number): Promise<number> => {
    const dev = await poolDev(pool);
    return timed(async () => {
      await dm.reload(ctx, name, `0 ${bytes / 512} thin ${dev} ${id}`);
      await dm.resume(ctx, name);
    });
  },
  /** create + mount(2), both in process, as the driver makes them. */
  stage: async (pool: string, name: string, id: number, bytes: number, mnt: string): Promise<number> => {
    const dev = await poolDev(pool);
    mkdirSync(mnt, { recursive: true });
    const t = await timed(async () => {
      await dm.create(ctx, name, `0 ${bytes / 512} thin ${dev} ${id}`);
      await mounter.mount(ctx, `/dev/mapper/${name}`, mnt, 'ext4', []);
    });
    await mounter.unmount(ctx, mnt);
    await dm.remove(ctx, name);
    return t;
  },
};
