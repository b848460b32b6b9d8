import type { OpContext } from '../../../src/system/context.ts';
import { type DmCall, type DmFault, FaultPlan } from './fake-faults.ts';
import { FakeEvents } from './fake-events.ts';
import { FakePoolMetadata, KernelError, type PoolMode } from './fake-pool.ts';
import { FakeThinTools } from './fake-thin-tools.ts';
import {
  dmsetupFailure, FAKE_DM_MAJOR, type FakeDevice, type FakeTable, ioctlFailure, loadTable, renderStatus, type TableResolver,
} from './fake-tables.ts';
import { parseAs, parseLiveTable, parseThinPoolStatus, parseThinPoolTable, parseThinStatus, parseThinTable } from '../../../src/devmapper/parse.ts';
import {
  type DeviceMapper, DmError, type DmDeviceInfo, type RemoveOptions, SECTOR, type ThinPoolStatus,
  type ThinIds, type ThinPoolTable, type ThinStatus, type ThinTable,
} from '../../../src/devmapper/types.ts';

export type { PoolMode } from './fake-pool.ts';
export type { DmCall, DmFault, FakeDmOp } from './fake-faults.ts';

export interface FakeDeviceMapperOptions {
  /** Metadata blocks of every pool created from now on; default 16384 (a 64 MiB metadata device). */
  metadataBlocks?: number;
  /** What `targets` reports; default thin-pool, thin, linear, striped, error, zero. */
  targets?: string[];
}

const MAPPER = '/dev/mapper/';
const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/**
 * In-memory device-mapper with dm-thin semantics. Failures are the same DmErrors (kind, errno,
 * stderr) that DmsetupDeviceMapper raises for the kernel's answer. Where the kernel would block
 * (I/O to a suspended device, writes to a full pool in queue_if_no_space mode) the fake throws.
 */
export class FakeDeviceMapper implements DeviceMapper {
  /** Every call, in order, including failed ones. */
  readonly ops: DmCall[] = [];
  /** Misuse the kernel allows but that corrupts data, e.g. a snapshot of an unsuspended origin. */
  readonly violations: string[] = [];
  readonly #devices = new Map<string, FakeDevice>();
  readonly #metadata = new Map<string, FakePoolMetadata>();
  readonly #faults = new FaultPlan();
  readonly #metadataBlocks: number;
  readonly #targets: string[];
  readonly #resolver: TableResolver;
  readonly #events = new FakeEvents();

  constructor(opts: FakeDeviceMapperOptions = {}) {
    this.#metadataBlocks = opts.metadataBlocks ?? 16384;
    this.#targets = opts.targets ?? ['thin-pool', 'thin', 'linear', 'striped', 'error', 'zero'];
    this.#resolver = {
      deviceByRef: (ref) => this.#byRef(ref),
      metadataFor: (dev, bs, blocks) => {
        let meta = this.#metadata.get(dev);
        if (!meta) this.#metadata.set(dev, meta = new FakePoolMetadata(bs, blocks, this.#metadataBlocks));
        return meta;
      },
      poolUsing: (meta) => [...this.#devices.values()].find((d) => d.live?.pool?.meta === meta || d.inactive?.pool?.meta === meta),
    };
  }

  // ---- fault injection and bookkeeping -------------------------------------------------

  inject(fault: DmFault): void { this.#faults.inject(fault); }

  clearFaults(): void { this.#faults.clear(); }

  /**
   * Runs one call: logs it, yields once so concurrent callers interleave, honours the context,
   * applies faults, and turns a KernelError from `fn` into dmsetup's failure for `ioctl`.
   */
  async #op<T>(ctx: OpContext, call: DmCall & { ioctl: string; name?: string }, fn: () => T): Promise<T> {
    const { op, args } = call;
    this.ops.push({ op, args });
    await tick();
    if (ctx.signal?.aborted) throw new DmError('timeout', `dmsetup ${op} ${args.join(' ')}: cancelled`);
    if (ctx.deadline !== undefined && Date.now() > ctx.deadline) throw new DmError('timeout', `dmsetup ${op} ${args.join(' ')}: deadline passed`);
    const fault = this.#faults.take(op, args);
    if (fault && fault.when !== 'after') throw fault.error;
    let result: T;
    try {
      result = fn();
    } catch (err) {
      if (err instanceof KernelError) throw ioctlFailure([op, ...args], call.ioctl, call.name ?? '', err.errno);
      throw err;
    }
    if (fault) throw fault.error;
    return result;
  }

  #byRef(ref: string): FakeDevice | undefined {
    if (ref.startsWith(MAPPER)) return this.#devices.get(ref.slice(MAPPER.length));
    const m = /^(\d+):(\d+)$/.exec(ref);
    if (!m || Number(m[1]) !== FAKE_DM_MAJOR) return undefined;
    return [...this.#devices.values()].find((d) => d.minor === Number(m[2]));
  }

  #existing(name: string): FakeDevice {
    const dev = this.#devices.get(name);
    if (!dev) throw new KernelError('ENXIO', `no device ${name}`);
    return dev;
  }

