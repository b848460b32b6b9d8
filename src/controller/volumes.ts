import type { CreateVolumeRequest__Output as CreateReq } from '../csi/generated/csi/v1/CreateVolumeRequest.ts';
import type { CreateVolumeResponse } from '../csi/generated/csi/v1/CreateVolumeResponse.ts';
import type { Volume } from '../csi/generated/csi/v1/Volume.ts';
import type { VolumeContentSource } from '../csi/generated/csi/v1/VolumeContentSource.ts';
import { alreadyExists, failedPrecondition, invalidArgument, notFound, outOfRange } from '../errors.ts';
import type { OpContext } from '../system/context.ts';
import type { DeviceRecord } from '../state/types.ts';
import type { NewVolume, VolumeBackend } from './backend.ts';
import { checkMapSize, chooseSize, parseParameters, validateCapabilities, validateName, XFS_MIN } from './validate.ts';
import { idFor, parseId } from '../volume/ids.ts';
import { accessOf, fsTypeOf, META, sourceOf } from '../volume/meta.ts';

export interface VolumeDefaults { fsType: string }

/**
 * external-provisioner's --extra-create-metadata parameters: the PersistentVolume and the claim
 * a volume is made for, kept beside it (kubectl shows them on the ThinVolume), with the
 * lengths Kubernetes allows their names.
 */
const CLAIM_PARAMETERS = [
  ['csi.storage.k8s.io/pv/name', META.pvName, 253],
  ['csi.storage.k8s.io/pvc/name', META.pvcName, 253],
  ['csi.storage.k8s.io/pvc/namespace', META.pvcNamespace, 63],
] as const;

export function claimMeta(params: Record<string, string> | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [param, key, max] of CLAIM_PARAMETERS) {
    const v = params?.[param];
    if (v === undefined || v === '') continue;
    if (v.length > max) throw invalidArgument(`parameters.${param} is longer than ${max} characters`);
    out[key] = v;
  }
  return out;
}

/** Resolves volume_content_source to the record it names, with the spec's codes. */
async function resolveSource(ctx: OpContext, backend: VolumeBackend, src: CreateReq['volume_content_source']) {
  if (!src) return undefined;
  const [kind, id] = src.snapshot ? ['snapshot', src.snapshot.snapshot_id] as const
    : src.volume ? ['volume', src.volume.volume_id] as const : [undefined, ''] as const;
  if (!kind) throw invalidArgument('volume_content_source: snapshot or volume is required');
  if (!id) throw invalidArgument(`volume_content_source.${kind}: ${kind}_id is required`);
  const rec = parseId(id)?.kind === kind ? await backend.get(ctx, id) : undefined;
  if (!rec || rec.state === 'Removing') throw notFound(`volume_content_source: ${kind} ${id} does not exist`);
  if (rec.state === 'Faulty') throw failedPrecondition(`volume_content_source: ${kind} ${id} is Faulty: ${rec.error ?? ''}`);
  return rec;
}

export function contentSource(rec: DeviceRecord): VolumeContentSource | null {
  const src = sourceOf(rec);
  if (!src) return null;
  return src.kind === 'snapshot' ? { snapshot: { snapshot_id: src.id } } : { volume: { volume_id: src.id } };
}

export function toVolume(backend: VolumeBackend, rec: DeviceRecord): Volume {
  return {
    volume_id: rec.id,
    capacity_bytes: rec.sizeBytes,
    volume_context: { fsType: fsTypeOf(rec), accessType: accessOf(rec) },
    content_source: contentSource(rec),
    accessible_topology: [{ segments: backend.topologyOf(rec) }],
  };
}

