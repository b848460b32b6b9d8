import { open, mkdir, stat, truncate } from 'node:fs/promises';
import { join } from 'node:path';
import type { DeviceMapper, DmDeviceInfo, ThinPoolTable } from '../devmapper/types.ts';
import { SECTOR } from '../devmapper/types.ts';
import { failedPrecondition, invalidArgument } from '../errors.ts';
import type { LoopDevices, Mounter } from '../mount/types.ts';
import type { Logger } from '../observability/log.ts';
import type { OpContext } from '../system/context.ts';
import { allocateMetadataFile, realBackingFs, type BackingFiles, type BackingFs } from './backing.ts';

/** How the node's pool comes to exist. */
export type PoolSource =
  | { kind: 'existing'; name: string }
  | { kind: 'devices'; name: string; dataDevice: string; metadataDevice: string; blockSectors: number; features: string[] }
  | { kind: 'loop'; name: string; dir: string; dataBytes: number; metadataBytes: number; blockSectors: number; features: string[] };

export interface ProvisionDeps {
  dm: DeviceMapper; loops: LoopDevices; mounter: Mounter; log: Logger;
  /** Allocates a file pool's metadata file; default the real filesystem. */
  backing?: BackingFs;
}

/** What adopting a live pool already read, so attaching need not read it again. */
export interface AdoptedPool { info: DmDeviceInfo; table: ThinPoolTable }

/** The files of a pool made of files under `dir`. */
export function loopFiles(dir: string): BackingFiles {
  return { data: join(dir, 'data.img'), metadata: join(dir, 'metadata.img') };
}

/** dm-thin's metadata superblock magic (THIN_SUPERBLOCK_MAGIC), at byte 32 of the device. */
const THIN_MAGIC = 27022010n;

export function validateBlockSectors(n: number): void {
  if (!Number.isInteger(n) || n < 128 || n > 2097152 || n % 128 !== 0) {
    throw invalidArgument(`data block size must be a multiple of 64 KiB between 64 KiB and 1 GiB, got ${n * SECTOR} bytes`);
  }
}

/** Adopts the pool if it is live, else builds it from its source. Never reformats existing metadata. */
export async function ensurePool(ctx: OpContext, deps: ProvisionDeps, src: PoolSource): Promise<AdoptedPool | undefined> {
  const info = await deps.dm.info(ctx, src.name);
  if (info?.live) {
    const table = await deps.dm.poolTable(ctx, src.name).catch((e: unknown) => {
      throw failedPrecondition(`device ${src.name} exists but is not a thin pool: ${String(e)}`);
    });
    if (src.kind === 'loop') await allocateMetadataFile(ctx, deps.backing ?? realBackingFs, loopFiles(src.dir).metadata, false, (m, f) => deps.log.warn(m, { pool: src.name, ...f }));
    deps.log.info('adopted existing thin pool', { pool: src.name });
    return { info, table };
  }
  if (src.kind === 'existing') throw failedPrecondition(`thin pool ${src.name} does not exist; create it or configure data and metadata devices`);
  validateBlockSectors(src.blockSectors);
  const { data, metadata } = src.kind === 'loop' ? await loopBacking(ctx, deps, src) : { data: src.dataDevice, metadata: src.metadataDevice };
  await checkMetadata(metadata);
  const dataSectors = Math.floor((await deps.mounter.blockSize(ctx, data)) / SECTOR / src.blockSectors) * src.blockSectors;
  if (dataSectors === 0) throw invalidArgument(`data device ${data} is smaller than one data block`);
  const lowWater = Math.max(1, Math.floor(dataSectors / src.blockSectors / 100));
  const features = src.features.length > 0 ? ` ${src.features.length} ${src.features.join(' ')}` : '';
  if (info) await deps.dm.remove(ctx, src.name);
  await deps.dm.create(ctx, src.name, `0 ${dataSectors} thin-pool ${metadata} ${data} ${src.blockSectors} ${lowWater}${features}`);
  deps.log.info('thin pool created', { pool: src.name, data, metadata, dataSectors, blockSectors: src.blockSectors });
  return undefined;
}

async function loopBacking(ctx: OpContext, deps: ProvisionDeps, src: Extract<PoolSource, { kind: 'loop' }>) {
  await mkdir(src.dir, { recursive: true, mode: 0o700 });
  const { data: dataFile, metadata: metaFile } = loopFiles(src.dir);
  let freshMetadata = false;
  for (const [file, size] of [[dataFile, src.dataBytes], [metaFile, src.metadataBytes]] as const) {
    const existing = await stat(file).catch(() => undefined);
    if (file === metaFile) freshMetadata = !existing;
    // Sparse: the files take only what the pool writes. Growing is allowed, shrinking never.
    if (!existing) await (await open(file, 'wx', 0o600)).close();
    if (!existing || existing.size < size) await truncate(file, size);
  }
  await allocateMetadataFile(ctx, deps.backing ?? realBackingFs, metaFile, freshMetadata, (m, f) => deps.log.warn(m, { pool: src.name, ...f }));
  return { data: await deps.loops.attach(ctx, dataFile), metadata: await deps.loops.attach(ctx, metaFile) };
}

/**
 * A metadata device is either ours already (superblock magic) or all zeros (fresh). Anything
 * else may be someone's data, so we refuse rather than format it.
 */
async function checkMetadata(device: string): Promise<void> {
  const fh = await open(device, 'r');
  try {
    const buf = Buffer.alloc(4096);
    await fh.read(buf, 0, 4096, 0);
    if (buf.readBigUInt64LE(32) === THIN_MAGIC) return;
    if (buf.every((b) => b === 0)) return;
    throw failedPrecondition(`metadata device ${device} holds data that is not dm-thin metadata; zero its first 4 KiB if it may be formatted`);
  } finally {
    await fh.close();
  }
}
