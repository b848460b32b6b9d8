import type { OpContext } from '../../system/context.ts';
import { sleep } from '../../system/delay.ts';
import { parseAs, parseLiveTable, parseThinPoolStatus, parseThinPoolTable, parseThinStatus, parseThinTable } from '../parse.ts';
import { thinIdsFromMetadata } from '../thin-ls.ts';
import {
  DmError, isDmError, type DeviceMapper, type DmDeviceInfo, type RemoveOptions, type ThinIds, type ThinPoolStatus,
  type ThinPoolTable, type ThinStatus, type ThinTable,
} from '../types.ts';
import {
  decodeNameList, decodeTargets, decodeVersions, encodeMessage, encodeTargets, Flag, type Header, type ListedDevice,
  parseTableText, targetsText, type TargetSpec, UDEV_FLAGS_SHIFT, UDEV_PRIMARY_SOURCE_FLAG,
} from './abi.ts';
import { type Answer, Control } from './control.ts';
import { UDEV_CONTROL, udevManagesNodes, type UdevSetting } from '../udev.ts';
import { ensureNode, removeNode } from './nodes.ts';
import { waitEvent } from './wait.ts';

export interface IoctlOptions {
  /** Whether udev manages /dev/mapper nodes; 'auto' (default): its control socket exists and DM_DISABLE_UDEV is unset. */
  udev?: UdevSetting;
  udevControlPath?: string;
  /** Upper bound for one blocking ioctl, further capped by the caller's deadline. Default 30 s. */
  maxMs?: number;
  controlPath?: string;
  /** Where device nodes go; default /dev/mapper. */
  mapperDir?: string;
  /** How long to wait for udev's node before making it; default 10 s. */
  udevWaitMs?: number;
}

/** libdevmapper's remove --retry: 25 tries, 200 ms apart, while the device is busy. */
const REMOVE_TRIES = 25;
const REMOVE_PAUSE_MS = 200;
/** Answers that carry a listing start here and grow on DM_BUFFER_FULL_FLAG. */
const LIST_BUFFER = 16 << 10;

function checkName(name: string, what = 'device name'): void {
  if (name === '' || Buffer.byteLength(name) > 127 || name.includes('/') || /\s/.test(name)) {
    throw new DmError('invalid', `invalid ${what} ${JSON.stringify(name)}`);
  }
}

function specsOf(table: string): TargetSpec[] {
  try {
    return parseTableText(table);
  } catch (err) {
    throw new DmError('invalid', `invalid table ${JSON.stringify(table)}: ${(err as Error).message}`);
  }
}

function infoOf(h: Header): DmDeviceInfo {
  return {
    name: h.name, major: h.major, minor: h.minor,
    live: (h.flags & Flag.ACTIVE_PRESENT) !== 0,
    inactiveTable: (h.flags & Flag.INACTIVE_PRESENT) !== 0,
    suspended: (h.flags & Flag.SUSPEND) !== 0,
    readOnly: (h.flags & Flag.READONLY) !== 0,
    openCount: h.openCount, segments: h.targetCount, events: h.eventNr, uuid: h.uuid,
  };
}

/**
 * DeviceMapper over the kernel's dm ioctls on /dev/mapper/control, in process: no command per
 * step. Each call does what the matching dmsetup command does (create = DEV_CREATE +
 * TABLE_LOAD + resume, undone on failure; the /dev/mapper node kept as libdevmapper keeps it).
 */
export class IoctlDeviceMapper implements DeviceMapper {
  readonly #control: Control;
  readonly #udev: UdevSetting;
  readonly #udevControl: string;
  readonly #mapperDir: string;
  readonly #udevWaitMs: number;

  constructor(opts: IoctlOptions = {}) {
    this.#control = new Control(opts.controlPath ?? '/dev/mapper/control', opts.maxMs ?? 30_000);
    this.#udev = opts.udev ?? 'auto';
    this.#udevControl = opts.udevControlPath ?? UDEV_CONTROL;
    this.#mapperDir = opts.mapperDir ?? '/dev/mapper';
    this.#udevWaitMs = opts.udevWaitMs ?? 10_000;
  }

  #udevPresent(): Promise<boolean> {
    return udevManagesNodes(this.#udev, this.#udevControl);
  }

  /** libdevmapper's cookie without a semaphore: flags for udev's rules, nothing to wait on. */
  async #cookie(): Promise<number> {
    return (await this.#udevPresent()) ? (UDEV_PRIMARY_SOURCE_FLAG << UDEV_FLAGS_SHIFT) >>> 0 : 0;
  }

