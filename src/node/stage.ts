import { mkdir } from 'node:fs/promises';
import type { NodeStageVolumeRequest__Output as StageReq } from '../csi/generated/csi/v1/NodeStageVolumeRequest.ts';
import { META } from '../controller/meta.ts';
import { capabilityProblem, viewCapability } from '../controller/validate.ts';
import { alreadyExists, failedPrecondition, invalidArgument, notFound } from '../errors.ts';
import type { FsType, Mounter } from '../mount/types.ts';
import type { Devices } from '../pool/devices.ts';
import { toStatus } from '../pool/errors.ts';
import type { OpContext } from '../system/context.ts';
import type { DeviceRecord } from '../state/types.ts';
import { checkPath } from './paths.ts';

export interface StageDeps { devices: Devices; mounter: Mounter; defaultFs: FsType }

const READ_ONLY_MODES = new Set(['SINGLE_NODE_READER_ONLY', 'MULTI_NODE_READER_ONLY']);

/** Mount options: the CO's flags, ro for read-only modes, nouuid for xfs (a restored xfs shares its origin's UUID). */
export function stageOptions(fsType: string, flags: readonly string[], readOnly: boolean): string[] {
  const opts = [...flags];
  if (readOnly && !opts.includes('ro')) opts.push('ro');
  if (fsType === 'xfs' && !opts.includes('nouuid')) opts.push('nouuid');
  return opts;
}

async function ensureFilesystem(ctx: OpContext, d: StageDeps, device: string, wanted: FsType | '', rec: DeviceRecord) {
  const found = await d.mounter.probe(ctx, device);
  if (found) {
    if (wanted && found.fsType !== wanted) throw failedPrecondition(`volume ${rec.id} holds ${found.fsType}, ${wanted} was requested`);
    return found;
  }
  const other = await d.mounter.detectFs(ctx, device);
  if (other) throw failedPrecondition(`volume ${rec.id} holds a ${other} filesystem, which this driver does not mount`);
  const fsType = (wanted || (rec.meta[META.fsType] as FsType | undefined) || d.defaultFs) as FsType;
  // Only ext4 has tables to zero; asked of the kernel, since a restore or clone may hold data but no filesystem.
  const zeroed = fsType === 'ext4' && await d.devices.unwritten(ctx, rec);
  await d.mounter.mkfs(ctx, device, fsType, { zeroed });
  return { fsType, sizeBytes: rec.sizeBytes };
}

export async function stageVolume(ctx: OpContext, d: StageDeps, req: StageReq): Promise<void> {
  if (!req.volume_id) throw invalidArgument('volume_id is required');
  const staging = checkPath(req.staging_target_path, 'staging_target_path');
  if (!req.volume_capability) throw invalidArgument('volume_capability is required');
  const problem = capabilityProblem(req.volume_capability);
  if (problem) throw invalidArgument(problem);
  const cap = viewCapability(req.volume_capability);
  const rec = await d.devices.get(req.volume_id);
  if (rec.kind !== 'volume') throw notFound(`volume ${req.volume_id} does not exist (it is a snapshot)`);
  const accessType = rec.meta[META.accessType] ?? 'mount';
  if (accessType !== cap.accessType) throw failedPrecondition(`volume ${rec.id} is a ${accessType} volume, ${cap.accessType} access requested`);
  const device = await d.devices.activate(ctx, rec.id);
  if (cap.accessType === 'block') return;
  try {
    const current = await d.mounter.findMount(ctx, staging);
    if (current) {
      const ours = (await d.mounter.mountsOf(ctx, device)).some((m) => m.target === staging);
      if (!ours) throw alreadyExists(`staging_target_path ${staging} already has ${current.source} mounted`);
      const ro = current.options.includes('ro');
      const wantRo = READ_ONLY_MODES.has(cap.mode) || cap.mountFlags.includes('ro');
      if (ro !== wantRo || (cap.fsType && current.fsType !== cap.fsType)) {
        throw alreadyExists(`volume ${rec.id} is already staged at ${staging} as ${current.fsType} ${ro ? 'read-only' : 'read-write'}, incompatible with the requested capability`);
      }
      return;
    }
    const fs = await ensureFilesystem(ctx, d, device, cap.fsType, rec);
    await mkdir(staging, { recursive: true });
    await d.mounter.mount(ctx, device, staging, fs.fsType, stageOptions(fs.fsType, cap.mountFlags, READ_ONLY_MODES.has(cap.mode)));
    // A volume restored or cloned into a larger size carries its source's smaller filesystem.
    if (fs.sizeBytes < rec.sizeBytes && !READ_ONLY_MODES.has(cap.mode)) await d.mounter.growFs(ctx, device, staging, fs.fsType);
  } catch (err) {
    throw toStatus(err, `staging ${rec.id} at ${staging}`);
  }
}

export async function unstageVolume(ctx: OpContext, d: StageDeps, volumeId: string, stagingPath: string): Promise<void> {
  if (!volumeId) throw invalidArgument('volume_id is required');
  const staging = checkPath(stagingPath, 'staging_target_path');
  const rec = await d.devices.pool.deps.store.getDevice(volumeId);
  const unmounted = await unmountAll(ctx, d.mounter, staging);
  if (!rec) {
    if (unmounted) return;
    throw notFound(`volume ${volumeId} does not exist`);
  }
  await d.devices.deactivate(ctx, rec.id);
}

/** Unmounts everything stacked on `target`; true when anything was mounted there. */
export async function unmountAll(ctx: OpContext, mounter: Mounter, target: string): Promise<boolean> {
  let any = false;
  try {
    for (let i = 0; i < 8 && (await mounter.findMount(ctx, target)); i++) {
      await mounter.unmount(ctx, target);
      any = true;
    }
  } catch (err) {
    throw toStatus(err, `unmounting ${target}`);
  }
  return any;
}
