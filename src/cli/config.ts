import { hostname } from 'node:os';
import { isAbsolute, join, normalize } from 'node:path';
import type { FsType } from '../mount/types.ts';
import { SUPPORTED_FS } from '../mount/types.ts';
import type { GrowthSettings } from '../pool/grow.ts';
import type { PoolSource } from '../pool/provision.ts';
import { parseRatio, parseSize, UsageError } from './flags.ts';
import { type FlagDef, type FlagValues, flagLines, LOG_LEVEL_FLAG, logLevel, Options } from './options.ts';

export interface DriverConfig {
  endpoint: string;
  stateDir: string;
  nodeId: string;
  pool: PoolSource;
  defaultFs: FsType;
  overprovisionRatio: number;
  metricsAddress: string | undefined;
  logLevel: string;
  /** How device-mapper is reached: ioctls in process (default) or one dmsetup run per step. */
  dmInterface?: DmInterface;
  /** How filesystems are mounted: mount(2) in process (default) or one mount/umount run per call. */
  mountInterface?: MountInterface;
  /** `--node-path-root`: where staging and target paths may lie (empty: anywhere). */
  nodePathRoots: string[];
  /** `--pool-grow-max`: a file pool grows by itself on its low-water event up to this size. */
  growth?: GrowthSettings;
  /** Deprecated names the command line or environment used, to log once. */
  deprecations?: string[];
}

export type DmInterface = 'ioctl' | 'dmsetup';
export type MountInterface = 'syscall' | 'commands';

export type Mode = 'standalone' | 'node';

/** Where each mode's CSI socket is by default: the chart's sidecars share /csi with the driver. */
export const DEFAULT_ENDPOINT = { standalone: 'unix:///run/dmthin-csi/csi.sock', kube: 'unix:///csi/csi.sock' } as const;

const endpointFlag = (dflt: string): FlagDef => ({ name: 'endpoint', arg: 'unix:///path', help: ['CSI socket'], env: 'CSI_ENDPOINT', default: dflt });
const METRICS_FLAG: FlagDef = {
  name: 'metrics-address', arg: 'HOST:PORT', help: ['serve Prometheus /metrics and /healthz there'], env: 'DMTHIN_METRICS_ADDRESS', oldEnv: 'METRICS_ADDRESS', defaultText: 'none',
};
const DEFAULT_FS_FLAG: FlagDef = { name: 'default-fs', arg: 'ext4|xfs', help: ['filesystem when neither the request nor the class names one'], default: 'ext4' };

