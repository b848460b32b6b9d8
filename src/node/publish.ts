import { lstat, mkdir, open, rm, rmdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { NodePublishVolumeRequest__Output as PublishReq } from '../csi/generated/csi/v1/NodePublishVolumeRequest.ts';
import { alreadyExists, failedPrecondition, invalidArgument } from '../errors.ts';
import { describeMount, mountOwner, type AccessKind } from '../mount/ownership.ts';
import { toStatus } from '../status.ts';
import type { OpContext } from '../system/context.ts';
import type { DeviceRecord } from '../state/types.ts';
import { type Placeholder, placeholderAt, unmountOwn } from './guard.ts';
import { READ_ONLY_MODES } from '../volume/capability.ts';
import { accessOf } from '../volume/meta.ts';
import { checkAccess, knownVolume, nodePath, requestedCapability, type StageDeps } from './stage.ts';

/** Refuses a target that holds anything but an absent path or an empty placeholder of the right kind. */
async function checkTarget(target: string, access: AccessKind): Promise<Placeholder> {
  const found = await placeholderAt(target, 'target_path');
  const fits = found === 'absent' || found === (access === 'block' ? 'empty-file' : 'empty-dir');
  if (!fits) throw failedPrecondition(`target_path ${target} is ${found === 'empty-dir' ? 'a directory' : 'a file'}; ${access} access needs ${access === 'block' ? 'a file' : 'a directory'}`);
  return found;
}

/**
 * Makes an absent target, recording first that the driver made it: the record must exist before
 * the directory does, or a publish killed in between would leave unpublish a directory it cannot
 * tell from a kubelet's. True when the target is (now) the driver's.
 */
async function ensureTarget(d: StageDeps, rec: DeviceRecord, target: string, access: AccessKind, found: Placeholder): Promise<boolean> {
  if (found !== 'absent') return (await d.targets.get(target))?.volumeId === rec.id;
  const kind = access === 'block' ? 'file' : 'dir';
  await d.targets.record({ target, kind, volumeId: rec.id });
  if (kind === 'dir') {
    await mkdir(target, { recursive: true });
  } else {
    await mkdir(dirname(target), { recursive: true });
    await (await open(target, 'wx')).close();
  }
  return true;
}

async function alreadyPublished(ctx: OpContext, d: StageDeps, rec: DeviceRecord, target: string, access: AccessKind, readOnly: boolean): Promise<boolean> {
  const owner = await mountOwner(ctx, d.mounter, target, d.devices.devicePath(rec), access);
  if (owner.kind === 'none') return false;
  if (owner.kind === 'foreign') throw failedPrecondition(`target_path ${target} already has ${describeMount(owner.entry)} mounted, which is not volume ${rec.id}`);
  const wasRo = owner.entry.options.includes('ro');
  if (wasRo !== readOnly) throw alreadyExists(`volume ${rec.id} is already published at ${target} ${wasRo ? 'read-only' : 'read-write'}`);
  return true;
}

export async function publishVolume(ctx: OpContext, d: StageDeps, req: PublishReq): Promise<void> {
  if (!req.volume_id) throw invalidArgument('volume_id is required');
  const target = await nodePath(d, req.target_path, 'target_path');
  if (!req.volume_capability) throw invalidArgument('volume_capability is required');
  if (!req.staging_target_path) throw failedPrecondition('staging_target_path is required: this driver stages volumes (STAGE_UNSTAGE_VOLUME)');
  const staging = await nodePath(d, req.staging_target_path, 'staging_target_path');
  const cap = requestedCapability(req.volume_capability);
  const rec = await d.devices.get(req.volume_id);
  checkAccess(rec, cap);
  const readOnly = req.readonly || READ_ONLY_MODES.has(cap.mode) || cap.mountFlags.includes('ro');
  const device = d.devices.devicePath(rec);
  try {
    // The target first: a repeat is answered from the mount table alone, and a target that is not
    // the driver's to use is refused before anything else is looked at.
    if (await alreadyPublished(ctx, d, rec, target, cap.accessType, readOnly)) return;
    const found = await checkTarget(target, cap.accessType);
    const info = await d.devices.info(ctx, rec);
    if (!info?.live) throw failedPrecondition(`volume ${rec.id} is not staged on this node (call NodeStageVolume first)`);
    if (cap.accessType === 'mount' && (await mountOwner(ctx, d.mounter, staging, device, 'mount')).kind !== 'ours') {
      throw failedPrecondition(`volume ${rec.id} is not staged at ${staging}`);
    }
    const made = await ensureTarget(d, rec, target, cap.accessType, found);
    try {
      await d.mounter.bindMount(ctx, cap.accessType === 'block' ? device : staging, target, readOnly ? ['ro', ...cap.mountFlags.filter((f) => f !== 'ro')] : cap.mountFlags);
    } catch (err) {
      if (made) await removeCreated(d, rec, target);
      throw err;
    }
  } catch (err) {
    throw toStatus(err, `publishing ${rec.id} at ${target}`);
  }
}

/** Removes the target only if publish recorded making it, and only while it is still an empty placeholder. */
async function removeCreated(d: StageDeps, rec: DeviceRecord, target: string): Promise<void> {
  const made = await d.targets.get(target);
  if (made?.volumeId !== rec.id) return;
  const st = await lstat(target).catch(() => undefined);
  if (st?.isDirectory() && made.kind === 'dir') {
    // rmdir itself refuses a directory that is not empty (or is a mount point): that is left.
    await rmdir(target).catch(() => undefined);
  } else if (st?.isFile() && made.kind === 'file' && st.size === 0) {
    await rm(target);
  }
  if (!(await lstat(target).catch(() => undefined))) await d.targets.forget(target);
}

export async function unpublishVolume(ctx: OpContext, d: StageDeps, volumeId: string, targetPath: string): Promise<void> {
  if (!volumeId) throw invalidArgument('volume_id is required');
  const target = await nodePath(d, targetPath, 'target_path');
  const rec = await knownVolume(d, volumeId);
  await unmountOwn(ctx, d.mounter, target, d.devices.devicePath(rec), accessOf(rec), 'target_path');
  try {
    await removeCreated(d, rec, target);
  } catch (err) {
    throw toStatus(err, `removing target_path ${target}`);
  }
}
