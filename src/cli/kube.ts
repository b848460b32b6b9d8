import { CoordinationV1Api, CoreV1Api, CustomObjectsApi, KubeConfig } from '@kubernetes/client-node';
import { probeHealthy } from '../assemble.ts';
import { ControllerService } from '../controller/service.ts';
import { IdentityService } from '../csi/identity.ts';
import { loadCsi } from '../csi/proto.ts';
import { serve } from '../csi/server.ts';
import { realDeviceMapper } from '../devmapper/choose.ts';
import { KubeBackend } from '../kube/backend.ts';
import { ObjectChanges } from '../kube/changes.ts';
import { sharedConnections } from '../kube/connections.ts';
import { KubeGroupBackend } from '../kube/group-backend.ts';
import { GroupControllerService } from '../controller/groups.ts';
import { leaderOnly } from '../csi/leader-only.ts';
import { LeaderElector } from '../kube/lease.ts';
import { startKubeNode } from '../kube/node.ts';
import { LEASE_NAME, PLURAL } from '../kube/types.ts';
import { LosetupLoopDevices } from '../mount/loop.ts';
import { realMounter } from '../mount/choose.ts';
import { serveMetrics } from '../observability/http.ts';
import { createLogger, logCommands } from '../observability/log.ts';
import { Metrics } from '../observability/metrics.ts';
import { background } from '../system/context.ts';
import { TOPOLOGY_KEY } from '../version.ts';
import { buildConfig, controllerConfig, parseFlags, USAGE } from './config.ts';
import { UsageError } from './flags.ts';
import { checkKernel } from './standalone.ts';

export const NODE_USAGE = `dmthin-csi node --node-id NODE [flags]: the CSI Node service and the node agent.
Takes the standalone flags (pool, endpoint, metrics, ...); --node-id must be the Kubernetes node name.
${USAGE}`;

/** Kubernetes access as kubectl finds it: in-cluster service account or KUBECONFIG / ~/.kube/config. */
function kubeConfig(): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromDefault();
  return sharedConnections(kc);
}

export async function runController(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<() => Promise<void>> {
  const cfg = controllerConfig(argv, env);
  const log = createLogger({ level: cfg.logLevel });
  const metrics = new Metrics({ processMetrics: true });
  const kc = kubeConfig();
  const leader = new LeaderElector(kc.makeApiClient(CoordinationV1Api), {
    namespace: cfg.leaseNamespace, name: LEASE_NAME, identity: cfg.identity, log,
  });
  await leader.start();
  const core = kc.makeApiClient(CoreV1Api);
  const objects = kc.makeApiClient(CustomObjectsApi);
  const changes = new ObjectChanges(kc, objects, [PLURAL.volume, PLURAL.snapshot], log);
  await changes.start();
  const backend = new KubeBackend(objects, { topologyKey: TOPOLOGY_KEY, nodeExists: (name) => nodeExists(core, name), changes });
  const controller = leaderOnly(new ControllerService(backend, { fsType: cfg.defaultFs }), leader);
  const groupController = leaderOnly(new GroupControllerService(backend, new KubeGroupBackend(objects, backend)), leader);
  const identity = new IdentityService({ ready: async () => leader.readiness() }, true, true);
  const server = await serve(cfg.endpoint, { identity, controller, groupController }, { log, metrics });
  const http = await serveMetrics({ address: cfg.metricsAddress, metrics, log, healthy: async () => leader.readiness().ready });
  return async () => {
    // Stop answering first, so no request runs on a replica that has handed the lease on.
    await new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
    await leader.stop();
    changes.stop();
    http.stop();
  };
}

export async function runNode(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<() => Promise<void>> {
  const values = parseFlags(argv);
  if (!values['node-id'] && !env.NODE_ID) throw new UsageError(`--node-id is required (the Kubernetes node name)\n${NODE_USAGE}`);
  const cfg = buildConfig(values, { ...env, CSI_ENDPOINT: env.CSI_ENDPOINT ?? 'unix:///csi/csi.sock' });
  const log = createLogger({ level: cfg.logLevel });
  logCommands(log);
  const metrics = new Metrics({ processMetrics: true });
  const dm = realDeviceMapper(cfg.dmInterface);
  await checkKernel(dm);
  const starting = startKubeNode(background, {
    kc: kubeConfig(), node: cfg.nodeId, dm, mounter: realMounter(cfg.mountInterface), loops: new LosetupLoopDevices(), log, metrics,
    pool: cfg.pool, overprovisionRatio: cfg.overprovisionRatio, defaultFs: cfg.defaultFs,
    stateDir: cfg.stateDir, nodePathRoots: cfg.nodePathRoots,
  });
  loadCsi(); // builds the CSI codecs while the start's commands run, not after them
  const kn = await starting;
  const server = await serve(cfg.endpoint, { identity: kn.identity, node: kn.node }, { log, metrics, locks: kn.agent.locks });
  const http = await serveMetrics({ address: cfg.metricsAddress, metrics, log, healthy: probeHealthy(kn.identity), devices: kn.store });
  return async () => {
    await kn.stop();
    await new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
    http.stop();
  };
}

/** Only a definite 404 means the node is gone; any other failure assumes it is still there. */
export async function nodeExists(core: CoreV1Api, name: string): Promise<boolean> {
  try {
    await core.readNode({ name });
    return true;
  } catch (err) {
    return (err as { code?: number }).code !== 404;
  }
}