  close(): Promise<void> {
    return this.#control.close();
  }

  async version(ctx: OpContext): Promise<string> {
    const { header } = await this.#control.call(ctx, 'VERSION');
    return `Driver version: ${header.version.join('.')}`;
  }

  async targets(ctx: OpContext): Promise<string[]> {
    const a = await this.#control.call(ctx, 'LIST_VERSIONS', { size: LIST_BUFFER });
    return decodeVersions(a.buf, a.header).map((t) => t.name);
  }

  async create(ctx: OpContext, name: string, table: string, opts: { readOnly?: boolean; uuid?: string } = {}): Promise<void> {
    checkName(name);
    if (opts.uuid !== undefined) checkName(opts.uuid, 'uuid');
    const specs = specsOf(table);
    await this.#control.call(ctx, 'DEV_CREATE', { name, uuid: opts.uuid });
    try {
      await this.#load(ctx, name, specs, opts.readOnly);
      await this.resume(ctx, name);
    } catch (err) {
      // As libdevmapper does: a create whose table did not go live leaves no device behind.
      await this.#control.call(ctx, 'DEV_REMOVE', { name }).catch(() => undefined);
      throw err;
    }
  }

  #load(ctx: OpContext, name: string, specs: TargetSpec[], readOnly = false): Promise<Answer> {
    return this.#control.call(ctx, 'TABLE_LOAD', {
      name, targetCount: specs.length, flags: readOnly ? Flag.READONLY : 0, payload: encodeTargets(specs),
    });
  }

  async reload(ctx: OpContext, name: string, table: string): Promise<void> {
    checkName(name);
    await this.#load(ctx, name, specsOf(table));
  }

  async remove(ctx: OpContext, name: string, opts: RemoveOptions = {}): Promise<void> {
    checkName(name);
    const before = await this.info(ctx, name);
    if (opts.force && before && before.openCount > 0) await this.#errorTable(ctx, name);
    const flags = opts.deferred ? Flag.DEFERRED_REMOVE : 0;
    for (let attempt = 1; ; attempt++) {
      try {
        const { header } = await this.#control.call(ctx, 'DEV_REMOVE', { name, flags, eventNr: await this.#cookie() });
        // A deferred remove of an open device only marks it; its node stays until it goes.
        if (!(header.flags & Flag.DEFERRED_REMOVE) && before) await removeNode(this.devicePath(name), before.major, before.minor);
        return;
      } catch (err) {
        if (!(opts.retry && isDmError(err, 'busy') && attempt < REMOVE_TRIES)) throw err;
        if (ctx.deadline !== undefined && Date.now() + REMOVE_PAUSE_MS >= ctx.deadline) throw err;
        await sleep(REMOVE_PAUSE_MS);
      }
    }
  }

  /** dmsetup remove --force: an open device first gets a table that fails all I/O. */
  async #errorTable(ctx: OpContext, name: string): Promise<void> {
    const live = decodeTargets(...bufHeader(await this.#control.call(ctx, 'TABLE_STATUS', { name, flags: Flag.STATUS_TABLE, size: LIST_BUFFER })));
    const length = live.reduce((n, s) => Math.max(n, s.start + s.length), 0);
    if (length === 0) return;
    await this.#load(ctx, name, [{ start: 0, length, type: 'error', params: '' }]);
    await this.resume(ctx, name);
  }

  async suspend(ctx: OpContext, name: string, opts: { noFlush?: boolean } = {}): Promise<void> {
    checkName(name);
    await this.#control.call(ctx, 'DEV_SUSPEND', { name, flags: Flag.SUSPEND | (opts.noFlush ? Flag.NOFLUSH : 0) });
  }

  async resume(ctx: OpContext, name: string): Promise<void> {
    checkName(name);
    const udev = await this.#udevPresent();
    const { header } = await this.#control.call(ctx, 'DEV_SUSPEND', { name, eventNr: await this.#cookie() });
    await ensureNode(this.devicePath(name), header.major, header.minor, { udev, udevWaitMs: this.#udevWaitMs });
  }

  async message(ctx: OpContext, pool: string, msg: string): Promise<void> {
    checkName(pool, 'pool name');
    if (msg.trim() === '') throw new DmError('invalid', `invalid pool message ${JSON.stringify(msg)}`);
    await this.#control.call(ctx, 'TARGET_MSG', { name: pool, payload: encodeMessage(0, msg) });
  }

  async info(ctx: OpContext, name: string): Promise<DmDeviceInfo | undefined> {
    checkName(name);
    try {
      return infoOf((await this.#control.call(ctx, 'DEV_STATUS', { name })).header);
    } catch (err) {
      if (isDmError(err, 'not_found')) return undefined;
      throw err;
    }
  }

  async isLive(ctx: OpContext, name: string): Promise<boolean> {
    return (await this.info(ctx, name))?.live ?? false;
  }

  async liveThinSectors(ctx: OpContext, name: string): Promise<number | undefined> {
    checkName(name);
    try {
      return (await this.thinTable(ctx, name)).lengthSectors;
    } catch (err) {
      if (isDmError(err, 'not_found')) return undefined;
      throw err;
    }
  }

  async #list(ctx: OpContext): Promise<ListedDevice[]> {
    const a = await this.#control.call(ctx, 'LIST_DEVICES', { size: LIST_BUFFER });
    return decodeNameList(a.buf, a.header);
  }

  /** Each listed device's answer; a device removed since the listing is left out, as dmsetup does. */
  async #each<T>(ctx: OpContext, fn: (d: ListedDevice) => Promise<T | undefined>): Promise<Map<string, T>> {
    const out = new Map<string, T>();
    for (const d of await this.#list(ctx)) {
      try {
        const v = await fn(d);
        if (v !== undefined) out.set(d.name, v);
      } catch (err) {
        if (!isDmError(err, 'not_found')) throw err;
      }
    }
    return out;
  }

  async infoAll(ctx: OpContext): Promise<DmDeviceInfo[]> {
    const infos = await this.#each(ctx, async (d) => infoOf((await this.#control.call(ctx, 'DEV_STATUS', { name: d.name })).header));
    return [...infos.values()];
  }

  /** A device's live table (`table`) or status, as the text dmsetup prints. */
  async #targets(ctx: OpContext, name: string, table: boolean): Promise<TargetSpec[]> {
    const a = await this.#control.call(ctx, 'TABLE_STATUS', { name, flags: table ? Flag.STATUS_TABLE : 0, size: LIST_BUFFER });
    return decodeTargets(a.buf, a.header);
  }

  async #text(ctx: OpContext, name: string, table: boolean): Promise<string> {
    return targetsText(await this.#targets(ctx, name, table));
  }

  #thinAll<T>(ctx: OpContext, table: boolean, parse: (text: string) => T): Promise<Map<string, T>> {
    return this.#each(ctx, async (d) => {
      const thin = (await this.#targets(ctx, d.name, table)).find((s) => s.type === 'thin');
      return thin ? parseAs(d.name, targetsText([thin]), parse) : undefined;
    });
  }

  thinStatusAll(ctx: OpContext): Promise<Map<string, ThinStatus>> {
    return this.#thinAll(ctx, false, parseThinStatus);
  }

  thinTableAll(ctx: OpContext): Promise<Map<string, ThinTable>> {
    return this.#thinAll(ctx, true, parseThinTable);
  }

  async poolStatus(ctx: OpContext, pool: string): Promise<ThinPoolStatus> {
    checkName(pool, 'pool name');
    return parseAs(pool, await this.#text(ctx, pool, false), parseThinPoolStatus);
  }

  async thinStatus(ctx: OpContext, name: string): Promise<ThinStatus> {
    checkName(name);
    return parseAs(name, await this.#text(ctx, name, false), parseThinStatus);
  }

  async poolTable(ctx: OpContext, pool: string): Promise<ThinPoolTable> {
    checkName(pool, 'pool name');
    return parseAs(pool, await this.#text(ctx, pool, true), parseThinPoolTable);
  }

  async thinTable(ctx: OpContext, name: string): Promise<ThinTable> {
    checkName(name);
    return parseLiveTable(name, await this.#text(ctx, name, true), parseThinTable);
  }

  devicePath(name: string): string {
    return `${this.#mapperDir}/${name}`;
  }

  waitEvent(ctx: OpContext, name: string, eventNr: number): Promise<number> {
    checkName(name);
    return waitEvent(ctx, this.#control.path, name, eventNr);
  }

  thinIds(ctx: OpContext, pool: string, metadataDev?: string): Promise<ThinIds> {
    checkName(pool, 'pool name');
    return thinIdsFromMetadata(ctx, this, pool, metadataDev);
  }
}

function bufHeader(a: Answer): [Buffer, Header] {
  return [a.buf, a.header];
}
