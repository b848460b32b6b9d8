import type { ThinPoolStatus } from '../../../src/devmapper/types.ts';

/** The pool modes the kernel reports ('fail' prints as the bare word 'Fail'). */
export type PoolMode = ThinPoolStatus['mode'];

/** dm-thin device ids are 24-bit. */
export const MAX_THIN_ID = 2 ** 24 - 1;

/** A refusal the kernel would return as this errno; the fake turns it into dmsetup's failure. */
export class KernelError extends Error {
  readonly errno: string;
  constructor(errno: string, why: string) {
    super(why);
    this.name = 'KernelError';
    this.errno = errno;
  }
}

interface Thin {
  /** Logical block → physical block. Physical blocks are shared after create_snap. */
  readonly map: Map<number, number>;
}

/** What a pool message needs to know about the devices around it. */
export interface MessageContext {
  /** A thin dm device (live or inactive table) references this id. */
  isActive(id: number): boolean;
  /** The origin is active and not suspended: a snapshot of it may be torn. */
  isActiveUnsuspended(id: number): boolean;
  violation(text: string): void;
}

/**
 * The contents of a thin pool's metadata device: thin ids, block mappings with reference
 * counts, transaction id. It outlives the pool dm device, as metadata on disk does, so a
 * pool that is removed and created again on the same metadata device finds its thins.
 */
export class FakePoolMetadata {
  readonly dataBlockSectors: number;
  totalDataBlocks: number;
  readonly totalMetadataBlocks: number;
  transactionId = 0;
  mode: PoolMode = 'rw';
  needsCheck = false;
  heldRoot: number | undefined;
  /** The block maps as they were at reserve_metadata_snap: what the tools read with -m. */
  #held: Map<number, ReadonlyMap<number, number>> | undefined;
  readonly #thins = new Map<number, Thin>();
  readonly #refs = new Map<number, number>();
  #nextPhys = 0;

  constructor(dataBlockSectors: number, totalDataBlocks: number, totalMetadataBlocks: number) {
    this.dataBlockSectors = dataBlockSectors;
    this.totalDataBlocks = totalDataBlocks;
    this.totalMetadataBlocks = totalMetadataBlocks;
  }

