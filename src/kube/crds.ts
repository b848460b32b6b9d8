/**
 * The four CRDs of dmthin.csi.io, defined once: the spec and status schemas here are both what
 * the apiserver validates (scripts/generate-crds.ts writes deploy/crds/ and the chart's crds/
 * from CRDS) and the TypeScript types of src/kube/types.ts (Infer<typeof ...>).
 * The CEL rules (x-kubernetes-validations) are in forms every supported server accepts:
 * kube-apiserver 1.24's cost estimator refuses `has(self.x) == has(oldSelf.x)` as over budget,
 * so presence is compared with && and || instead (test/unit/deploy/real-apiserver.test.ts runs
 * them on 1.24 and 1.26, crd-rules.test.ts evaluates them with a CEL implementation).
 */
import { POOL_CONDITIONS } from '../pool/health.ts';
import { DEVICE_STATES, type DeviceState } from '../state/types.ts';
import { s, type Schema } from './schema.ts';
import { GROUP, KIND, PLURAL, VERSION, type Condition } from './types.ts';

const described = (description?: string) => (description === undefined ? {} : { description });
/** A Kubernetes object name (DNS subdomain). */
const objectName = (description?: string) => s.string({ minLength: 1, maxLength: 253, ...described(description) });
const csiName = (description?: string) => s.string({ minLength: 1, maxLength: 128, ...described(description) });

/** A byte count as a quantity (1Gi, 15.8Gi), written with the integer it shows, for reading only. */
const quantityText = (of: string) => s.string({ maxLength: 32, description: `${of} as a quantity, for kubectl's columns; ${of} is the exact figure.` });

/** Conditions as the code writes them: every field set (the schema requires only type and status). */
const conditions = s.array(s.narrow<Condition>()(s.object({
  type: s.string(),
  status: s.enum(['True', 'False', 'Unknown']),
  reason: s.string(),
  message: s.string(),
  lastTransitionTime: s.string({ format: 'date-time' }),
}, { required: ['type', 'status'] })));

export const thinPoolSpec = s.object({
  nodeName: objectName(),
  poolName: s.string({ minLength: 1, maxLength: 100, description: 'device-mapper name of the pool.' }),
  source: s.enum(['existing', 'devices', 'loop']),
  dataDevice: s.string(),
  metadataDevice: s.string(),
}, {
  required: ['nodeName', 'poolName'],
  'x-kubernetes-validations': [{ rule: 'self.nodeName == oldSelf.nodeName', message: 'spec.nodeName is immutable' }],
});

export const poolHealth = s.enum(POOL_CONDITIONS);

export const thinPoolStatus = s.object({
  poolName: s.string(),
  transactionId: s.int64({ minimum: 0 }),
  health: poolHealth,
  reasons: s.array(s.string()),
  dataTotalBytes: s.int64({ minimum: 0 }),
  dataUsedBytes: s.int64({ minimum: 0 }),
  dataAvailableBytes: s.int64({ minimum: 0, description: 'Data bytes the pool can still take: its free space, for a file pool no more than the filesystem under its data file can still give.' }),
  metadataTotalBytes: s.int64({ minimum: 0 }),
  metadataUsedBytes: s.int64({ minimum: 0 }),
  /** Free data space x the agent's overprovision ratio (0 when not writable). */
  capacityBytes: s.int64({ minimum: 0, description: 'Bytes a new volume may claim: dataAvailableBytes x overprovision ratio (0 when the pool takes no new volumes).' }),
  devices: s.integer({ minimum: 0 }),
  orphans: s.integer({ minimum: 0 }),
  metadataSnapshotHeld: s.boolean({ description: 'The agent holds (or, after a crash, held) a metadata snapshot of the pool.' }),
  // The byte counts above as quantities, for kubectl's columns (which cannot format integers).
  dataSize: quantityText('dataTotalBytes'),
  dataUsed: quantityText('dataUsedBytes'),
  capacity: quantityText('capacityBytes'),
  lastReconcileTime: s.string({ format: 'date-time' }),
  conditions,
  /** Where the controller reaches this node's agent (src/kube/channel/): absent while the agent serves no channel. */
  channel: s.object({
    address: s.string({ minLength: 1, description: 'host:port of the agent\'s channel (the pod\'s IP).' }),
    fingerprint: s.string({ minLength: 1, description: 'SHA-256 of the agent\'s certificate (AB:CD:...): the controller accepts no other.' }),
    certificate: s.string({ minLength: 1, description: 'The agent\'s self-signed certificate (PEM), pinned by the fingerprint.' }),
  }, { required: ['address', 'fingerprint', 'certificate'], description: 'The agent\'s end of the controller-node channel.' }),
});

/** The device states (DEVICE_STATES, src/state/types.ts) plus Pending: the CR exists, no agent has claimed it yet. */
const crState = s.enum(['Pending', ...DEVICE_STATES]);