/** The flags of `standalone` and `node`: one pool on this host. */
export function driverFlags(mode: Mode): FlagDef[] {
  return [
    endpointFlag(mode === 'node' ? DEFAULT_ENDPOINT.kube : DEFAULT_ENDPOINT.standalone),
    { name: 'state-dir', arg: 'DIR', help: ['records and loop files'], env: 'DMTHIN_STATE_DIR', default: '/var/lib/dmthin-csi' },
    mode === 'node'
      ? { name: 'node-id', arg: 'NAME', help: ['the Kubernetes node name (required)'], env: 'NODE_NAME', oldEnv: 'NODE_ID' }
      : { name: 'node-id', arg: 'ID', help: ['node name for topology'], env: 'NODE_NAME', oldEnv: 'NODE_ID', defaultText: 'the hostname' },
    { name: 'pool-name', arg: 'NAME', help: ['dm name of the thin pool'], default: 'dmthin-pool' },
    { name: 'pool-existing', help: ['adopt a pool that must already exist; never create one'] },
    { name: 'pool-data-device', arg: 'DEV', help: ['build the pool from this data device ...'] },
    { name: 'pool-metadata-device', arg: 'DEV', help: ['... and this metadata device (zeroed or already dm-thin metadata)'] },
    { name: 'loop-data-size', arg: 'SIZE', help: ['default pool: sparse data file size'], default: '256Gi' },
    { name: 'loop-metadata-size', arg: 'SIZE', help: ['default pool: sparse metadata file size'], default: '1Gi' },
    { name: 'block-size', arg: 'SIZE', help: ['pool data block size, 64Ki..1Gi in 64Ki steps'], default: '64Ki' },
    { name: 'skip-block-zeroing', help: ['do not zero newly provisioned blocks (faster; a new volume may then', 'read old data of a deleted one: only for single-tenant hosts)'] },
    { name: 'error-if-no-space', help: ['fail writes at once when the pool is full instead of queueing them'] },
    DEFAULT_FS_FLAG,
    { name: 'overprovision-ratio', arg: 'N', help: ['capacity = free pool space x N'], default: '1' },
    METRICS_FLAG,
    LOG_LEVEL_FLAG,
    { name: 'dm-interface', arg: 'ioctl|dmsetup', help: ['device-mapper in process, or one dmsetup run per step'], env: 'DMTHIN_DM_INTERFACE', default: 'ioctl' },
    {
      name: 'mount-interface', arg: 'syscall|commands', env: 'DMTHIN_MOUNT_INTERFACE', default: 'syscall',
      help: ['mount(2) in process, or one mount/umount run per call (for a platform', 'where the FFI cannot load)'],
    },
    {
      name: 'node-path-root', arg: 'DIR', multiple: true,
      help: ['repeatable: the node service mounts only at staging and target paths', 'under one of these (the kubelet\'s directory); default anywhere'],
    },
    {
      name: 'pool-grow-max', arg: 'SIZE', defaultText: 'no automatic growth',
      help: ['file pool: grow the data file by itself when the pool runs low, up to', 'SIZE, while its filesystem has room'],
    },
  ];
}

const ENV_NOTE = 'Environment variables in brackets; a flag wins over its variable.';

export const USAGE = `Usage: dmthin-csi [standalone] [flags]
  The Identity, Controller and Node services in one process, records in files under --state-dir.
${flagLines(driverFlags('standalone'))}
${ENV_NOTE}`;

export const NODE_USAGE = `Usage: dmthin-csi node --node-id NAME [flags]
  Kubernetes: the CSI Node service and the node agent of this node's pool; records are custom resources.
${flagLines(driverFlags('node'))}
${ENV_NOTE} Kubernetes access: in-cluster config or KUBECONFIG.`;

/** A command line's values, before the environment and defaults (buildConfig adds them). */
export function parseFlags(argv: string[], mode: Mode = 'standalone'): FlagValues {
  return Options.parse(argv, driverFlags(mode), mode === 'node' ? NODE_USAGE : USAGE, {}).values;
}

function poolSource(o: Options, stateDir: string): PoolSource {
  const name = o.string('pool-name')!;
  if (!/^[A-Za-z0-9_.+-]{1,100}$/.test(name)) throw new UsageError(`--pool-name "${name}" is not a valid device-mapper name`);
  const blockSectors = parseSize(o.string('block-size')!, '--block-size') / 512;
  const features = [...(o.bool('skip-block-zeroing') ? ['skip_block_zeroing'] : []), ...(o.bool('error-if-no-space') ? ['error_if_no_space'] : [])];
  if (o.bool('pool-existing')) return { kind: 'existing', name };
  const data = o.string('pool-data-device');
  const meta = o.string('pool-metadata-device');
  if (data || meta) {
    if (!data || !meta) throw new UsageError('--pool-data-device and --pool-metadata-device go together');
    return { kind: 'devices', name, dataDevice: data, metadataDevice: meta, blockSectors, features };
  }
  return {
    kind: 'loop', name, dir: join(stateDir, 'pool'), blockSectors, features,
    dataBytes: parseSize(o.string('loop-data-size')!, '--loop-data-size'),
    metadataBytes: parseSize(o.string('loop-metadata-size')!, '--loop-metadata-size'),
  };
}

function nodePathRoots(roots: string[]): string[] {
  return roots.map((r) => {
    const t = r.replace(/(?<=.)\/+$/, '');
    if (!isAbsolute(t) || t.includes('\0') || normalize(t) !== t || t === '/') {
      throw new UsageError(`--node-path-root "${r}" must be an absolute, normal directory other than /`);
    }
    return t;
  });
}

