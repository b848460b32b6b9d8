import { CustomObjectsApi, KubeConfig } from '@kubernetes/client-node';
import { CrdStore } from '../kube/crd-store.ts';
import { errText, type StoreView } from './status.ts';

/**
 * This node's records from its custom resources (what the node plugin stores in Kubernetes
 * mode). A module of its own, loaded on demand, so `status` on a standalone host never loads
 * the Kubernetes client.
 */
export async function readKube(node: string, poolName: string | undefined): Promise<StoreView> {
  const kc = new KubeConfig();
  kc.loadFromDefault();
  const store = new CrdStore(kc.makeApiClient(CustomObjectsApi), node, poolName ?? 'dmthin-pool');
  try {
    const pool = await store.getPool();
    return { ...(pool ? { pool } : {}), devices: await store.listDevices(), problems: [] };
  } catch (err) {
    return { devices: [], problems: [`custom resources of node ${node}: ${errText(err)}`] };
  }
}