  /** dm devices whose tables (live or inactive) hold `dev` open, as each thin holds its pool. */
  #holders(dev: FakeDevice): number {
    let n = 0;
    for (const d of this.#devices.values()) {
      if (d.live?.thin?.pool === dev) n++;
      if (d.inactive?.thin?.pool === dev) n++;
    }
    return n;
  }

  #openCount(dev: FakeDevice): number { return dev.open + this.#holders(dev); }

  #nextMinor(): number {
    const used = new Set([...this.#devices.values()].map((d) => d.minor));
    let minor = 0;
    while (used.has(minor)) minor++;
    return minor;
  }

  #isThinActive(pool: FakePoolMetadata, id: number, unsuspendedOnly: boolean): boolean {
    for (const d of this.#devices.values()) {
      for (const t of [d.live, d.inactive]) {
        if (t?.thin?.id === id && t.thin.pool.live?.pool?.meta === pool && (!unsuspendedOnly || (t === d.live && !d.suspended))) return true;
      }
    }
    return false;
  }

  // ---- DeviceMapper -------------------------------------------------------------------

  version(ctx: OpContext): Promise<string> {
    return this.#op(ctx, { op: 'version', args: [], ioctl: 'version' }, () => 'Library version:   1.02.185 (2022-05-18)\nDriver version:    4.47.0');
  }

  targets(ctx: OpContext): Promise<string[]> {
    return this.#op(ctx, { op: 'targets', args: [], ioctl: 'list_versions' }, () => [...this.#targets]);
  }

  create(ctx: OpContext, name: string, table: string, opts: { readOnly?: boolean; uuid?: string } = {}): Promise<void> {
    const args = [name, table, ...(opts.readOnly ? ['--readonly'] : []), ...(opts.uuid !== undefined ? ['--uuid', opts.uuid] : [])];
    return this.#op(ctx, { op: 'create', args, ioctl: 'reload', name }, () => {
      // The kernel refuses a duplicate name or uuid at DM_DEV_CREATE with EBUSY.
      const dup = this.#devices.has(name) || (opts.uuid !== undefined && opts.uuid !== '' && [...this.#devices.values()].some((d) => d.uuid === opts.uuid));
      if (dup) throw ioctlFailure(['create', ...args], 'create', name, 'EBUSY');
      const minor = this.#nextMinor();
      let loaded: FakeTable;
      try {
        loaded = loadTable(table, name, this.#resolver);
        if (loaded.pool) loaded.pool.meta.resize(Math.floor(loaded.length / loaded.pool.blockSectors));
      } catch (err) {
        // dmsetup created the device, its table load failed, and it removed the device again.
        if (err instanceof KernelError) throw ioctlFailure(['create', ...args], 'reload', name, err.errno, `${FAKE_DM_MAJOR}:${minor}`);
        throw err;
      }
      this.#devices.set(name, {
        name, minor, uuid: opts.uuid ?? '', readOnly: opts.readOnly ?? false,
        live: loaded, inactive: undefined, suspended: false, open: 0, events: 0, deferredRemove: false,
      });
    });
  }

  reload(ctx: OpContext, name: string, table: string): Promise<void> {
    return this.#op(ctx, { op: 'reload', args: [name, table], ioctl: 'reload', name }, () => {
      const dev = this.#existing(name);
      dev.inactive = loadTable(table, name, this.#resolver);
    });
  }

  resume(ctx: OpContext, name: string): Promise<void> {
    return this.#op(ctx, { op: 'resume', args: [name], ioctl: 'resume', name }, () => {
      const dev = this.#existing(name);
      const next = dev.inactive;
      if (next) {
        if (next.pool) next.pool.meta.resize(Math.floor(next.length / next.pool.blockSectors));
        dev.live = next;
        dev.inactive = undefined;
      } else if (!dev.live) {
        throw new KernelError('EINVAL', `${name} has no table to resume`);
      }
      dev.suspended = false;
      this.#events.resumed(dev);
    });
  }

  suspend(ctx: OpContext, name: string, opts: { noFlush?: boolean } = {}): Promise<void> {
    return this.#op(ctx, { op: 'suspend', args: opts.noFlush ? ['--noflush', name] : [name], ioctl: 'suspend', name }, () => {
      this.#existing(name).suspended = true;
    });
  }

  /**
   * Busy while anything holds the device open (mounts, or thin devices on a pool). --deferred
   * then succeeds and the device goes when its last holder does; --force swaps in an error
   * table first (releasing what the old table held, e.g. the thin id) and still fails busy.
   * --retry is recorded only: the fake has no transient holders to wait out.
   */
  remove(ctx: OpContext, name: string, opts: RemoveOptions = {}): Promise<void> {
    const flags = [...(opts.retry ? ['--retry'] : []), ...(opts.force ? ['--force'] : []), ...(opts.deferred ? ['--deferred'] : [])];
    return this.#op(ctx, { op: 'remove', args: [...flags, name], ioctl: 'remove', name }, () => {
      const dev = this.#existing(name);
      if (this.#openCount(dev) === 0) {
        this.#devices.delete(name);
        return;
      }
      if (opts.deferred) {
        dev.deferredRemove = true;
        return;
      }
      if (opts.force && dev.live) {
        dev.live = { length: dev.live.length, target: 'error', params: '' };
        dev.inactive = undefined;
      }
      throw ioctlFailure(['remove', ...flags, name], 'remove', name, 'EBUSY');
    });
  }

  message(ctx: OpContext, pool: string, msg: string): Promise<void> {
    return this.#op(ctx, { op: 'message', args: [pool, msg], ioctl: 'message', name: pool }, () => {
      const pt = this.#existing(pool).live?.pool;
      if (!pt) throw new KernelError('EINVAL', `${pool} is not a thin-pool`);
      pt.meta.message(msg, pt.features.includes('read_only'), {
        isActive: (id) => this.#isThinActive(pt.meta, id, false),
        isActiveUnsuspended: (id) => this.#isThinActive(pt.meta, id, true),
        violation: (text) => this.violations.push(text),
      });
    });
  }

  info(ctx: OpContext, name: string): Promise<DmDeviceInfo | undefined> {
    return this.#op(ctx, { op: 'info', args: [name], ioctl: 'info', name }, () => {
      const dev = this.#devices.get(name);
      return dev ? this.#info(dev) : undefined;
    });
  }

  isLive(ctx: OpContext, name: string): Promise<boolean> {
    return this.#op(ctx, { op: 'isLive', args: [name], ioctl: 'info', name }, () => {
      const dev = this.#devices.get(name);
      return dev ? this.#info(dev).live : false;
    });
  }

  liveThinSectors(ctx: OpContext, name: string): Promise<number | undefined> {
    return this.#op(ctx, { op: 'liveThinSectors', args: [name], ioctl: 'table', name }, () => {
      const dev = this.#devices.get(name);
      return dev?.live ? parseAs(name, this.tableLine(name), parseThinTable).lengthSectors : undefined;
    });
  }

  infoAll(ctx: OpContext): Promise<DmDeviceInfo[]> {
    return this.#op(ctx, { op: 'infoAll', args: [], ioctl: 'info' }, () => [...this.#devices.values()].map((d) => this.#info(d)));
  }

  #info(dev: FakeDevice): DmDeviceInfo {
    return {
      name: dev.name, major: FAKE_DM_MAJOR, minor: dev.minor, live: dev.live !== undefined,
      inactiveTable: dev.inactive !== undefined, suspended: dev.suspended, readOnly: dev.readOnly,
      openCount: this.#openCount(dev), uuid: dev.uuid, segments: dev.live ? 1 : 0, events: dev.events,
    };
  }

  thinStatusAll(ctx: OpContext): Promise<Map<string, ThinStatus>> {
    return this.#op(ctx, { op: 'thinStatusAll', args: [], ioctl: 'status' }, () => this.#eachThin((d) => parseAs(d.name, this.statusLine(d.name), parseThinStatus)));
  }

  thinTableAll(ctx: OpContext): Promise<Map<string, ThinTable>> {
    return this.#op(ctx, { op: 'thinTableAll', args: [], ioctl: 'table' }, () => this.#eachThin((d) => parseAs(d.name, this.tableLine(d.name), parseThinTable)));
  }

  #eachThin<T>(fn: (dev: FakeDevice) => T): Map<string, T> {
    const out = new Map<string, T>();
    for (const d of this.#devices.values()) if (d.live?.target === 'thin') out.set(d.name, fn(d));
    return out;
  }

  poolStatus(ctx: OpContext, pool: string): Promise<ThinPoolStatus> {
    return this.#op(ctx, { op: 'poolStatus', args: [pool], ioctl: 'status', name: pool }, () => parseAs(pool, this.#lineOrFail('status', pool), parseThinPoolStatus));
  }

  thinStatus(ctx: OpContext, name: string): Promise<ThinStatus> {
    return this.#op(ctx, { op: 'thinStatus', args: [name], ioctl: 'status', name }, () => parseAs(name, this.#lineOrFail('status', name), parseThinStatus));
  }

  poolTable(ctx: OpContext, pool: string): Promise<ThinPoolTable> {
    return this.#op(ctx, { op: 'poolTable', args: [pool], ioctl: 'table', name: pool }, () => parseAs(pool, this.#lineOrFail('table', pool), parseThinPoolTable));
  }

  thinTable(ctx: OpContext, name: string): Promise<ThinTable> {
    return this.#op(ctx, { op: 'thinTable', args: [name], ioctl: 'table', name }, () => parseLiveTable(name, this.#lineOrFail('table', name), parseThinTable));
  }

  #lineOrFail(kind: 'status' | 'table', name: string): string {
    if (!this.#devices.has(name)) {
      // libdm hides ENXIO for status ("Device does not exist.") but not for table.
      if (kind === 'status') throw dmsetupFailure(['status', name], 'Device does not exist.');
      throw new KernelError('ENXIO', `no device ${name}`);
    }
    return kind === 'status' ? this.statusLine(name) : this.tableLine(name);
  }

  devicePath(name: string): string {
    return `${MAPPER}${name}`;
  }

  waitEvent(ctx: OpContext, name: string, eventNr: number): Promise<number> {
    this.ops.push({ op: 'waitEvent', args: [name, String(eventNr)] });
    const fault = this.#faults.take('waitEvent', [name, String(eventNr)]);
    if (fault) return Promise.reject(fault.error);
    return this.#events.wait(ctx, name, () => this.#devices.get(name)?.events, eventNr);
  }

  /** thin_ls on a metadata snapshot: the ids at that moment, or unavailable while one is held. */
  thinIds(ctx: OpContext, pool: string): Promise<ThinIds> {
    return this.#op(ctx, { op: 'thinIds', args: [pool], ioctl: 'message', name: pool }, () => {
      const pt = this.#existing(pool).live?.pool;
      if (!pt) throw new KernelError('EINVAL', `${pool} is not a thin-pool`);
      if (pt.meta.heldRoot !== undefined) return { unavailable: `a metadata snapshot of ${pool} is already held` };
      return { ids: pt.meta.thinIds() };
    });
  }

  // ---- test helpers -------------------------------------------------------------------

  /** What `dmsetup status NAME` would print ('' when the device has no live table). */
  statusLine(name: string): string {
    const t = this.#existing(name).live;
    return t ? renderStatus(t) : '';
  }

  /** What `dmsetup table NAME` would print. */
  tableLine(name: string): string {
    const t = this.#existing(name).live;
    return t ? `0 ${t.length} ${t.target} ${t.params}` : '';
  }

  /**
   * Writes `bytes` at byte `offset` of an active thin device, provisioning pool blocks
   * (copy-on-write for blocks shared with snapshots). Throws a DmError: 'no_space' when the
   * pool runs out (it then reports out_of_data_space), EIO-flavoured 'unknown' in ro/fail mode.
   */
  write(name: string, bytes: number, offset = 0): void {
    this.ops.push({ op: 'write', args: [name, String(bytes), String(offset)] });
    const fault = this.#faults.take('write', [name, String(bytes), String(offset)]);
    if (fault && fault.when !== 'after') throw fault.error;
    const dev = this.#devices.get(name);
    const t = dev?.live;
    if (!dev || !t?.thin) throw new Error(`write: ${name} is not an active thin device`);
    if (dev.suspended) throw new Error(`write: ${name} is suspended; the I/O would block`);
    if (dev.readOnly) throw new DmError('invalid', `write: ${name} is read-only`, { errno: 'EROFS' });
    if (bytes <= 0 || offset < 0 || offset + bytes > t.length * SECTOR) {
      throw new Error(`write: ${bytes} bytes at ${offset} is outside ${name} (${t.length * SECTOR} bytes)`);
    }
    const pt = t.thin.pool.live?.pool;
    if (!pt) throw new Error(`write: the pool of ${name} is gone`);
    if (t.thin.pool.suspended) throw new Error(`write: the pool of ${name} is suspended; the I/O would block`);
    const blockBytes = pt.blockSectors * SECTOR;
    const modeBefore = pt.meta.mode;
    try {
      pt.meta.write(t.thin.id, Math.floor(offset / blockBytes), Math.floor((offset + bytes - 1) / blockBytes), pt.features.includes('read_only'));
    } catch (err) {
      if (!(err instanceof KernelError)) throw err;
      throw new DmError(err.errno === 'ENOSPC' ? 'no_space' : 'unknown', `write ${name}: ${err.message}`, { errno: err.errno });
    } finally {
      this.#events.wrote(t.thin.pool, modeBefore);
    }
    if (fault) throw fault.error;
  }

  /** blkdiscard of `bytes` at `offset` of an active thin device: the whole pool blocks inside it are unmapped. */
  discard(name: string, bytes: number, offset = 0): void {
    const t = this.#devices.get(name)?.live?.thin;
    const pt = t?.pool.live?.pool;
    if (!t || !pt) throw new Error(`discard: ${name} is not an active thin device`);
    const blockBytes = pt.blockSectors * SECTOR;
    const first = Math.ceil(offset / blockBytes);
    const last = Math.floor((offset + bytes) / blockBytes) - 1;
    if (last >= first) pt.meta.discard(t.id, first, last);
  }

  /** thin_dump and thin_delta over these pools' metadata snapshots (ThinTools' fake). */
  metadataReader(): FakeThinTools { return new FakeThinTools((pool) => this.#poolMeta(pool)); }

  /** Size in bytes of /dev/mapper/NAME while it has a live table; undefined otherwise. */
  sizeOf(path: string): number | undefined {
    const dev = path.startsWith(MAPPER) ? this.#devices.get(path.slice(MAPPER.length)) : undefined;
    return dev?.live ? dev.live.length * SECTOR : undefined;
  }

  /** A mount (+1) or unmount (-1) of /dev/mapper/NAME. Completes a deferred remove at zero. */
  adjustOpen(path: string, delta: number): void {
    const dev = path.startsWith(MAPPER) ? this.#devices.get(path.slice(MAPPER.length)) : undefined;
    if (!dev) throw new Error(`adjustOpen: no device-mapper device at ${path}`);
    if (dev.open + delta < 0) throw new Error(`adjustOpen: ${path} open count would drop below zero`);
    dev.open += delta;
    this.#reapDeferred();
  }

  #reapDeferred(): void {
    let removed = true;
    while (removed) {
      removed = false;
      for (const d of this.#devices.values()) {
        if (d.deferredRemove && this.#openCount(d) === 0) {
          this.#devices.delete(d.name);
          removed = true;
        }
      }
    }
  }

  openCount(name: string): number { return this.#openCount(this.#existing(name)); }

  #poolMeta(pool: string): FakePoolMetadata {
    const meta = this.#devices.get(pool)?.live?.pool?.meta;
    if (!meta) throw new Error(`${pool} is not an active thin-pool`);
    return meta;
  }

  /** Forces the pool's mode, as a device error (ro, fail) or a full data device would. */
  setPoolMode(pool: string, mode: PoolMode): void { this.#poolMeta(pool).mode = mode; }

  /** Sets the needs_check flag; the pool then reports (and behaves as) read-only. */
  setNeedsCheck(pool: string, needsCheck: boolean): void { this.#poolMeta(pool).needsCheck = needsCheck; }

  /** Thin ids present in the pool's metadata, ascending. */
  metadataThinIds(pool: string): number[] { return this.#poolMeta(pool).thinIds(); }

  /** A node restart: every dm device is gone, pool metadata (thin ids, data, transaction id) stays. */
  simulateReboot(): void {
    this.#devices.clear();
  }
}
