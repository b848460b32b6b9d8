import { hostname } from 'node:os';
import { parseArgs } from 'node:util';
import { CoordinationV1Api, CoreV1Api, CustomObjectsApi, KubeConfig } from '@kubernetes/client-node';
import { ControllerService } from '../controller/service.ts';
import { IdentityService } from '../csi/identity.ts';
import { loadCsi } from '../csi/proto.ts';
import { serve } from '../csi/server.ts';
import { realDeviceMapper } from '../devmapper/choose.ts';
import { refreshDeviceGauge } from '../driver.ts';
import { invalidArgument } from '../errors.ts';
import { KubeBackend } from '../kube/backend.ts';
import { KubeGroupBackend } from '../kube/group-backend.ts';
import { GroupControllerService } from '../controller/groups.ts';
import { LeaderElector, leaderOnly } from '../kube/lease.ts';
import { startKubeNode } from '../kube/node.ts';
import { LEASE_NAME } from '../kube/types.ts';
import { LosetupLoopDevices } from '../mount/loop.ts';
import { realMounter } from '../mount/choose.ts';
import { serveMetrics } from '../observability/http.ts';
import { createLogger, logCommands } from '../observability/log.ts';
import { Metrics } from '../observability/metrics.ts';
import { background } from '../system/context.ts';
import { TOPOLOGY_KEY } from '../version.ts';
import { buildConfig, parseFlags, USAGE } from './config.ts';
import { checkKernel } from './standalone.ts';

export const CONTROLLER_USAGE = `dmthin-csi controller [flags]
  --endpoint unix:///path      CSI socket [CSI_ENDPOINT] (default unix:///csi/csi.sock)
  --metrics-address HOST:PORT  serve Prometheus /metrics there [METRICS_ADDRESS]
  --lease-namespace NS         namespace of the leader Lease [POD_NAMESPACE] (default kube-system)
  --default-fs ext4|xfs        filesystem when neither the request nor the class names one (default ext4)
  --log-level LEVEL            error, warn, info, debug [LOG_LEVEL] (default info)
Kubernetes access: in-cluster config or KUBECONFIG.`;

export const NODE_USAGE = `dmthin-csi node --node-id NODE [flags]: the CSI Node service and the node agent.
Takes the standalone flags (pool, endpoint, metrics, ...); --node-id must be the Kubernetes node name.
${USAGE}`;

/** Kubernetes access as kubectl finds it: in-cluster service account or KUBECONFIG / ~/.kube/config. */
function kubeConfig(): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromDefault();
  return kc;
}

export async function runController(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<() => Promise<void>> {
  let v: Record<string, string | undefined>;
  try {
    v = parseArgs({ args: argv, strict: true, options: {
      endpoint: { type: 'string' }, 'metrics-address': { type: 'string' }, 'lease-namespace': { type: 'string' },
      'default-fs': { type: 'string' }, 'log-level': { type: 'string' },
    } }).values;
  } catch (err) {
    throw invalidArgument(`${(err as Error).message}\n${CONTROLLER_USAGE}`);
  }
  const log = createLogger({ level: v['log-level'] ?? env.LOG_LEVEL ?? 'info' });
  const metrics = new Metrics({ processMetrics: true });
  const kc = kubeConfig();
  const leader = new LeaderElector(kc.makeApiClient(CoordinationV1Api), {
    namespace: v['lease-namespace'] ?? env.POD_NAMESPACE ?? 'kube-system', name: LEASE_NAME,
    identity: env.POD_NAME ?? hostname(), log,
  });
  await leader.start();
  const core = kc.makeApiClient(CoreV1Api);
  const objects = kc.makeApiClient(CustomObjectsApi);
  const backend = new KubeBackend(objects, { topologyKey: TOPOLOGY_KEY, nodeExists: (name) => nodeExists(core, name) });
  const controller = leaderOnly(new ControllerService(backend, { fsType: v['default-fs'] ?? 'ext4' }), leader);
  const groupController = leaderOnly(new GroupControllerService(backend, new KubeGroupBackend(objects, backend)), leader);
  const identity = new IdentityService({ ready: async () => leader.readiness() }, true, true);
  const endpoint = v.endpoint ?? env.CSI_ENDPOINT ?? 'unix:///csi/csi.sock';
  const server = await serve(endpoint, { identity, controller, groupController }, { log, metrics });
  const address = v['metrics-address'] ?? env.METRICS_ADDRESS;
  const http = address ? await serveMetrics(address, metrics, log, async () => leader.readiness().ready) : undefined;
  return async () => {
    // Stop answering first, so no request runs on a replica that has handed the lease on.
    await new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
    await leader.stop();
    http?.close();
  };
}

export async function runNode(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<() => Promise<void>> {
  const values = parseFlags(argv);
  if (!values['node-id'] && !env.NODE_ID) throw invalidArgument(`--node-id is required (the Kubernetes node name)\n${NODE_USAGE}`);
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
  const gauge = setInterval(() => { void refreshDeviceGauge(kn.devices).catch(() => undefined); }, 15_000);
  gauge.unref();
  const http = cfg.metricsAddress
    ? await serveMetrics(cfg.metricsAddress, metrics, log, async () => (await kn.identity.Probe({})).ready.value)
    : undefined;
  return async () => {
    clearInterval(gauge);
    await kn.stop();
    await new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
    http?.close();
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