/** Device fields shared by ThinVolume and ThinSnapshot status. */
const deviceStatusProps = {
  state: crState,
  /** 24-bit thin device id inside the pool. */
  deviceId: s.integer({ minimum: 0, maximum: 16777215 }),
  sizeBytes: s.int64({ minimum: 0 }),
  /** gRPC code name of the last failure (RESOURCE_EXHAUSTED, INTERNAL...). */
  code: s.string(),
  message: s.string(),
  /** For Faulty: the state it failed in, so a repair knows what to finish. */
  faultyFrom: s.string<DeviceState>(),
  updatedAt: s.string(),
  observedGeneration: s.int64(),
  conditions,
};

export const thinVolumeSpec = s.object({
  nodeName: objectName('Node whose pool holds the device (also label dmthin.csi.io/node).'),
  sizeBytes: s.int64({ minimum: 1, description: 'Requested size; only ever raised (expansion).' }),
  accessType: s.enum(['mount', 'block']),
  fsType: s.enum(['', 'ext4', 'xfs']),
  csiName: csiName('CSI name the id was derived from.'),
  source: s.object({ kind: s.enum(['snapshot', 'volume']), name: s.string({ minLength: 1 }) }, { required: ['kind', 'name'] }),
  size: quantityText('sizeBytes'),
  claim: s.object({
    pvName: s.string({ maxLength: 253 }),
    pvcName: s.string({ maxLength: 253 }),
    pvcNamespace: s.string({ maxLength: 63 }),
  }, { description: 'The PersistentVolume and claim the volume was made for (external-provisioner --extra-create-metadata).' }),
}, {
  required: ['nodeName', 'sizeBytes', 'accessType', 'csiName'],
  // The node agent of spec.nodeName owns the device: a spec edited under it would orphan the
  // device (another node) or promise what was never made (a smaller size, another source).
  'x-kubernetes-validations': [
    { rule: 'self.nodeName == oldSelf.nodeName', message: "spec.nodeName is immutable: the device lives in that node's pool" },
    { rule: 'self.sizeBytes >= oldSelf.sizeBytes', message: 'spec.sizeBytes can only grow' },
    { rule: 'self.accessType == oldSelf.accessType && self.csiName == oldSelf.csiName', message: 'spec.accessType and spec.csiName are immutable' },
    { rule: '(has(self.fsType) && has(oldSelf.fsType) && self.fsType == oldSelf.fsType) || (!has(self.fsType) && !has(oldSelf.fsType))', message: 'spec.fsType is immutable' },
    { rule: '(has(self.source) && has(oldSelf.source) && self.source == oldSelf.source) || (!has(self.source) && !has(oldSelf.source))', message: 'spec.source is immutable' },
    { rule: '(has(self.claim) && has(oldSelf.claim) && self.claim == oldSelf.claim) || (!has(self.claim) && !has(oldSelf.claim))', message: 'spec.claim is immutable' },
  ],
});

export const thinVolumeStatus = s.object({
  ...deviceStatusProps,
  code: s.string({ description: 'gRPC code name of the last failure.' }),
});

export const thinSnapshotSpec = s.object({
  nodeName: objectName(),
  sourceVolume: s.string({ minLength: 1, description: 'Name of the ThinVolume snapshotted.' }),
  csiName: csiName(),
  /** The ThinGroupSnapshot this snapshot is a member of; the group's agent work makes and deletes it. */
  group: s.string({ minLength: 1, description: 'Name of the ThinGroupSnapshot this snapshot is a member of: the group makes and deletes it.' }),
  size: quantityText('the source\'s sizeBytes'),
}, {
  required: ['nodeName', 'sourceVolume', 'csiName'],
  'x-kubernetes-validations': [{ rule: 'self == oldSelf', message: 'spec is immutable: a snapshot is taken once, of one volume, on one node' }],
});

export const thinSnapshotStatus = s.object({ ...deviceStatusProps, readyToUse: s.boolean() });

const memberNames = (description: string) => s.array(objectName(), { minItems: 1, maxItems: 256, description });

/** Members are ThinSnapshots named in `members`, in the order of `sourceVolumes`, each owned by the group. */
export const thinGroupSnapshotSpec = s.object({
  nodeName: objectName(),
  csiName: csiName(),
  sourceVolumes: memberNames('Names of the ThinVolumes snapshotted together.'),
  members: memberNames('Names of the member ThinSnapshots, in the order of sourceVolumes.'),
}, {
  required: ['nodeName', 'csiName', 'sourceVolumes', 'members'],
  'x-kubernetes-validations': [{ rule: 'self == oldSelf', message: 'spec is immutable: a group snapshot is taken once, of one set of volumes, on one node' }],
});

export const thinGroupSnapshotStatus = s.object({
  state: s.enum(['Pending', 'Creating', 'Ready', 'Removing']),
  readyToUse: s.boolean(),
  code: s.string(),
  message: s.string(),
  updatedAt: s.string(),
});

