import { hostname } from 'node:os';
import { isAbsolute, join, normalize } from 'node:path';
import type { FsType } from '../mount/types.ts';
import { SUPPORTED_FS } from '../mount/types.ts';
import type { GrowthSettings } from '../pool/grow.ts';
import type { PoolSource } from '../pool/provision.ts';
import { parseCommandLine, parseRatio, parseSize, UsageError } from './flags.ts';

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
}

export type DmInterface = 'ioctl' | 'dmsetup';
export type MountInterface = 'syscall' | 'commands';

export const FLAG_SPEC = {
  endpoint: { type: 'string' },
  'state-dir': { type: 'string' },
  'node-id': { type: 'string' },
  'pool-name': { type: 'string' },
  'pool-existing': { type: 'boolean' },
  'pool-data-device': { type: 'string' },
  'pool-metadata-device': { type: 'string' },
  'loop-data-size': { type: 'string' },
  'loop-metadata-size': { type: 'string' },
  'block-size': { type: 'string' },
  'skip-block-zeroing': { type: 'boolean' },
  'error-if-no-space': { type: 'boolean' },
  'default-fs': { type: 'string' },
  'overprovision-ratio': { type: 'string' },
  'metrics-address': { type: 'string' },
  'log-level': { type: 'string' },
  'dm-interface': { type: 'string' },
  'mount-interface': { type: 'string' },
  'node-path-root': { type: 'string', multiple: true },
  'pool-grow-max': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

export const USAGE = `Flags (environment variable in brackets):
  --endpoint unix:///path      CSI socket [CSI_ENDPOINT] (default unix:///run/dmthin-csi/csi.sock)
  --state-dir DIR              records and loop files [DMTHIN_STATE_DIR] (default /var/lib/dmthin-csi)
  --node-id ID                 node name for topology [NODE_ID] (default: hostname)
  --pool-name NAME             dm name of the thin pool (default dmthin-pool)
  --pool-existing              adopt a pool that must already exist; never create one
  --pool-data-device DEV       build the pool from this data device ...
  --pool-metadata-device DEV   ... and this metadata device (zeroed or already dm-thin metadata)
  --loop-data-size SIZE        default pool: sparse data file size (default 256Gi)
  --loop-metadata-size SIZE    default pool: sparse metadata file size (default 1Gi)
  --block-size SIZE            pool data block size, 64Ki..1Gi in 64Ki steps (default 64Ki)
  --skip-block-zeroing         do not zero newly provisioned blocks (faster; a new volume may then
                               read old data of a deleted one: only for single-tenant hosts)
  --error-if-no-space          fail writes at once when the pool is full instead of queueing them
  --default-fs ext4|xfs        filesystem when neither the request nor the class names one (default ext4)
  --overprovision-ratio N      capacity = free pool space x N (default 1)
  --metrics-address HOST:PORT  serve Prometheus /metrics there [METRICS_ADDRESS]
  --log-level LEVEL            error, warn, info, debug [LOG_LEVEL] (default info)
  --dm-interface ioctl|dmsetup device-mapper in process, or one dmsetup run per step [DMTHIN_DM_INTERFACE] (default ioctl)
  --mount-interface syscall|commands
                               mount(2) in process, or one mount/umount run per call (for a platform
                               where the FFI cannot load) [DMTHIN_MOUNT_INTERFACE] (default syscall)
  --node-path-root DIR         repeatable: the node service mounts only at staging and target paths
                               under one of these (the kubelet's directory); default anywhere
  --pool-grow-max SIZE         file pool: grow the data file by itself when the pool runs low, up to
                               SIZE, while its filesystem has room (default: no automatic growth)`;

type Values = {
  [K in keyof typeof FLAG_SPEC]?: (typeof FLAG_SPEC)[K] extends { multiple: true } ? string[] : (typeof FLAG_SPEC)[K]['type'] extends 'boolean' ? boolean : string
};

export function parseFlags(argv: string[]): Values {
  return parseCommandLine(argv, FLAG_SPEC, USAGE) as Values;
}

function poolSource(v: Values, stateDir: string): PoolSource {
  const name = v['pool-name'] ?? 'dmthin-pool';
  if (!/^[A-Za-z0-9_.+-]{1,100}$/.test(name)) throw new UsageError(`--pool-name "${name}" is not a valid device-mapper name`);
  const blockSectors = parseSize(v['block-size'] ?? '64Ki', '--block-size') / 512;
  const features = [...(v['skip-block-zeroing'] ? ['skip_block_zeroing'] : []), ...(v['error-if-no-space'] ? ['error_if_no_space'] : [])];
  if (v['pool-existing']) return { kind: 'existing', name };
  const data = v['pool-data-device'];
  const meta = v['pool-metadata-device'];
  if (data || meta) {
    if (!data || !meta) throw new UsageError('--pool-data-device and --pool-metadata-device go together');
    return { kind: 'devices', name, dataDevice: data, metadataDevice: meta, blockSectors, features };
  }
  return {
    kind: 'loop', name, dir: join(stateDir, 'pool'), blockSectors, features,
    dataBytes: parseSize(v['loop-data-size'] ?? '256Gi', '--loop-data-size'),
    metadataBytes: parseSize(v['loop-metadata-size'] ?? '1Gi', '--loop-metadata-size'),
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

export function buildConfig(v: Values, env: NodeJS.ProcessEnv = process.env): DriverConfig {
  const stateDir = v['state-dir'] ?? env.DMTHIN_STATE_DIR ?? '/var/lib/dmthin-csi';
  const defaultFs = v['default-fs'] ?? 'ext4';
  const dmInterface = v['dm-interface'] ?? env.DMTHIN_DM_INTERFACE ?? 'ioctl';
  if (dmInterface !== 'ioctl' && dmInterface !== 'dmsetup') throw new UsageError(`--dm-interface "${dmInterface}" is not ioctl or dmsetup`);
  const mountInterface = v['mount-interface'] ?? env.DMTHIN_MOUNT_INTERFACE ?? 'syscall';
  if (mountInterface !== 'syscall' && mountInterface !== 'commands') throw new UsageError(`--mount-interface "${mountInterface}" is not syscall or commands`);
  if (!(SUPPORTED_FS as readonly string[]).includes(defaultFs)) throw new UsageError(`--default-fs "${defaultFs}" is not supported (use ext4 or xfs)`);
  return {
    endpoint: v.endpoint ?? env.CSI_ENDPOINT ?? 'unix:///run/dmthin-csi/csi.sock',
    stateDir,
    nodeId: v['node-id'] ?? env.NODE_ID ?? hostname(),
    pool: poolSource(v, stateDir),
    defaultFs: defaultFs as FsType,
    overprovisionRatio: parseRatio(v['overprovision-ratio'] ?? '1', '--overprovision-ratio'),
    metricsAddress: v['metrics-address'] ?? env.METRICS_ADDRESS,
    logLevel: v['log-level'] ?? env.LOG_LEVEL ?? 'info',
    dmInterface,
    mountInterface,
    nodePathRoots: nodePathRoots(v['node-path-root'] ?? []),
    ...(v['pool-grow-max'] ? { growth: { maxDataBytes: parseSize(v['pool-grow-max'], '--pool-grow-max') } } : {}),
  };
}

/** `dmthin-csi controller`: Identity + Controller only, so none of the pool's or node's flags. */
export const CONTROLLER_FLAG_SPEC = {
  endpoint: { type: 'string' },
  'metrics-address': { type: 'string' },
  'lease-namespace': { type: 'string' },
  'default-fs': { type: 'string' },
  'log-level': { type: 'string' },
} as const;

export const CONTROLLER_USAGE = `dmthin-csi controller [flags]
  --endpoint unix:///path      CSI socket [CSI_ENDPOINT] (default unix:///csi/csi.sock)
  --metrics-address HOST:PORT  serve Prometheus /metrics there [METRICS_ADDRESS]
  --lease-namespace NS         namespace of the leader Lease [POD_NAMESPACE] (default kube-system)
  --default-fs ext4|xfs        filesystem when neither the request nor the class names one (default ext4)
  --log-level LEVEL            error, warn, info, debug [LOG_LEVEL] (default info)
Kubernetes access: in-cluster config or KUBECONFIG.`;

export interface ControllerConfig {
  endpoint: string;
  metricsAddress: string | undefined;
  leaseNamespace: string;
  /** This replica's name in the Lease. */
  identity: string;
  defaultFs: string;
  logLevel: string;
}

export function controllerConfig(argv: string[], env: NodeJS.ProcessEnv = process.env): ControllerConfig {
  const v = parseCommandLine(argv, CONTROLLER_FLAG_SPEC, CONTROLLER_USAGE);
  return {
    endpoint: v.endpoint ?? env.CSI_ENDPOINT ?? 'unix:///csi/csi.sock',
    metricsAddress: v['metrics-address'] ?? env.METRICS_ADDRESS,
    leaseNamespace: v['lease-namespace'] ?? env.POD_NAMESPACE ?? 'kube-system',
    identity: env.POD_NAME ?? hostname(),
    defaultFs: v['default-fs'] ?? 'ext4',
    logLevel: v['log-level'] ?? env.LOG_LEVEL ?? 'info',
  };
}