export function buildConfig(values: FlagValues, env: NodeJS.ProcessEnv = process.env, mode: Mode = 'standalone'): DriverConfig {
  const o = new Options(values, driverFlags(mode), env);
  const stateDir = o.string('state-dir')!;
  const defaultFs = o.string('default-fs')!;
  const dmInterface = o.string('dm-interface')!;
  if (dmInterface !== 'ioctl' && dmInterface !== 'dmsetup') throw new UsageError(`--dm-interface "${dmInterface}" is not ioctl or dmsetup`);
  const mountInterface = o.string('mount-interface')!;
  if (mountInterface !== 'syscall' && mountInterface !== 'commands') throw new UsageError(`--mount-interface "${mountInterface}" is not syscall or commands`);
  if (!(SUPPORTED_FS as readonly string[]).includes(defaultFs)) throw new UsageError(`--default-fs "${defaultFs}" is not supported (use ext4 or xfs)`);
  const nodeId = o.string('node-id');
  if (mode === 'node' && !nodeId) throw new UsageError(`--node-id is required (the Kubernetes node name)\n${NODE_USAGE}`);
  return {
    endpoint: o.string('endpoint')!,
    stateDir,
    nodeId: nodeId ?? hostname(),
    pool: poolSource(o, stateDir),
    defaultFs: defaultFs as FsType,
    overprovisionRatio: parseRatio(o.string('overprovision-ratio')!, '--overprovision-ratio'),
    metricsAddress: o.string('metrics-address'),
    logLevel: logLevel(o),
    dmInterface,
    mountInterface,
    nodePathRoots: nodePathRoots(o.list('node-path-root')),
    deprecations: o.deprecations,
    ...(o.string('pool-grow-max') ? { growth: { maxDataBytes: parseSize(o.string('pool-grow-max')!, '--pool-grow-max') } } : {}),
  };
}

/** `dmthin-csi controller`: Identity + Controller only, so none of the pool's or node's flags. */
export const CONTROLLER_FLAGS: readonly FlagDef[] = [
  endpointFlag(DEFAULT_ENDPOINT.kube),
  METRICS_FLAG,
  { name: 'lease-namespace', arg: 'NS', help: ['namespace of the leader Lease'], env: 'POD_NAMESPACE', default: 'kube-system' },
  DEFAULT_FS_FLAG,
  LOG_LEVEL_FLAG,
];

export const CONTROLLER_USAGE = `Usage: dmthin-csi controller [flags]
  Kubernetes: the CSI Identity and Controller services, volumes as custom resources; one replica
  leads (a Lease), the others answer UNAVAILABLE. Serves CSI once the API server has answered.
${flagLines(CONTROLLER_FLAGS)}
${ENV_NOTE} The replica's name in the Lease is POD_NAME (default: the hostname).
Kubernetes access: in-cluster config or KUBECONFIG.`;

export interface ControllerConfig {
  endpoint: string;
  metricsAddress: string | undefined;
  leaseNamespace: string;
  /** This replica's name in the Lease. */
  identity: string;
  defaultFs: string;
  logLevel: string;
  /** Deprecated names the command line or environment used, to log once. */
  deprecations: string[];
}

export function controllerConfig(argv: string[], env: NodeJS.ProcessEnv = process.env): ControllerConfig {
  const o = Options.parse(argv, CONTROLLER_FLAGS, CONTROLLER_USAGE, env);
  const defaultFs = o.string('default-fs')!;
  if (!(SUPPORTED_FS as readonly string[]).includes(defaultFs)) throw new UsageError(`--default-fs "${defaultFs}" is not supported (use ext4 or xfs)`);
  return {
    endpoint: o.string('endpoint')!,
    metricsAddress: o.string('metrics-address'),
    leaseNamespace: o.string('lease-namespace')!,
    identity: env.POD_NAME || hostname(),
    defaultFs,
    logLevel: logLevel(o),
    deprecations: o.deprecations,
  };
}