/** Why an existing volume does not answer this request, or undefined if it does. */
function mismatch(rec: DeviceRecord, req: CreateReq, spec: NewVolume): string | undefined {
  const required = Number(req.capacity_range?.required_bytes ?? 0);
  const limit = Number(req.capacity_range?.limit_bytes ?? 0);
  if (rec.sizeBytes < required || (limit > 0 && rec.sizeBytes > limit)) return `its size ${rec.sizeBytes} is outside the requested capacity_range`;
  for (const key of [META.accessType, META.fsType, META.sourceKind, META.sourceId]) {
    if ((rec.meta[key] ?? '') !== (spec.meta[key] ?? '')) return `its ${key} is "${rec.meta[key] ?? ''}", requested "${spec.meta[key] ?? ''}"`;
  }
  return undefined;
}

export async function createVolume(ctx: OpContext, backend: VolumeBackend, defaults: VolumeDefaults, req: CreateReq): Promise<CreateVolumeResponse> {
  validateName(req.name);
  const caps = validateCapabilities(req.volume_capabilities);
  checkMapSize(req.parameters, 'parameters');
  checkMapSize(req.secrets, 'secrets');
  const params = parseParameters(req.parameters, defaults.fsType);
  const accessType = caps[0]!.accessType;
  const fsType = accessType === 'block' ? '' : (caps.find((c) => c.fsType)?.fsType || params.fsType);
  const source = await resolveSource(ctx, backend, req.volume_content_source);
  if (source && source.meta[META.accessType] && source.meta[META.accessType] !== accessType) {
    throw invalidArgument(`volume_content_source: source is a ${source.meta[META.accessType]} volume, ${accessType} requested`);
  }
  const minimum = Math.max(source?.sizeBytes ?? 0, fsType === 'xfs' ? XFS_MIN : 0);
  const limit = Number(req.capacity_range?.limit_bytes ?? 0);
  if (source && limit > 0 && limit < source.sizeBytes) throw outOfRange(`capacity_range: limit_bytes ${limit} is smaller than the source (${source.sizeBytes} bytes)`);
  const id = idFor('vol', req.name);
  const spec: NewVolume = {
    id, kind: 'volume', sizeBytes: chooseSize(req.capacity_range, minimum), origin: source?.id,
    meta: {
      [META.name]: req.name, [META.accessType]: accessType, [META.fsType]: fsType,
      ...(source ? { [META.sourceKind]: source.kind, [META.sourceId]: source.id } : {}),
      ...claimMeta(req.parameters),
    },
    preferred: req.accessibility_requirements?.preferred.map((t) => t.segments),
    requisite: req.accessibility_requirements?.requisite.map((t) => t.segments),
  };
  const existing = await backend.get(ctx, id);
  if (existing && existing.state === 'Faulty' && existing.faultyFrom === 'Creating') {
    await backend.remove(ctx, id); // a half-made device the CO was never told about
  } else if (existing) {
    const why = mismatch(existing, req, spec);
    if (why) throw alreadyExists(`volume "${req.name}" already exists and is incompatible: ${why}`);
    return { volume: toVolume(backend, existing) };
  }
  return { volume: toVolume(backend, await backend.create(ctx, spec)) };
}

export async function expandVolume(ctx: OpContext, backend: VolumeBackend, volumeId: string, range: CreateReq['capacity_range']) {
  if (!volumeId) throw invalidArgument('volume_id is required');
  if (!range) throw invalidArgument('capacity_range is required');
  const rec = parseId(volumeId)?.kind === 'volume' ? await backend.get(ctx, volumeId) : undefined;
  if (!rec) throw notFound(`volume ${volumeId} does not exist`);
  const limit = Number(range.limit_bytes ?? 0);
  if (limit > 0 && limit < rec.sizeBytes) throw outOfRange(`capacity_range: limit_bytes ${limit} is smaller than the current size ${rec.sizeBytes}; volumes cannot shrink`);
  const wanted = Number(range.required_bytes ?? 0) > 0 ? chooseSize(range) : rec.sizeBytes;
  const updated = wanted > rec.sizeBytes ? await backend.expand(ctx, volumeId, wanted) : rec;
  return { capacity_bytes: updated.sizeBytes, node_expansion_required: accessOf(updated) !== 'block' };
}
