import { mkdir, open, realpath, rm, rmdir, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { NodePublishVolumeRequest__Output as PublishReq } from '../csi/generated/csi/v1/NodePublishVolumeRequest.ts';
import { META } from '../controller/meta.ts';
import { capabilityProblem, viewCapability } from '../controller/validate.ts';
import { alreadyExists, failedPrecondition, invalidArgument, notFound } from '../errors.ts';
import { toStatus } from '../pool/errors.ts';
import type { OpContext } from '../system/context.ts';
import { checkPath } from './paths.ts';
import { unmountAll, type StageDeps } from './stage.ts';

const READ_ONLY_MODES = new Set(['SINGLE_NODE_READER_ONLY', 'MULTI_NODE_READER_ONLY']);

async function ensureTarget(path: string, kind: 'dir' | 'file'): Promise<void> {
  if (kind === 'dir') {
    await mkdir(path, { recursive: true });
    return;
  }
  await mkdir(dirname(path), { recursive: true });
  await (await open(path, 'a')).close();
}

export async function publishVolume(ctx: OpContext, d: StageDeps, req: PublishReq): Promise<void> {
  if (!req.volume_id) throw invalidArgument('volume_id is required');
  const target = checkPath(req.target_path, 'target_path');
  if (!req.volume_capability) throw invalidArgument('volume_capability is required');
  if (!req.staging_target_path) throw failedPrecondition('staging_target_path is required: this driver stages volumes (STAGE_UNSTAGE_VOLUME)');
  const staging = checkPath(req.staging_target_path, 'staging_target_path');
  const problem = capabilityProblem(req.volume_capability);
  if (problem) throw invalidArgument(problem);
  const cap = viewCapability(req.volume_capability);
  const rec = await d.devices.get(req.volume_id);
  const accessType = rec.meta[META.accessType] ?? 'mount';
  if (accessType !== cap.accessType) throw failedPrecondition(`volume ${rec.id} is a ${accessType} volume, ${cap.accessType} access requested`);
  const readOnly = req.readonly || READ_ONLY_MODES.has(cap.mode) || cap.mountFlags.includes('ro');
  const device = d.devices.devicePath(rec);
  try {
    const info = await d.devices.pool.deps.dm.info(ctx, rec.dmName);
    if (!info?.live) throw failedPrecondition(`volume ${rec.id} is not staged on this node (call NodeStageVolume first)`);
    const source = cap.accessType === 'block' ? device : staging;
    if (cap.accessType === 'mount' && !(await d.mounter.mountsOf(ctx, device)).some((m) => m.target === staging)) {
      throw failedPrecondition(`volume ${rec.id} is not staged at ${staging}`);
    }
    const existing = await d.mounter.findMount(ctx, target);
    if (existing) {
      // A bind of a device node shows the /dev filesystem (root = the node's path in it), not the device.
      const same = cap.accessType === 'block'
        ? existing.root === (await realpath(device).catch(() => device)).replace(/^\/dev(?=\/)/, '')
        : (await d.mounter.mountsOf(ctx, device)).some((m) => m.target === target);
      const wasRo = existing.options.includes('ro');
      if (!same) throw alreadyExists(`target_path ${target} already has ${existing.source} mounted`);
      if (wasRo !== readOnly) throw alreadyExists(`volume ${rec.id} is already published at ${target} ${wasRo ? 'read-only' : 'read-write'}`);
      return;
    }
    await ensureTarget(target, cap.accessType === 'block' ? 'file' : 'dir');
    await d.mounter.bindMount(ctx, source, target, readOnly ? ['ro', ...cap.mountFlags.filter((f) => f !== 'ro')] : cap.mountFlags);
  } catch (err) {
    throw toStatus(err, `publishing ${rec.id} at ${target}`);
  }
}

export async function unpublishVolume(ctx: OpContext, d: StageDeps, volumeId: string, targetPath: string): Promise<void> {
  if (!volumeId) throw invalidArgument('volume_id is required');
  const target = checkPath(targetPath, 'target_path');
  const rec = await d.devices.pool.deps.store.getDevice(volumeId);
  const unmounted = await unmountAll(ctx, d.mounter, target);
  if (!rec && !unmounted) throw notFound(`volume ${volumeId} does not exist`);
  // The SP created the target (a directory, or a file for block), so the SP removes it.
  const st = await stat(target).catch(() => undefined);
  if (st?.isDirectory()) await rmdir(target).catch(() => undefined);
  else if (st) await rm(target, { force: true });
}
