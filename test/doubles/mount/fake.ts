import * as path from 'node:path';
import { ArmedFaults } from '../armed.ts';
import type { OpContext } from '../../../src/system/context.ts';
import { type FsStats, type FsType, type MkfsOptions, type MountEntry, type Mounter, MountError, SUPPORTED_FS } from '../../../src/mount/types.ts';


/** One recorded call on a fake: the method name and its string arguments in call order. */
export interface FakeCall<Op extends string = string> {
  op: Op;
  args: string[];
}

export interface Fault<Op extends string = string> {
  op: Op;
  /** Which calls fail: a string equal to any argument, a RegExp tested on each argument, or a predicate. */
  match?: string | RegExp | ((call: FakeCall<Op>) => boolean);
  /** The error thrown; a string is an errno name and becomes a MountError with that errno. */
  error: Error | string;
  /** How many matching calls fail before the fault disarms itself; default 1, Infinity for always. */
  times?: number;
}

function matches<Op extends string>(fault: Fault<Op>, call: FakeCall<Op>): boolean {
  if (fault.op !== call.op) return false;
  const m = fault.match;
  if (m === undefined) return true;
  if (typeof m === 'string') return call.args.includes(m);
  if (m instanceof RegExp) return call.args.some((a) => m.test(a));
  return m(call);
}

/** Shared by the fakes: records every call and fails the ones a test armed a fault for. */
export class FaultInjector<Op extends string> {
  readonly ops: FakeCall<Op>[] = [];
  readonly #armed = new ArmedFaults<Fault<Op>>();

  inject(fault: Fault<Op>): void { this.#armed.arm(fault); }

  /** Logs the call, then throws if an armed fault matches it. */
  enter(op: Op, ...args: string[]): void {
    const call: FakeCall<Op> = { op, args };
    this.ops.push(call);
    const fault = this.#armed.take((f) => matches(f, call));
    if (!fault) return;
    if (typeof fault.error !== 'string') throw fault.error;
    throw new MountError(`${op} ${args.join(' ')}: injected ${fault.error}`, { errno: fault.error });
  }

  clear(): void {
    this.ops.length = 0;
    this.#armed.clear();
  }
}

/**
 * What the fake mounter needs to know about block devices. A FakeDeviceMapper implements
 * it for /dev/mapper/NAME; SimpleBlockDevices is the stand-alone default.
 */
export interface BlockDeviceModel {
  /** Byte size of the device at `path`, undefined when there is no such device. */
  sizeOf(path: string): number | undefined;
  /** Called with +1 when a filesystem on the device gets mounted, -1 when its last mount goes. */
  adjustOpen(path: string, delta: number): void;
}

/** A map of device paths to sizes, with open counts. */
export class SimpleBlockDevices implements BlockDeviceModel {
  readonly #sizes = new Map<string, number>();
  readonly #open = new Map<string, number>();

