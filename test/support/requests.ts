import type { VolumeCapability__Output } from '../../src/csi/generated/csi/v1/VolumeCapability.ts';
import { loadCsi } from '../../src/csi/proto.ts';
import type { RequestOf, RpcName } from '../../src/csi/rpcs.ts';

const v1 = loadCsi().csi.v1;
const methods = { ...v1.Identity.service, ...v1.Controller.service, ...v1.Node.service, ...v1.GroupController.service };

/** The fields a test sets on a request of `M`; the rest keep their proto defaults. */
export type Fields<M extends RpcName> = Partial<RequestOf<M>>;

/**
 * Request `M` as the driver receives it when a CO sends `fields`: the rest decoded from nothing
 * ('' , 0, [], {} and null, as on the wire), by the server's own codec.
 */
export function request<M extends RpcName>(method: M, fields: Fields<M> = {}): RequestOf<M> {
  const blank = methods[method].requestDeserialize(Buffer.alloc(0)) as RequestOf<M>;
  return { ...blank, ...fields };
}

export const createVolumeReq = (o: Fields<'CreateVolume'> = {}) => request('CreateVolume', o);
export const deleteVolumeReq = (volume_id: string) => request('DeleteVolume', { volume_id });
export const validateReq = (o: Fields<'ValidateVolumeCapabilities'> = {}) => request('ValidateVolumeCapabilities', o);
export const listVolumesReq = (o: Fields<'ListVolumes'> = {}) => request('ListVolumes', o);
export const capacityReq = (o: Fields<'GetCapacity'> = {}) => request('GetCapacity', o);
export const expandReq = (o: Fields<'ControllerExpandVolume'> = {}) => request('ControllerExpandVolume', o);
export const getVolumeReq = (volume_id: string) => request('ControllerGetVolume', { volume_id });
export const snapshotReq = (name: string, source_volume_id: string, o: Fields<'CreateSnapshot'> = {}) => request('CreateSnapshot', { name, source_volume_id, ...o });
export const deleteSnapshotReq = (snapshot_id: string) => request('DeleteSnapshot', { snapshot_id });
export const getSnapshotReq = (snapshot_id: string) => request('GetSnapshot', { snapshot_id });
export const listSnapshotsReq = (o: Fields<'ListSnapshots'> = {}) => request('ListSnapshots', o);

export const stageReq = (o: Fields<'NodeStageVolume'> = {}) => request('NodeStageVolume', o);
export const unstageReq = (volume_id: string, staging_target_path: string) => request('NodeUnstageVolume', { volume_id, staging_target_path });
export const publishReq = (o: Fields<'NodePublishVolume'> = {}) => request('NodePublishVolume', o);
export const unpublishReq = (volume_id: string, target_path: string) => request('NodeUnpublishVolume', { volume_id, target_path });
export const statsReq = (volume_id: string, volume_path: string) => request('NodeGetVolumeStats', { volume_id, volume_path });
export const nodeExpandReq = (o: Fields<'NodeExpandVolume'> = {}) => request('NodeExpandVolume', o);

export const groupSnapshotReq = (name: string, source_volume_ids: string[], o: Fields<'CreateVolumeGroupSnapshot'> = {}) => request('CreateVolumeGroupSnapshot', { name, source_volume_ids, ...o });
export const getGroupReq = (group_snapshot_id: string, snapshot_ids: string[]) => request('GetVolumeGroupSnapshot', { group_snapshot_id, snapshot_ids });
export const deleteGroupReq = (group_snapshot_id: string, snapshot_ids: string[]) => request('DeleteVolumeGroupSnapshot', { group_snapshot_id, snapshot_ids });

type AccessMode = NonNullable<VolumeCapability__Output['access_mode']>['mode'];

/** A mount capability, as a CO asks for one (access_type unset: the tests build it, not the decoder). */
export const mountCap = (fs = 'ext4', mode: AccessMode = 'SINGLE_NODE_WRITER', flags: string[] = []): VolumeCapability__Output =>
  ({ mount: { fs_type: fs, mount_flags: flags, volume_mount_group: '' }, access_mode: { mode } });
export const blockCap = (mode: AccessMode = 'SINGLE_NODE_WRITER'): VolumeCapability__Output => ({ block: {}, access_mode: { mode } });
