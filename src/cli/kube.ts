import { stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import { CoordinationV1Api, CoreV1Api, CustomObjectsApi, KubeConfig } from '@kubernetes/client-node';
import { probeHealthy } from '../assemble.ts';
import { ControllerService } from '../controller/service.ts';
import { IdentityService } from '../csi/identity.ts';
import { loadCsi } from '../csi/proto.ts';
import { serve, socketPath } from '../csi/server.ts';
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
import { apiMessage } from '../kube/api.ts';
import { LosetupLoopDevices } from '../mount/loop.ts';
import { realMounter } from '../mount/choose.ts';
import { serveMetrics } from '../observability/http.ts';
import { createLogger, logCommands, type Logger } from '../observability/log.ts';
import { Metrics } from '../observability/metrics.ts';
import { background } from '../system/context.ts';
import { TOPOLOGY_KEY } from '../version.ts';
import { buildConfig, controllerConfig, parseFlags } from './config.ts';
import { warnDeprecated } from './options.ts';
import { checkKernel, FatalError } from './standalone.ts';
import { controllerChannelSettings, nodeChannelSettings } from './channel-config.ts';
import { ChannelDialer, tokenFile } from '../kube/channel/client.ts';
import { publishedEndpoint, snapshotLocator, snapshotMetadataForwarder } from '../kube/channel/snapshot-metadata.ts';
import type { SnapshotMetadataRpcs } from '../csi/stream-rpcs.ts';

/** Kubernetes access as kubectl finds it: in-cluster service account or KUBECONFIG / ~/.kube/config. */
function kubeConfig(): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromDefault();
  return sharedConnections(kc);
}

/**
 * In a pod the socket's directory is a volume the sidecars share; a missing one means the
 * command runs outside its pod, where making it would leave a directory (/csi by default) on
 * the host. Said at once instead.
 */
export async function requireSocketDir(endpoint: string): Promise<void> {
  const dir = dirname(socketPath(endpoint));
  const st = await stat(dir).catch(() => undefined);
  if (!st?.isDirectory()) {
    throw new FatalError(`the directory ${dir} of --endpoint ${endpoint} does not exist: in a pod it is the volume the sidecars share; elsewhere, create it or pass --endpoint unix:///an/existing/dir/csi.sock`);
  }
}

/** Retry delays while the API server does not answer: 1 s doubling to a minute. */
export const API_RETRY_MS = { first: 1_000, max: 60_000 };

/**
 * Waits until the API server answers (any HTTP status: a 404 for a Lease not yet made is an
 * answer), retrying with back-off and one log line per attempt, so the lines thin out as the
 * outage lasts. False when the command was stopped first.
 */
export async function untilApiServer(coord: CoordinationV1Api, namespace: string, server: string, log: Logger, stopping: Promise<unknown>): Promise<boolean> {
  let stopped = false;
  void stopping.then(() => { stopped = true; });
  for (let delay = API_RETRY_MS.first, attempt = 1; ; delay = Math.min(API_RETRY_MS.max, delay * 2), attempt++) {
    try {
      await coord.readNamespacedLease({ name: LEASE_NAME, namespace });
      return true;
    } catch (err) {
      if (typeof (err as { code?: unknown }).code === 'number') return true; // an HTTP status: the server answered
      log.error('cannot reach the Kubernetes API server: not serving CSI until it answers', {
        server, error: apiMessage(err), attempt, retry_in_s: delay / 1000,
      });
    }
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([stopping, new Promise((resolve) => { timer = setTimeout(resolve, delay); })]);
    clearTimeout(timer);
    if (stopped) return false;
  }
}