  add(devPath: string, sizeBytes: number): void {
    this.#sizes.set(devPath, sizeBytes);
  }
  resize(devPath: string, sizeBytes: number): void {
    if (!this.#sizes.has(devPath)) throw new Error(`no device ${devPath}`);
    this.#sizes.set(devPath, sizeBytes);
  }
  /** Removing an open device fails EBUSY, as the kernel refuses to remove a device in use. */
  remove(devPath: string): void {
    if (this.openCount(devPath) > 0) throw new MountError(`${devPath} is open`, { errno: 'EBUSY' });
    this.#sizes.delete(devPath);
  }
  openCount(devPath: string): number {
    return this.#open.get(devPath) ?? 0;
  }
  sizeOf(devPath: string): number | undefined {
    return this.#sizes.get(devPath);
  }
  adjustOpen(devPath: string, delta: number): void {
    this.#open.set(devPath, this.openCount(devPath) + delta);
  }
}

export type FakeMountOp =
  | 'mount' | 'bindMount' | 'unmount' | 'findMount' | 'mountsOf' | 'detectFs' | 'probe' | 'mkfs'
  | 'growFs' | 'checkFs' | 'fsStats' | 'blockSize';

/** A filesystem the fake "wrote" onto a device with mkfs. */
export interface FakeFilesystem {
  fsType: FsType;
  sizeBytes: number;
  usedBytes: number;
  usedInodes: number;
}

interface FakeMount {
  entry: MountEntry;
  /** Device whose filesystem this mount (or bind of it) pins; undefined for binds of other things. */
  device?: string;
}

/** ext4's default bytes-per-inode ratio; good enough for both filesystems in a fake. */
const BYTES_PER_INODE = 16384;

function fail(errno: string, message: string, exitCode?: number): MountError {
  return new MountError(message, { errno, exitCode });
}

function isUnder(p: string, dir: string): boolean {
  return p === dir || p.startsWith(dir === '/' ? '/' : `${dir}/`);
}

/** Per-mount flags as mountinfo would list them: ro/rw first, helper-only words dropped. */
function mountFlags(options: readonly string[], forceRo = false): string[] {
  const rest = options.filter((o) => !['ro', 'rw', 'defaults', 'bind', 'remount'].includes(o));
  return [forceRo || options.includes('ro') ? 'ro' : 'rw', ...rest];
}

/**
 * In-memory Mounter. Targets and bind sources are not checked for existence: any path is
 * accepted, so tests need not create directories (node code that mkdirs real paths works
 * unchanged). Devices must exist in the BlockDeviceModel. A device counts as open once
 * while any mount of its filesystem exists (binds included), like a kernel superblock.
 */
export class FakeMounter implements Mounter {
  readonly devices: BlockDeviceModel;
  readonly #faults = new FaultInjector<FakeMountOp>();
  readonly #mounts: FakeMount[] = [];
  readonly #filesystems = new Map<string, FakeFilesystem>();
  /** Filesystems of types the driver does not mount, put there by a test (blkid sees them, probe does not). */
  readonly #foreign = new Map<string, string>();
  readonly #majorMinor = new Map<string, string>();
  readonly #sbRefs = new Map<string, number>();

  constructor(opts: { devices?: BlockDeviceModel } = {}) {
    this.devices = opts.devices ?? new SimpleBlockDevices();
  }

  /** Every call, in order, with its string arguments (options joined by commas). */
  get ops(): readonly FakeCall<FakeMountOp>[] {
    return this.#faults.ops;
  }
  /** Arms a fault, e.g. `{ op: 'mkfs', error: 'EIO' }` makes the next mkfs fail. */
  inject(fault: Fault<FakeMountOp>): void {
    this.#faults.inject(fault);
  }
  /** Adds a device to the default model; not available with a custom model. */
  addDevice(devPath: string, sizeBytes: number): void {
    if (!(this.devices instanceof SimpleBlockDevices)) throw new Error('addDevice needs the default SimpleBlockDevices model');
    this.devices.add(devPath, sizeBytes);
  }
  /**
   * Puts a mount the driver did not make into the table, as the node's own would be (/proc, a
   * user's tmpfs, another driver's volume). It is unmounted like any other, so a test sees if it goes.
   */
  addNodeMount(entry: Pick<MountEntry, 'target' | 'source' | 'fsType'> & Partial<MountEntry>): void {
    this.#mounts.push({ entry: { options: ['rw'], majorMinor: '0:99', root: '/', ...structuredClone(entry), target: path.resolve(entry.target) } });
  }
  /** Snapshot of the mount table, oldest first. */
  mounts(): MountEntry[] {
    return this.#mounts.map((m) => structuredClone(m.entry));
  }
  filesystem(device: string): FakeFilesystem | undefined {
    const fs = this.#filesystems.get(device);
    return fs && { ...fs };
  }
  /** Puts a filesystem the driver does not mount (btrfs, swap, ...) on the device, as a restore of one would hold; mkfs replaces it. */
  addForeignFilesystem(device: string, fsType: string): void {
    this.#foreign.set(device, fsType);
  }
  /** Sets what fsStats reports as used for the filesystem mounted at (or containing) `target`. */
  setUsage(target: string, usedBytes: number, usedInodes: number): void {
    const fs = this.#fsAt(path.resolve(target));
    fs.usedBytes = usedBytes;
    fs.usedInodes = usedInodes;
  }

