// What the cluster bench asks: CSI calls to the controller's socket as csi-provisioner and
// csi-snapshotter make them, and the floor, the same API sequence of a volume's life sent
// straight to the apiserver by a minimal client with no driver logic.
import { toStatus } from '../../src/kube/map.ts';
import { API_VERSION, FINALIZER, GROUP, NODE_LABEL, PLURAL, VERSION } from '../../src/kube/types.ts';
import type { DeviceCr } from '../../src/kube/types.ts';
import { TOPOLOGY_KEY } from '../../src/version.ts';
import type { KubeHttp } from '../../test/realkernel/realkube/http.ts';
import type { CsiServiceClient } from '../../test/support/csi-client.ts';

export const VOLUME_BYTES = 64 * 1024 * 1024;

export interface Timed { wallMs: number; latenciesMs: number[]; failures: string[] }

/** Runs `job(i)` for i < n, `concurrency` at a time; every job's latency, failures kept (not thrown). */
export async function runPool(n: number, concurrency: number, job: (i: number) => Promise<void>, onDone?: (done: number) => void | Promise<void>): Promise<Timed> {
  const latenciesMs: number[] = [];
  const failures: string[] = [];
  let next = 0;
  let done = 0;
  const t0 = performance.now();
  const worker = async () => {
    while (next < n) {
      const i = next++;
      const s = performance.now();
      try {
        await job(i);
        latenciesMs.push(performance.now() - s);
      } catch (err) {
        failures.push(`${i}: ${(err as Error).message}`);
      }
      await onDone?.(++done);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, n) }, worker));
  return { wallMs: performance.now() - t0, latenciesMs, failures };
}

const mountCap = { mount: { fs_type: 'ext4', mount_flags: [] }, access_mode: { mode: 'SINGLE_NODE_WRITER' } };
const segment = (node: string) => ({ segments: { [TOPOLOGY_KEY]: node } });

/**
 * csi-provisioner's accessibility requirements for a claim bound to `node` (WaitForFirstConsumer,
 * no strict topology): every node's topology as requisite, the selected node first in preferred.
 */
export function topologyFor(node: string, nodes: readonly string[]) {
  return { requisite: nodes.map(segment), preferred: [segment(node), ...nodes.filter((n) => n !== node).map(segment)] };
}

export function createVolume(ctl: CsiServiceClient, name: string, node: string, nodes: readonly string[], snapshot?: string): Promise<string> {
  return ctl.call<{ volume: { volume_id: string } }>('CreateVolume', {
    name, capacity_range: { required_bytes: VOLUME_BYTES }, volume_capabilities: [mountCap],
    accessibility_requirements: topologyFor(node, nodes), parameters: {},
    ...(snapshot ? { volume_content_source: { snapshot: { snapshot_id: snapshot } } } : {}),
  }).then((r) => r.volume.volume_id);
}

export async function deleteVolume(ctl: CsiServiceClient, id: string): Promise<void> {
  await ctl.call('DeleteVolume', { volume_id: id });
}

export function createSnapshot(ctl: CsiServiceClient, name: string, source: string): Promise<string> {
  return ctl.call<{ snapshot: { snapshot_id: string } }>('CreateSnapshot', { name, source_volume_id: source, parameters: {} }).then((r) => r.snapshot.snapshot_id);
}

export async function deleteSnapshot(ctl: CsiServiceClient, id: string): Promise<void> {
  await ctl.call('DeleteSnapshot', { snapshot_id: id });
}

const VOLUMES = `/apis/${GROUP}/${VERSION}/${PLURAL.volume}`;

/** The node the floor's objects name: no agent watches it, so no driver logic touches them. */
export const FLOOR_NODE = 'floor-node';

/**
 * The floor's create: the CR as the controller makes it (born with the finalizer), then the
 * agent's two status writes (the claim, Creating with a device id, and Created), each PUT
 * conditional on the resourceVersion the previous reply returned, so no reads at all.
 */
export async function floorCreate(api: KubeHttp, name: string, deviceId: number): Promise<void> {
  const body: DeviceCr = {
    apiVersion: API_VERSION, kind: 'ThinVolume',
    metadata: { name, labels: { [NODE_LABEL]: FLOOR_NODE }, finalizers: [FINALIZER] },
    spec: { nodeName: FLOOR_NODE, sizeBytes: VOLUME_BYTES, csiName: name, accessType: 'mount', fsType: 'ext4' },
  };
  let cr = await api.create(VOLUMES, body) as DeviceCr;
  for (const state of ['Creating', 'Created'] as const) {
    const t = new Date().toISOString();
    const status = toStatus(cr, { id: name, dmName: `dmthin-${cr.metadata.uid}`, kind: 'volume', sizeBytes: VOLUME_BYTES, meta: {}, deviceId, state, createdAt: t, updatedAt: t });
    cr = await api.ok('PUT', `${VOLUMES}/${name}/status`, { ...cr, status }) as DeviceCr;
  }
}

/** The floor's delete: the DELETE, the agent's Removing status, and the finalizer's removal (which ends the object). */
export async function floorDelete(api: KubeHttp, name: string): Promise<void> {
  let cr = await api.delete(`${VOLUMES}/${name}`) as DeviceCr;
  cr = await api.ok('PUT', `${VOLUMES}/${name}/status`, { ...cr, status: { ...cr.status, state: 'Removing', updatedAt: new Date().toISOString() } }) as DeviceCr;
  await api.ok('PUT', `${VOLUMES}/${name}`, { ...cr, metadata: { ...cr.metadata, finalizers: [] } });
}
