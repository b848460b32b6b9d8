import { mkdir } from 'node:fs/promises';
import type { NodeStageVolumeRequest__Output as StageReq } from '../csi/generated/csi/v1/NodeStageVolumeRequest.ts';
import type { VolumeCapability__Output } from '../csi/generated/csi/v1/VolumeCapability.ts';
import { alreadyExists, failedPrecondition, invalidArgument, notFound } from '../errors.ts';
import type { FsType, Mounter } from '../mount/types.ts';
import type { Devices } from '../pool/devices.ts';
import { toStatus } from '../status.ts';
import type { OpContext } from '../system/context.ts';
import type { DeviceRecord } from '../state/types.ts';
import { checkPath, checkUnderRoots } from './paths.ts';
import { placeholderAt, unmountOwn } from './guard.ts';
import type { TargetRecords } from './targets.ts';
import { describeMount, mountOwner } from '../mount/ownership.ts';
import { capabilityProblem, READ_ONLY_MODES, viewCapability, type CapabilityView } from '../volume/capability.ts';
import { accessOf, fsTypeOf } from '../volume/meta.ts';

export interface StageDeps {
  devices: Devices;
  mounter: Mounter;
  defaultFs: FsType;
  /** What publish created, so unpublish removes only that. */
  targets: TargetRecords;
  /** `--node-path-root`: staging and target paths must land under one of these (none: anywhere). */
  pathRoots: readonly string[];
}

/** Mount options: the CO's flags, ro for read-only modes, nouuid for xfs (a restored xfs shares its origin's UUID). */
export function stageOptions(fsType: string, flags: readonly string[], readOnly: boolean): string[] {
  const opts = [...flags];
  if (readOnly && !opts.includes('ro')) opts.push('ro');
  if (fsType === 'xfs' && !opts.includes('nouuid')) opts.push('nouuid');
  return opts;
}

/**
 * The filesystem on the volume, made when there is none. A device the kernel reports with no
 * block mapped reads zeros everywhere, so nothing can be on it and blkid is not asked; one that
 * holds data but no ext4/xfs superblock (a restore or clone of something else) is asked of
 * blkid, and anything it names there is never formatted over.
 */
async function ensureFilesystem(ctx: OpContext, d: StageDeps, device: string, wanted: FsType | '', rec: DeviceRecord) {
  const found = await d.mounter.probe(ctx, device);
  if (found) {
    if (wanted && found.fsType !== wanted) throw failedPrecondition(`volume ${rec.id} holds ${found.fsType}, ${wanted} was requested`);
    return found;
  }
  const zeroed = await d.devices.unwritten(ctx, rec);
  if (!zeroed) {
    const other = await d.mounter.detectFs(ctx, device);
    if (other) throw failedPrecondition(`volume ${rec.id} holds a ${other} filesystem, which this driver does not mount`);
  }
  const fsType = (wanted || fsTypeOf(rec) || d.defaultFs) as FsType;
  // mkfs writes new blocks: on a full pool they would wait in the kernel until no_space_timeout.
  await d.devices.pool.ensureNoFreeze(ctx, `formatting ${rec.id}`);
  // Only ext4 has tables to mark zeroed.
  await d.mounter.mkfs(ctx, device, fsType, { zeroed: zeroed && fsType === 'ext4' });
  return { fsType, sizeBytes: rec.sizeBytes };
}

/** The capability a stage or publish asks for, refused with INVALID_ARGUMENT when unsupported. */
export function requestedCapability(cap: VolumeCapability__Output): CapabilityView {
  const problem = capabilityProblem(cap);
  if (problem) throw invalidArgument(problem);
  return viewCapability(cap);
}

/** A volume is used the way it was created: block as block, mount as mount. */
export function checkAccess(rec: DeviceRecord, cap: CapabilityView): void {
  const accessType = accessOf(rec);
  if (accessType !== cap.accessType) throw failedPrecondition(`volume ${rec.id} is a ${accessType} volume, ${cap.accessType} access requested`);
}

/** The checks every node RPC on a staging or target path makes before it looks anything up. */
export async function nodePath(d: StageDeps, p: string, field: string): Promise<string> {
  const checked = checkPath(p, field);
  await checkUnderRoots(checked, d.pathRoots, field);
  return checked;
}