  #deviceSize(device: string): number {
    const size = this.devices.sizeOf(device);
    if (size === undefined) throw fail('ENOENT', `${device}: special device does not exist`, 32);
    return size;
  }
  #majorMinorOf(device: string): string {
    let mm = this.#majorMinor.get(device);
    if (mm === undefined) {
      mm = `253:${this.#majorMinor.size}`;
      this.#majorMinor.set(device, mm);
    }
    return mm;
  }
  #top(target: string): FakeMount | undefined {
    return this.#mounts.findLast((m) => m.entry.target === target);
  }
  /** The mount whose target is the longest prefix of `p`. */
  #covering(p: string): FakeMount | undefined {
    let best: FakeMount | undefined;
    for (const m of this.#mounts) {
      if (isUnder(p, m.entry.target) && (!best || m.entry.target.length >= best.entry.target.length)) best = m;
    }
    return best;
  }
  #fsAt(p: string): FakeFilesystem {
    const m = this.#covering(p);
    const fs = m?.device === undefined ? undefined : this.#filesystems.get(m.device);
    if (!fs) throw fail('ENOENT', `${p}: not on a filesystem mounted by the fake`);
    return fs;
  }
  #pin(device: string, delta: 1 | -1): void {
    const before = this.#sbRefs.get(device) ?? 0;
    this.#sbRefs.set(device, before + delta);
    if (before === 0 && delta === 1) this.devices.adjustOpen(device, 1);
    if (before === 1 && delta === -1) this.devices.adjustOpen(device, -1);
  }
  #supported(fsType: string, op: string): FsType {
    if (!(SUPPORTED_FS as readonly string[]).includes(fsType)) {
      throw fail('EINVAL', `${op}: unsupported filesystem type ${JSON.stringify(fsType)} (supported: ${SUPPORTED_FS.join(', ')})`);
    }
    return fsType as FsType;
  }

  async mount(_ctx: OpContext, source: string, target: string, fsType: string, options: readonly string[]): Promise<void> {
    this.#faults.enter('mount', source, target, fsType, options.join(','));
    const t = path.resolve(target);
    this.#deviceSize(source);
    if (this.#top(t)) throw fail('EBUSY', `mount ${source} ${t}: target is busy (already a mount point)`, 32);
    const fs = this.#filesystems.get(source);
    if (!fs || fs.fsType !== fsType) {
      throw fail('EINVAL', `mount ${source} ${t}: wrong fs type, bad option, bad superblock (have ${fs?.fsType ?? 'none'}, asked ${fsType})`, 32);
    }
    this.#mounts.push({
      entry: { target: t, source, fsType, options: mountFlags(options), majorMinor: this.#majorMinorOf(source), root: '/' },
      device: source,
    });
    this.#pin(source, 1);
  }

  async bindMount(_ctx: OpContext, source: string, target: string, options: readonly string[]): Promise<void> {
    this.#faults.enter('bindMount', source, target, options.join(','));
    const t = path.resolve(target);
    if (this.#top(t)) throw fail('EBUSY', `mount --bind ${source} ${t}: target is busy (already a mount point)`, 32);
    const s = path.resolve(source);
    let mount: FakeMount;
    if (this.devices.sizeOf(source) !== undefined) {
      // A device node lives on devtmpfs: the bind shows devtmpfs, not the device, as the kernel does.
      mount = { entry: { target: t, source: 'udev', fsType: 'devtmpfs', options: mountFlags(options), majorMinor: '0:5', root: s.replace(/^\/dev/, '') || '/' } };
    } else {
      const parent = this.#covering(s);
      if (parent) {
        const rel = path.relative(parent.entry.target, s);
        const root = path.posix.join(parent.entry.root, rel);
        const ro = parent.entry.options.includes('ro');
        mount = { entry: { ...structuredClone(parent.entry), target: t, root, options: mountFlags(options, ro) }, device: parent.device };
      } else {
        mount = { entry: { target: t, source: 'rootfs', fsType: 'rootfs', options: mountFlags(options), majorMinor: '0:0', root: s } };
      }
    }
    this.#mounts.push(mount);
    if (mount.device !== undefined) this.#pin(mount.device, 1);
  }

  async unmount(_ctx: OpContext, target: string): Promise<void> {
    this.#faults.enter('unmount', target);
    const t = path.resolve(target);
    const m = this.#top(t);
    if (!m) throw fail('EINVAL', `umount ${t}: not mounted`, 32);
    if (this.#mounts.some((o) => o.entry.target !== t && isUnder(o.entry.target, t))) {
      throw fail('EBUSY', `umount ${t}: target is busy (submounts)`, 32);
    }
    this.#mounts.splice(this.#mounts.lastIndexOf(m), 1);
    if (m.device !== undefined) this.#pin(m.device, -1);
  }

  async findMount(_ctx: OpContext, target: string): Promise<MountEntry | undefined> {
    this.#faults.enter('findMount', target);
    const m = this.#top(path.resolve(target));
    return m && structuredClone(m.entry);
  }

  async mountsOf(_ctx: OpContext, device: string): Promise<MountEntry[]> {
    this.#faults.enter('mountsOf', device);
    const exists = this.devices.sizeOf(device) !== undefined;
    const mm = exists ? this.#majorMinorOf(device) : undefined;
    return this.#mounts
      .filter((m) => (mm !== undefined ? m.entry.majorMinor === mm : m.entry.source === device))
      .map((m) => structuredClone(m.entry));
  }

  async mountAtAndOf(ctx: OpContext, target: string, device: string): Promise<{ top: MountEntry | undefined; ofDevice: MountEntry[] }> {
    const top = await this.findMount(ctx, target);
    return { top, ofDevice: top ? await this.mountsOf(ctx, device) : [] };
  }

  async detectFs(_ctx: OpContext, device: string): Promise<string | undefined> {
    this.#faults.enter('detectFs', device);
    this.#deviceSize(device);
    return this.#filesystems.get(device)?.fsType ?? this.#foreign.get(device);
  }

  async probe(_ctx: OpContext, device: string): Promise<{ fsType: FsType; sizeBytes: number } | undefined> {
    this.#faults.enter('probe', device);
    this.#deviceSize(device);
    const fs = this.#filesystems.get(device);
    return fs && { fsType: fs.fsType, sizeBytes: fs.sizeBytes };
  }

  /** Logged as `mkfs DEVICE TYPE [zeroed] [extra args...]`. */
  async mkfs(_ctx: OpContext, device: string, fsType: FsType, opts: MkfsOptions = {}): Promise<void> {
    this.#faults.enter('mkfs', device, fsType, ...(opts.zeroed ? ['zeroed'] : []), ...(opts.extraArgs ?? []));
    const type = this.#supported(fsType, 'mkfs');
    const size = this.#deviceSize(device);
    if ((this.#sbRefs.get(device) ?? 0) > 0) throw fail('EBUSY', `mkfs ${device}: device is mounted; will not make a filesystem here`, 1);
    this.#foreign.delete(device);
    this.#filesystems.set(device, { fsType: type, sizeBytes: size, usedBytes: 0, usedInodes: 0 });
  }

  async growFs(_ctx: OpContext, device: string, mountPoint: string, fsType: string): Promise<void> {
    this.#faults.enter('growFs', device, mountPoint, fsType);
    this.#supported(fsType, 'growFs');
    const size = this.#deviceSize(device);
    const fs = this.#filesystems.get(device);
    if (!fs || fs.fsType !== fsType) throw fail('EINVAL', `growFs ${device}: no ${fsType} filesystem on the device`, 1);
    if (fsType === 'xfs' && this.#top(path.resolve(mountPoint))?.device !== device) {
      throw fail('EINVAL', `xfs_growfs ${mountPoint}: is not a mounted XFS filesystem`, 1);
    }
    fs.sizeBytes = size;
  }

  async checkFs(_ctx: OpContext, device: string, fsType: string): Promise<void> {
    this.#faults.enter('checkFs', device, fsType);
    this.#supported(fsType, 'checkFs');
    this.#deviceSize(device);
    const fs = this.#filesystems.get(device);
    if (!fs || fs.fsType !== fsType) throw fail('EINVAL', `checkFs ${device}: bad superblock, no ${fsType} filesystem`, 8);
    if (fsType === 'ext4' && (this.#sbRefs.get(device) ?? 0) > 0) throw fail('EBUSY', `fsck.ext4 ${device}: is mounted, cannot continue`, 8);
  }

  async fsStats(_ctx: OpContext, p: string): Promise<FsStats> {
    this.#faults.enter('fsStats', p);
    const fs = this.#fsAt(path.resolve(p));
    const totalInodes = Math.floor(fs.sizeBytes / BYTES_PER_INODE);
    const usedBytes = Math.min(fs.usedBytes, fs.sizeBytes);
    const usedInodes = Math.min(fs.usedInodes, totalInodes);
    return {
      totalBytes: fs.sizeBytes, usedBytes, availableBytes: fs.sizeBytes - usedBytes,
      totalInodes, usedInodes, freeInodes: totalInodes - usedInodes,
    };
  }

  async blockSize(_ctx: OpContext, device: string): Promise<number> {
    this.#faults.enter('blockSize', device);
    return this.#deviceSize(device);
  }
}