  get usedDataBlocks(): number { return this.#refs.size; }

  /**
   * Space maps take about a tenth of the metadata device; the constants reproduce the fresh
   * pools recorded on a 6.1 kernel (1649/16384 and 214/2048). Mappings add a little on top.
   */
  get usedMetadataBlocks(): number {
    let mappings = 0;
    for (const t of this.#thins.values()) mappings += t.map.size;
    const base = Math.round(this.totalMetadataBlocks * 0.1001) + 9;
    return Math.min(this.totalMetadataBlocks, base + Math.ceil(mappings / 256));
  }

  /** needs_check keeps the kernel from switching the pool back to write mode. */
  effectiveMode(readOnlyFeature: boolean): PoolMode {
    if (this.mode === 'fail') return 'fail';
    if (this.mode === 'ro' || this.needsCheck || readOnlyFeature) return 'ro';
    return this.mode;
  }

  thinIds(): number[] { return [...this.#thins.keys()].sort((a, b) => a - b); }
  hasThin(id: number): boolean { return this.#thins.has(id); }
  mappedBlocks(id: number): number { return this.#thins.get(id)?.map.size ?? 0; }

  highestMappedBlock(id: number): number | undefined {
    const map = this.#thins.get(id)?.map;
    if (!map || map.size === 0) return undefined;
    return Math.max(...map.keys());
  }

  /** Kernel semantics of `dmsetup message POOL 0 MSG`; throws KernelError with the kernel's errno. */
  message(msg: string, readOnlyFeature: boolean, ctx: MessageContext): void {
    const [cmd, ...args] = msg.trim().split(/\s+/);
    const mode = this.effectiveMode(readOnlyFeature);
    // The kernel refuses every message, not only metadata changes, in these modes.
    if (mode === 'ro' || mode === 'fail') throw new KernelError('EOPNOTSUPP', `pool is in ${mode} mode`);
    switch (cmd) {
      case 'create_thin': this.#createThin(args); break;
      case 'create_snap': this.#createSnap(args, ctx); break;
      case 'delete': this.#delete(args, ctx); break;
      case 'set_transaction_id': this.#setTransactionId(args); break;
      case 'reserve_metadata_snap':
        argCount(args, 0);
        if (this.heldRoot !== undefined) throw new KernelError('EBUSY', 'metadata snapshot already held');
        this.heldRoot = 1 + this.usedMetadataBlocks;
        this.#held = new Map([...this.#thins].map(([id, t]) => [id, new Map(t.map)]));
        break;
      case 'release_metadata_snap':
        argCount(args, 0);
        if (this.heldRoot === undefined) throw new KernelError('EINVAL', 'no metadata snapshot held');
        this.heldRoot = undefined;
        this.#held = undefined;
        break;
      default: throw new KernelError('EINVAL', `unrecognised thin pool message ${JSON.stringify(cmd)}`);
    }
    this.#afterCommit();
  }

  #createThin(args: string[]): void {
    argCount(args, 1);
    const id = devId(args[0]);
    if (this.#thins.has(id)) throw new KernelError('EEXIST', `thin ${id} exists`);
    this.#thins.set(id, { map: new Map() });
  }

  #createSnap(args: string[], ctx: MessageContext): void {
    argCount(args, 2);
    const id = devId(args[0]);
    const originId = devId(args[1]);
    if (this.#thins.has(id)) throw new KernelError('EEXIST', `thin ${id} exists`);
    const origin = this.#thins.get(originId);
    if (!origin) throw new KernelError('ENODATA', `origin ${originId} does not exist`);
    if (ctx.isActiveUnsuspended(originId)) ctx.violation(`create_snap ${id} ${originId}: origin is active and not suspended`);
    for (const phys of origin.map.values()) this.#refs.set(phys, (this.#refs.get(phys) ?? 0) + 1);
    this.#thins.set(id, { map: new Map(origin.map) });
  }

  #delete(args: string[], ctx: MessageContext): void {
    argCount(args, 1);
    const id = devId(args[0]);
    const thin = this.#thins.get(id);
    if (!thin) throw new KernelError('ENODATA', `thin ${id} does not exist`);
    if (ctx.isActive(id)) throw new KernelError('EBUSY', `thin ${id} is open`);
    for (const phys of thin.map.values()) this.#unref(phys);
    this.#thins.delete(id);
  }

  #setTransactionId(args: string[]): void {
    argCount(args, 2);
    const current = u64(args[0]);
    const next = u64(args[1]);
    if (current !== this.transactionId) throw new KernelError('EINVAL', `mismatched transaction id: ${current} != ${this.transactionId}`);
    this.transactionId = next;
  }

  /** The kernel leaves out_of_data_space on the first commit that finds free blocks. */
  #afterCommit(): void {
    if (this.mode === 'out_of_data_space' && this.usedDataBlocks < this.totalDataBlocks) this.mode = 'rw';
  }

  /** Growing the data device (a pool table reload + resume) gives out_of_data_space a way out. */
  resize(totalDataBlocks: number): void {
    if (totalDataBlocks < this.totalDataBlocks) {
      throw new KernelError('EINVAL', `pool target (${totalDataBlocks} blocks) too small: expected ${this.totalDataBlocks}`);
    }
    this.totalDataBlocks = totalDataBlocks;
    this.#afterCommit();
  }

  /**
   * Provisions logical blocks [first, last] of thin `id`: unmapped blocks and blocks shared
   * with a snapshot each take a new pool block; blocks it owns alone are overwritten in place.
   */
  write(id: number, first: number, last: number, readOnlyFeature: boolean): void {
    const thin = this.#thins.get(id);
    if (!thin) throw new KernelError('ENODATA', `thin ${id} does not exist`);
    const mode = this.effectiveMode(readOnlyFeature);
    if (mode === 'ro' || mode === 'fail') throw new KernelError('EIO', `pool is in ${mode} mode`);
    for (let block = first; block <= last; block++) {
      const phys = thin.map.get(block);
      if (phys !== undefined && this.#refs.get(phys) === 1) continue;
      if (this.usedDataBlocks >= this.totalDataBlocks) {
        this.mode = 'out_of_data_space';
        throw new KernelError('ENOSPC', `pool is out of data space (${this.totalDataBlocks} blocks used)`);
      }
      const fresh = this.#nextPhys++;
      this.#refs.set(fresh, 1);
      if (phys !== undefined) this.#unref(phys);
      thin.map.set(block, fresh);
    }
  }

  /**
   * The held metadata snapshot's map of thin `id` (logical → data block), undefined when the
   * snapshot has no such device; KernelError ENODATA when no snapshot is held.
   */
  heldMap(id: number): ReadonlyMap<number, number> | undefined {
    if (!this.#held) throw new KernelError('ENODATA', 'no current metadata snap');
    return this.#held.get(id);
  }

  /** A discard of logical blocks [first, last] of thin `id`: whole blocks are unmapped, as dm-thin does. */
  discard(id: number, first: number, last: number): void {
    const thin = this.#thins.get(id);
    if (!thin) throw new KernelError('ENODATA', `thin ${id} does not exist`);
    for (let block = first; block <= last; block++) {
      const phys = thin.map.get(block);
      if (phys === undefined) continue;
      thin.map.delete(block);
      this.#unref(phys);
    }
  }

  #unref(phys: number): void {
    const n = (this.#refs.get(phys) ?? 0) - 1;
    if (n <= 0) this.#refs.delete(phys);
    else this.#refs.set(phys, n);
  }

  /** The thin-pool status parameters exactly as dm-thin prints them (trailing space included). */
  statusParams(readOnlyFeature: boolean, features: readonly string[]): string {
    const mode = this.effectiveMode(readOnlyFeature);
    if (mode === 'fail') return 'Fail';
    const discard = features.includes('ignore_discard') ? 'ignore_discard'
      : features.includes('no_discard_passdown') ? 'no_discard_passdown' : 'discard_passdown';
    const noSpace = features.includes('error_if_no_space') ? 'error_if_no_space' : 'queue_if_no_space';
    const watermark = Math.min(1024, Math.floor(this.totalMetadataBlocks / 4));
    return `${this.transactionId} ${this.usedMetadataBlocks}/${this.totalMetadataBlocks} `
      + `${this.usedDataBlocks}/${this.totalDataBlocks} ${this.heldRoot ?? '-'} ${mode} ${discard} ${noSpace} `
      + `${this.needsCheck ? 'needs_check' : '-'} ${watermark} `;
  }
}

function argCount(args: string[], n: number): void {
  if (args.length !== n) throw new KernelError('EINVAL', `expected ${n} argument(s), got ${args.length}`);
}

/** The kernel's kstrtoull(arg, 10) followed by the 24-bit bound. */
function devId(arg: string | undefined): number {
  const n = u64(arg);
  if (n > MAX_THIN_ID) throw new KernelError('EINVAL', `invalid device id ${arg}`);
  return n;
}

function u64(arg: string | undefined): number {
  if (arg === undefined || !/^\+?\d+$/.test(arg)) throw new KernelError('EINVAL', `invalid number ${JSON.stringify(arg)}`);
  const n = Number(arg);
  if (!Number.isSafeInteger(n)) throw new KernelError('EINVAL', `number ${arg} out of range`);
  return n;
}
