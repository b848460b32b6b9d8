import type { CapacityRange__Output } from '../csi/generated/csi/v1/CapacityRange.ts';
import type { VolumeCapability__Output } from '../csi/generated/csi/v1/VolumeCapability.ts';
import { invalidArgument, outOfRange } from '../errors.ts';
import { SUPPORTED_FS } from '../mount/types.ts';
import { capabilityProblem, viewCapability, type CapabilityView } from '../volume/capability.ts';

export const GiB = 1024 ** 3;
export const MiB = 1024 ** 2;
/** Sizes are rounded up to whole MiB: filesystems and dm tables both like aligned ends. */
export const SIZE_ALIGN = MiB;
export const DEFAULT_SIZE = GiB;
/** mkfs.xfs refuses filesystems under 300 MiB. */
export const XFS_MIN = 300 * MiB;
/** Beyond this a request is a mistake, not a volume (dm-thin itself would accept more). */
export const MAX_SIZE = 256 * 1024 * GiB;

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

export function requireField(value: unknown, field: string): void {
  if (value === undefined || value === null || value === '') throw invalidArgument(`${field} is required`);
}

export function validateName(name: string, field = 'name'): void {
  requireField(name, field);
  if (Buffer.byteLength(name) > 128 || !NAME_RE.test(name)) {
    throw invalidArgument(`${field} "${name.slice(0, 140)}" is not valid: use 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit`);
  }
}

export function checkMapSize(map: Record<string, string> | undefined, field: string): void {
  if (!map) return;
  const bytes = Object.entries(map).reduce((n, [k, v]) => n + Buffer.byteLength(k) + Buffer.byteLength(v), 0);
  if (bytes > 4096) throw invalidArgument(`${field} is ${bytes} bytes; the CSI limit is 4 KiB`);
}

const align = (n: number) => Math.ceil(n / SIZE_ALIGN) * SIZE_ALIGN;

/**
 * Picks a size inside the requested range: the required size (or the minimum the content
 * needs), rounded up to whole MiB, never above the limit.
 */
export function chooseSize(range: CapacityRange__Output | null, minimum = 0): number {
  const required = Number(range?.required_bytes ?? 0);
  const limit = Number(range?.limit_bytes ?? 0);
  if (!Number.isFinite(required) || !Number.isFinite(limit) || required < 0 || limit < 0) {
    throw invalidArgument('capacity_range: required_bytes and limit_bytes must not be negative');
  }
  if (limit > 0 && required > limit) throw invalidArgument(`capacity_range: required_bytes ${required} exceeds limit_bytes ${limit}`);
  const want = Math.max(required || (limit > 0 ? Math.min(DEFAULT_SIZE, limit) : DEFAULT_SIZE), minimum);
  let size = align(want);
  // A tight limit wins over MiB alignment; dm still needs whole sectors.
  if (limit > 0 && size > limit) size = Math.ceil(want / 512) * 512;
  if (limit > 0 && size > limit) throw outOfRange(`capacity_range: the volume needs at least ${size} bytes but limit_bytes is ${limit}`);
  if (size > MAX_SIZE) throw outOfRange(`capacity_range: ${size} bytes exceeds the largest volume this driver creates (${MAX_SIZE} bytes)`);
  return size;
}

/** Validates a capability list for CreateVolume: non-empty, each supported, one access type. */
export function validateCapabilities(caps: VolumeCapability__Output[], field = 'volume_capabilities'): CapabilityView[] {
  if (!caps || caps.length === 0) throw invalidArgument(`${field} is required`);
  const views = caps.map((c) => {
    const problem = capabilityProblem(c);
    if (problem) throw invalidArgument(problem);
    return viewCapability(c);
  });
  if (new Set(views.map((v) => v.accessType)).size > 1) throw invalidArgument(`${field}: a volume is either block or mount, not both`);
  return views;
}

/** StorageClass parameters this driver understands. Kubernetes' own keys are passed through. */
export interface Parameters { fsType: string }

const CO_PREFIXES = ['csi.storage.k8s.io/'];

export function parseParameters(params: Record<string, string> | undefined, defaultFs: string): Parameters {
  const out: Parameters = { fsType: defaultFs };
  for (const [k, v] of Object.entries(params ?? {})) {
    if (CO_PREFIXES.some((p) => k.startsWith(p))) continue;
    if (k === 'fsType' || k === 'fstype') {
      if (!(SUPPORTED_FS as readonly string[]).includes(v)) throw invalidArgument(`parameters.${k}: "${v}" is not supported (use ${SUPPORTED_FS.join(' or ')})`);
      out.fsType = v;
      continue;
    }
    throw invalidArgument(`parameters.${k} is not a parameter of this driver (known: fsType)`);
  }
  return out;
}
