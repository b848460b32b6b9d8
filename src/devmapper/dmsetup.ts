import type { OpContext } from '../system/context.ts';
import { run } from '../system/exec.ts';
import { classifyDmsetupError, onlyVanished } from './errors.ts';
import {
  INFO_FIELDS, INFO_SEPARATOR, parseInfoRows, parseAs, parseMultiDevice, parseTargets,
  parseLiveTable, parseThinPoolStatus, parseThinPoolTable, parseThinStatus, parseThinTable,
} from './parse.ts';
import {
  DmError, type DeviceMapper, type DmDeviceInfo, type RemoveOptions, type ThinPoolStatus,
  type ThinIds, type ThinPoolTable, type ThinStatus, type ThinTable,
} from './types.ts';
import { nodeDevNo } from '../system/blockdev.ts';
import { dmNamesInSysfs, liveSectorsInSysfs } from './sysfs.ts';
import { thinIdsFromMetadata } from './thin-ls.ts';
import { UDEV_CONTROL, udevManagesNodes, type UdevSetting } from './udev.ts';

export interface DmsetupOptions {
  /** dmsetup executable; default 'dmsetup' from PATH. */
  binary?: string;
  /**
   * Whether udev manages /dev/mapper nodes. Without udev, dmsetup must create the nodes itself
   * (DM_DISABLE_UDEV=1) or `create` fails waiting for a node that never comes. 'auto' (default)
   * decides per call: udev's control socket exists and DM_DISABLE_UDEV is unset.
   */
  udev?: UdevSetting;
  /** Upper bound for one dmsetup run, further capped by the caller's deadline. Default 30 s. */
  maxMs?: number;
  /** Where 'auto' looks for udev; default /run/udev/control. */
  udevControlPath?: string;
  /** Where sysfs is mounted; default /sys. */
  sysfs?: string;
}

/** The kernel's DM_NAME_LEN is 128 including the terminating NUL. */
const MAX_NAME = 127;

function checkName(name: string, what = 'device name'): void {
  // A leading '-' would be read as a dmsetup option; '/' is not allowed in a dm name.
  if (name === '' || name.length > MAX_NAME || name.startsWith('-') || name.includes('/') || /[\s]/.test(name)) {
    throw new DmError('invalid', `invalid ${what} ${JSON.stringify(name)}`);
  }
}

function infoArgs(): string[] {
  return ['info', '-c', '--noheadings', '--separator', INFO_SEPARATOR, '-o', INFO_FIELDS];
}

/** dmsetup subcommands that only read. */
const QUERIES = new Set(['version', 'targets', 'info', 'status', 'table', 'ls', 'deps', 'wait']);

/** DeviceMapper over the dmsetup tool: one dmsetup run per call, no retries of its own. */
export class DmsetupDeviceMapper implements DeviceMapper {
  readonly #binary: string;
  readonly #udev: UdevSetting;
  readonly #maxMs: number;
  readonly #udevControl: string;
  readonly #sysfs: string;

  constructor(opts: DmsetupOptions = {}) {
    this.#binary = opts.binary ?? 'dmsetup';
    this.#udev = opts.udev ?? 'auto';
    this.#maxMs = opts.maxMs ?? 30_000;
    this.#udevControl = opts.udevControlPath ?? UDEV_CONTROL;
    this.#sysfs = opts.sysfs ?? '/sys';
  }