export async function stageVolume(ctx: OpContext, d: StageDeps, req: StageReq): Promise<void> {
  if (!req.volume_id) throw invalidArgument('volume_id is required');
  const staging = await nodePath(d, req.staging_target_path, 'staging_target_path');
  if (!req.volume_capability) throw invalidArgument('volume_capability is required');
  const cap = requestedCapability(req.volume_capability);
  const rec = await d.devices.get(req.volume_id);
  if (rec.kind !== 'volume') throw notFound(`volume ${req.volume_id} does not exist (it is a snapshot)`);
  checkAccess(rec, cap);
  if (cap.accessType === 'block') {
    await d.devices.activate(ctx, rec.id);
    return;
  }
  // Decided before the device is touched: a path holding anything but this volume is refused as it is.
  const owner = await mountOwner(ctx, d.mounter, staging, d.devices.devicePath(rec), 'mount').catch((err: unknown) => { throw toStatus(err, `reading the mount table for ${staging}`); });
  if (owner.kind === 'foreign') throw failedPrecondition(`staging_target_path ${staging} already has ${describeMount(owner.entry)} mounted, which is not volume ${rec.id}`);
  if (owner.kind === 'none') await placeholderAt(staging, 'staging_target_path');
  const device = await d.devices.activate(ctx, rec.id);
  try {
    if (owner.kind === 'ours') {
      const current = owner.entry;
      const ro = current.options.includes('ro');
      const wantRo = READ_ONLY_MODES.has(cap.mode) || cap.mountFlags.includes('ro');
      if (ro !== wantRo || (cap.fsType && current.fsType !== cap.fsType)) {
        throw alreadyExists(`volume ${rec.id} is already staged at ${staging} as ${current.fsType} ${ro ? 'read-only' : 'read-write'}, incompatible with the requested capability`);
      }
      return;
    }
    const fs = await ensureFilesystem(ctx, d, device, cap.fsType, rec);
    const grow = fs.sizeBytes < rec.sizeBytes && !READ_ONLY_MODES.has(cap.mode);
    if (grow) await d.devices.pool.ensureNoFreeze(ctx, `growing the filesystem of ${rec.id}`); // before the mount: a retry finds nothing half done
    await mkdir(staging, { recursive: true });
    await d.mounter.mount(ctx, device, staging, fs.fsType, stageOptions(fs.fsType, cap.mountFlags, READ_ONLY_MODES.has(cap.mode)));
    // A volume restored or cloned into a larger size carries its source's smaller filesystem.
    if (grow) await d.mounter.growFs(ctx, device, staging, fs.fsType);
  } catch (err) {
    throw toStatus(err, `staging ${rec.id} at ${staging}`);
  }
}

/** The volume's own record, or NOT_FOUND before anything on the node is touched. */
export async function knownVolume(d: StageDeps, volumeId: string): Promise<DeviceRecord> {
  const rec = await d.devices.find(volumeId);
  if (!rec || rec.kind !== 'volume') throw notFound(`volume ${volumeId} does not exist`);
  return rec;
}

export async function unstageVolume(ctx: OpContext, d: StageDeps, volumeId: string, stagingPath: string): Promise<void> {
  if (!volumeId) throw invalidArgument('volume_id is required');
  const staging = await nodePath(d, stagingPath, 'staging_target_path');
  const rec = await knownVolume(d, volumeId);
  const device = d.devices.devicePath(rec);
  // Block access mounts nothing at the staging path, so nothing there can be this volume's.
  await unmountOwn(ctx, d.mounter, staging, device, 'mount', 'staging_target_path');
  await refuseWhileInUse(ctx, d, rec, device);
  await d.devices.deactivate(ctx, rec.id);
}

/**
 * The device is not taken away while the mount table still shows its filesystem somewhere (an
 * unstage aimed at a path where it is not staged, or before its unpublish), nor a block device a
 * process holds open: the answer says where, and nothing is tried that would have to be undone.
 */
async function refuseWhileInUse(ctx: OpContext, d: StageDeps, rec: DeviceRecord, device: string): Promise<void> {
  const mounts = await d.mounter.mountsOf(ctx, device).catch((err: unknown) => { throw toStatus(err, `reading the mount table for ${device}`); });
  if (mounts.length > 0) throw failedPrecondition(`volume ${rec.id} is still mounted at ${mounts.map((m) => m.target).join(', ')}; unpublish and unstage it there`);
  if (accessOf(rec) !== 'block') return;
  // A bind of a device node neither opens the device nor names it by major:minor in the mount
  // table: the targets publish made are where it may still be bound.
  const published = (await d.targets.list().catch((err: unknown) => { throw toStatus(err, 'reading the publish records'); })).filter((t) => t.volumeId === rec.id);
  for (const t of published) {
    if ((await mountOwner(ctx, d.mounter, t.target, device, 'block')).kind === 'ours') throw failedPrecondition(`volume ${rec.id} is still published at ${t.target}; unpublish it first`);
  }
  const info = await d.devices.info(ctx, rec).catch((err: unknown) => { throw toStatus(err, `reading the state of ${rec.dmName}`); });
  if (info && info.openCount > 0) throw failedPrecondition(`volume ${rec.id} is open ${info.openCount} time(s); unpublish it first`);
}