interface Column { name: string; type: 'string' | 'integer' | 'boolean' | 'date'; jsonPath: string; priority?: number }
const col = (name: string, type: Column['type'], jsonPath: string, priority?: number): Column =>
  ({ name, type, jsonPath, ...(priority === undefined ? {} : { priority }) });
const NODE = col('Node', 'string', '.spec.nodeName');
const AGE = col('Age', 'date', '.metadata.creationTimestamp');
const STATE = col('State', 'string', '.status.state');
const READY = col('Ready', 'boolean', '.status.readyToUse', 1);
/** A Faulty device's reason (or why its creation was refused): empty while all is well. */
const REASON = col('Reason', 'string', '.status.message');
/**
 * A device's first columns, then its id and exact size in the wide view. Size is the spec's
 * quantity: an object made before it was written shows none, and its exact Bytes still.
 */
const DEVICE = [NODE, col('Size', 'string', '.spec.size'), STATE];
const DEVICE_WIDE = [col('DeviceID', 'integer', '.status.deviceId', 1), col('Bytes', 'integer', '.status.sizeBytes', 1)];

interface CrdDef {
  /** What the resource is, for the head of the generated file. */
  doc: string;
  key: keyof typeof KIND;
  shortName: string;
  columns: Column[];
  spec: Schema<unknown>;
  status: Schema<unknown>;
}

export interface Crd { fileName: string; doc: string; object: Record<string, unknown> }

function crd(d: CrdDef): Crd {
  const plural = PLURAL[d.key];
  const kind = KIND[d.key];
  const openAPIV3Schema = s.object({
    apiVersion: s.string(), kind: s.string(), metadata: s.object({}), spec: d.spec, status: d.status,
  }, { required: ['spec'] });
  return {
    fileName: `${GROUP}_${plural}.yaml`,
    doc: d.doc,
    object: {
      apiVersion: 'apiextensions.k8s.io/v1',
      kind: 'CustomResourceDefinition',
      metadata: { name: `${plural}.${GROUP}` },
      spec: {
        group: GROUP,
        scope: 'Cluster',
        names: { plural, singular: plural.replace(/s$/, ''), kind, listKind: `${kind}List`, shortNames: [d.shortName], categories: ['dmthin'] },
        versions: [{
          name: VERSION, served: true, storage: true, subresources: { status: {} },
          additionalPrinterColumns: d.columns, schema: { openAPIV3Schema },
        }],
      },
    },
  };
}

/** In the order of their files' names. */
export const CRDS: readonly Crd[] = [
  crd({
    doc: 'ThinGroupSnapshot: one instant across ThinVolumes of one node\'s pool. Its member ThinSnapshots\n'
      + '(spec.group names it) are owned by it and made by the node agent in one freeze, all or none.',
    key: 'group', shortName: 'tgs', spec: thinGroupSnapshotSpec, status: thinGroupSnapshotStatus,
    columns: [NODE, STATE, AGE, READY],
  }),
  crd({
    doc: 'ThinPool: the thin pool of one node (name = node name), kept by that node\'s agent.',
    key: 'pool', shortName: 'tp', spec: thinPoolSpec, status: thinPoolStatus,
    columns: [NODE, col('Size', 'string', '.status.dataSize'), col('Used', 'string', '.status.dataUsed'), col('Capacity', 'string', '.status.capacity'),
      col('Health', 'string', '.status.health'), AGE, col('Devices', 'integer', '.status.devices', 1), col('TX', 'integer', '.status.transactionId', 1)],
  }),
  crd({
    doc: 'ThinSnapshot: a thin snapshot of a ThinVolume, always in its source\'s pool (same node).',
    key: 'snapshot', shortName: 'ts', spec: thinSnapshotSpec, status: thinSnapshotStatus,
    columns: [...DEVICE, AGE, REASON, READY, col('Source', 'string', '.spec.sourceVolume', 1), ...DEVICE_WIDE],
  }),
  crd({
    doc: 'ThinVolume: one thin volume of a node\'s pool. Made by the controller (CreateVolume), turned\n'
      + 'into a device by the node agent of spec.nodeName, which reports through the status subresource.\n'
      + 'CEL rules in forms every supported server accepts: kube-apiserver 1.24\'s cost estimator refuses\n'
      + '`has(self.x) == has(oldSelf.x)` as over budget, so presence is compared with && and || instead.',
    key: 'volume', shortName: 'tv', spec: thinVolumeSpec, status: thinVolumeStatus,
    columns: [...DEVICE, col('PVC', 'string', '.spec.claim.pvcName'), AGE, REASON, col('ClaimNamespace', 'string', '.spec.claim.pvcNamespace', 1),
      col('PV', 'string', '.spec.claim.pvName', 1), col('Source', 'string', '.spec.source.name', 1), ...DEVICE_WIDE],
  }),
];