  /** Runs dmsetup; every failure becomes a DmError. `tolerateVanished` keeps listings usable under churn. */
  async #dmsetup(ctx: OpContext, args: string[], tolerateVanished = false, maxMs = this.#maxMs): Promise<string> {
    const env: Record<string, string> = (await udevManagesNodes(this.#udev, this.#udevControl)) ? {} : { DM_DISABLE_UDEV: '1' };
    try {
      return (await run(ctx, this.#binary, args, { maxMs, env, query: QUERIES.has(args[0]!) })).stdout;
    } catch (err) {
      if (tolerateVanished && onlyVanished(err)) return err.stdout;
      throw classifyDmsetupError(err, `dmsetup ${args.join(' ')}`, ctx.signal?.aborted ?? false);
    }
  }

  async version(ctx: OpContext): Promise<string> {
    return (await this.#dmsetup(ctx, ['version'])).trim();
  }

  async targets(ctx: OpContext): Promise<string[]> {
    const out = await this.#dmsetup(ctx, ['targets']);
    return parseAs('dmsetup targets', out, parseTargets);
  }

  async create(ctx: OpContext, name: string, table: string, opts: { readOnly?: boolean; uuid?: string } = {}): Promise<void> {
    checkName(name);
    const args = ['create', name, '--table', table];
    if (opts.readOnly) args.push('--readonly');
    if (opts.uuid !== undefined) {
      checkName(opts.uuid, 'uuid');
      args.push('--uuid', opts.uuid);
    }
    await this.#dmsetup(ctx, args);
  }

  async reload(ctx: OpContext, name: string, table: string): Promise<void> {
    checkName(name);
    await this.#dmsetup(ctx, ['reload', name, '--table', table]);
  }

  async remove(ctx: OpContext, name: string, opts: RemoveOptions = {}): Promise<void> {
    checkName(name);
    const args = ['remove'];
    if (opts.retry) args.push('--retry');
    if (opts.force) args.push('--force');
    if (opts.deferred) args.push('--deferred');
    args.push(name);
    await this.#dmsetup(ctx, args);
  }

  async suspend(ctx: OpContext, name: string, opts: { noFlush?: boolean } = {}): Promise<void> {
    checkName(name);
    await this.#dmsetup(ctx, opts.noFlush ? ['suspend', '--noflush', name] : ['suspend', name]);
  }

  async resume(ctx: OpContext, name: string): Promise<void> {
    checkName(name);
    await this.#dmsetup(ctx, ['resume', name]);
  }

  async message(ctx: OpContext, pool: string, msg: string): Promise<void> {
    checkName(pool, 'pool name');
    if (msg.trim() === '' || msg.startsWith('-')) throw new DmError('invalid', `invalid pool message ${JSON.stringify(msg)}`);
    await this.#dmsetup(ctx, ['message', pool, '0', msg]);
  }

  async info(ctx: OpContext, name: string): Promise<DmDeviceInfo | undefined> {
    checkName(name);
    let out: string;
    try {
      out = await this.#dmsetup(ctx, [...infoArgs(), name]);
    } catch (err) {
      if (err instanceof DmError && err.kind === 'not_found') return undefined;
      throw err;
    }
    const rows = parseAs(name, out, parseInfoRows);
    return rows.find((r) => r.name === name) ?? rows[0];
  }

  /**
   * Sysfs answers both ways without a dmsetup run: a live device's node leads to its disk (a
   * snapshot of a mounted volume), and a name no dm disk carries has no live table (a restore
   * from a snapshot, which never has one). A missing node alone proves nothing, and a listing
   * sysfs cannot give leaves the question to dmsetup.
   */
  async isLive(ctx: OpContext, name: string): Promise<boolean> {
    checkName(name);
    if (await this.#sectorsInSysfs(name) !== undefined) return true;
    const disks = await dmNamesInSysfs(this.#sysfs);
    if (disks && !disks.has(name)) return false;
    return (await this.info(ctx, name))?.live ?? false;
  }

  /** As isLive, for expand: sysfs's size of a live device saves the `dmsetup table` run. */
  async liveThinSectors(ctx: OpContext, name: string): Promise<number | undefined> {
    checkName(name);
    const sectors = await this.#sectorsInSysfs(name);
    if (sectors !== undefined) return sectors;
    try {
      return (await this.thinTable(ctx, name)).lengthSectors;
    } catch (err) {
      if (err instanceof DmError && err.kind === 'not_found') return undefined;
      throw err;
    }
  }

  async #sectorsInSysfs(name: string): Promise<number | undefined> {
    const dev = await nodeDevNo(this.devicePath(name));
    return dev ? liveSectorsInSysfs(dev, name, this.#sysfs) : undefined;
  }

  async infoAll(ctx: OpContext): Promise<DmDeviceInfo[]> {
    const out = await this.#dmsetup(ctx, infoArgs(), true);
    return parseAs('dmsetup info', out, parseInfoRows);
  }

  async thinStatusAll(ctx: OpContext): Promise<Map<string, ThinStatus>> {
    const out = await this.#dmsetup(ctx, ['status', '--target', 'thin'], true);
    return this.#eachDevice(out, parseThinStatus);
  }

  async thinTableAll(ctx: OpContext): Promise<Map<string, ThinTable>> {
    const out = await this.#dmsetup(ctx, ['table', '--target', 'thin'], true);
    return this.#eachDevice(out, parseThinTable);
  }

  #eachDevice<T>(out: string, parse: (text: string) => T): Map<string, T> {
    const lines = parseAs('dmsetup listing', out, parseMultiDevice);
    const result = new Map<string, T>();
    for (const [name, line] of lines) result.set(name, parseAs(name, line, parse));
    return result;
  }

  async poolStatus(ctx: OpContext, pool: string): Promise<ThinPoolStatus> {
    checkName(pool, 'pool name');
    return parseAs(pool, await this.#dmsetup(ctx, ['status', pool]), parseThinPoolStatus);
  }

  async thinStatus(ctx: OpContext, name: string): Promise<ThinStatus> {
    checkName(name);
    return parseAs(name, await this.#dmsetup(ctx, ['status', name]), parseThinStatus);
  }

  async poolTable(ctx: OpContext, pool: string): Promise<ThinPoolTable> {
    checkName(pool, 'pool name');
    return parseAs(pool, await this.#dmsetup(ctx, ['table', pool]), parseThinPoolTable);
  }

  async thinTable(ctx: OpContext, name: string): Promise<ThinTable> {
    checkName(name);
    return parseLiveTable(name, await this.#dmsetup(ctx, ['table', name]), parseThinTable);
  }

  devicePath(name: string): string {
    return `/dev/mapper/${name}`;
  }

  /**
   * `dmsetup wait NAME N`, which sleeps in DM_DEV_WAIT; the deadline or the signal kills it (a
   * killed process leaves nothing in the kernel), then `info` tells the new event number.
   */
  async waitEvent(ctx: OpContext, name: string, eventNr: number): Promise<number> {
    checkName(name);
    const now = (await this.info(ctx, name))?.events;
    if (now === undefined) throw new DmError('not_found', `waiting for an event on ${name}: no such device`);
    if (now !== eventNr) return now;
    const left = ctx.deadline === undefined ? 24 * 3600_000 : ctx.deadline - Date.now();
    if (ctx.signal?.aborted || left <= 0) throw new DmError('timeout', `waiting for an event on ${name}: ${ctx.signal?.aborted ? 'cancelled' : 'deadline passed'}`);
    await this.#dmsetup(ctx, ['wait', name, String(eventNr)], false, left);
    const after = (await this.info(ctx, name))?.events;
    if (after === undefined) throw new DmError('not_found', `waiting for an event on ${name}: the device went away`);
    return after;
  }

  thinIds(ctx: OpContext, pool: string, metadataDev?: string): Promise<ThinIds> {
    checkName(pool, 'pool name');
    return thinIdsFromMetadata(ctx, this, pool, metadataDev);
  }
}