export async function runController(argv: string[], env: NodeJS.ProcessEnv = process.env, stopping: Promise<unknown> = new Promise(() => {})): Promise<() => Promise<void>> {
  const cfg = controllerConfig(argv, env);
  const log = createLogger({ level: cfg.logLevel });
  warnDeprecated(log, cfg.deprecations);
  await requireSocketDir(cfg.endpoint);
  const metrics = new Metrics({ processMetrics: true });
  const kc = kubeConfig();
  const coord = kc.makeApiClient(CoordinationV1Api);
  const leader = new LeaderElector(coord, { namespace: cfg.leaseNamespace, name: LEASE_NAME, identity: cfg.identity, log });
  // /healthz answers from the start: not ready until the API server has answered.
  const http = await serveMetrics({ address: cfg.metricsAddress, metrics, log, healthy: async () => leader.readiness().ready });
  if (!await untilApiServer(coord, cfg.leaseNamespace, kc.getCurrentCluster()?.server ?? '(none configured)', log, stopping)) {
    return async () => http.stop();
  }
  await leader.start();
  const core = kc.makeApiClient(CoreV1Api);
  const objects = kc.makeApiClient(CustomObjectsApi);
  const changes = new ObjectChanges(kc, objects, [PLURAL.volume, PLURAL.snapshot], log);
  await changes.start();
  const backend = new KubeBackend(objects, { topologyKey: TOPOLOGY_KEY, nodeExists: (name) => nodeExists(core, name), changes });
  const controller = leaderOnly(new ControllerService(backend, { fsType: cfg.defaultFs }), leader);
  const groupController = leaderOnly(new GroupControllerService(backend, new KubeGroupBackend(objects, backend)), leader);
  const forwarding = snapshotMetadataForwarding(objects, env);
  const identity = new IdentityService({ ready: async () => leader.readiness() }, true, true, forwarding !== undefined);
  const snapshotMetadata = forwarding ? { snapshotMetadata: forwarding.rpcs } : {};
  const server = await serve(cfg.endpoint, { identity, controller, groupController, ...snapshotMetadata }, { log, metrics });
  return async () => {
    // Stop answering first, so no request runs on a replica that has handed the lease on.
    await new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
    forwarding?.dialer.close();
    await leader.stop();
    changes.stop();
    http.stop();
  };
}

export async function runNode(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<() => Promise<void>> {
  const cfg = buildConfig(parseFlags(argv, 'node'), env, 'node');
  const log = createLogger({ level: cfg.logLevel });
  warnDeprecated(log, cfg.deprecations ?? []);
  logCommands(log);
  await requireSocketDir(cfg.endpoint);
  const metrics = new Metrics({ processMetrics: true });
  const dm = realDeviceMapper(cfg.dmInterface);
  await checkKernel(dm);
  const channel = nodeChannelSettings(env);
  const starting = startKubeNode(background, {
    ...(channel ? { channel } : {}),
    kc: kubeConfig(), node: cfg.nodeId, dm, mounter: realMounter(cfg.mountInterface), loops: new LosetupLoopDevices(), log, metrics,
    pool: cfg.pool, overprovisionRatio: cfg.overprovisionRatio, defaultFs: cfg.defaultFs,
    stateDir: cfg.stateDir, nodePathRoots: cfg.nodePathRoots, ...(cfg.growth ? { growth: cfg.growth } : {}),
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

/**
 * SnapshotMetadata on the controller's socket, forwarded to the snapshot's node over the channel.
 * Not leader-only: it only reads, and each replica's sidecar calls its own replica.
 */
function snapshotMetadataForwarding(objects: CustomObjectsApi, env: NodeJS.ProcessEnv): { rpcs: SnapshotMetadataRpcs; dialer: ChannelDialer } | undefined {
  const settings = controllerChannelSettings(env);
  if (!settings) return undefined;
  const dialer = new ChannelDialer({ lookup: publishedEndpoint(objects), token: tokenFile(settings.tokenFile) });
  const rpcs = snapshotMetadataForwarder({ locate: snapshotLocator(objects), dialer, service: loadCsi().csi.v1.SnapshotMetadata.service });
  return { rpcs, dialer };
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
