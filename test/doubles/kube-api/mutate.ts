// Object preparation rules (create / update / status update) of the Kubernetes API
// server TEST DOUBLE — pure functions: they compute the next object or throw ApiError.
import { checkRules } from './cel.ts';
import { ApiError, STALE_MESSAGE, badRequest, conflict, invalid } from './errors.ts';
import { apiVersionOf } from './registry.ts';
import type { KubeObject, ObjectMeta, ResourceDef } from './types.ts';
import { clone, deepEqual, isPlainObject, nowRfc3339, randomNameSuffix } from './util.ts';

const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/** Metadata fields only the server sets; preserved from the stored object on update. */
const SYSTEM_META = [
  'name', 'namespace', 'uid', 'creationTimestamp', 'deletionTimestamp',
  'deletionGracePeriodSeconds', 'generation', 'resourceVersion', 'selfLink',
] as const;

export function requireObject(body: unknown): KubeObject & { metadata: ObjectMeta } {
  if (!isPlainObject(body)) throw badRequest('the request body must be a JSON object');
  const meta = body['metadata'] ?? {};
  if (!isPlainObject(meta)) throw badRequest('metadata must be an object');
  return { ...body, metadata: { ...meta } } as KubeObject & { metadata: ObjectMeta };
}

function checkTypeMeta(def: ResourceDef, obj: KubeObject): void {
  const want = apiVersionOf(def);
  if (def.custom && (obj.kind === undefined || obj.apiVersion === undefined)) {
    throw badRequest(`Object 'Kind' is missing in '${JSON.stringify(obj)}'`);
  }
  if (obj.apiVersion !== undefined && obj.apiVersion !== want) {
    throw badRequest(`the API version in the data (${obj.apiVersion}) does not match the expected API version (${want})`);
  }
  if (obj.kind !== undefined && obj.kind !== def.kind) {
    throw badRequest(`the kind in the data (${obj.kind}) does not match the expected kind (${def.kind})`);
  }
}

function checkNamespace(def: ResourceDef, meta: ObjectMeta, namespace: string): void {
  if (!def.namespaced) return;
  if (meta.namespace !== undefined && meta.namespace !== '' && meta.namespace !== namespace) {
    throw badRequest('the namespace of the provided object does not match the namespace sent on the request');
  }
}

function checkName(def: ResourceDef, name: string): void {
  if (name.length > 253 || !DNS_SUBDOMAIN.test(name)) {
    throw invalid(def, name, {
      reason: 'FieldValueInvalid', field: 'metadata.name',
      message: `Invalid value: "${name}": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character`,
    });
  }
}

const MICRO_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}(Z|[+-]\d{2}:\d{2})$/;

/** metav1.MicroTime decoding of the real server: RFC 3339 with exactly 6 fractional digits. */
function checkMicroTimes(def: ResourceDef, obj: KubeObject): void {
  for (const path of def.microTimeFields) {
    let v: unknown = obj;
    for (const seg of path.split('.')) v = isPlainObject(v) ? v[seg] : undefined;
    if (v === undefined || v === null) continue;
    if (typeof v !== 'string' || !MICRO_TIME.test(v)) {
      throw badRequest(`${def.kind} in version "${def.version}" cannot be handled as a ${def.kind}: ` +
        `${path}: parsing time ${JSON.stringify(v)} as "2006-01-02T15:04:05.000000Z07:00": cannot parse (test double: MicroTime needs exactly 6 fractional digits)`);
    }
  }
}

function finalizerList(meta: ObjectMeta | undefined): string[] {
  return Array.isArray(meta?.finalizers) ? meta.finalizers : [];
}

/** The object a create stores (without resourceVersion — the store assigns it). */
export function prepareCreate(def: ResourceDef, namespace: string, body: unknown, now: Date): KubeObject {
  const obj = requireObject(body);
  checkTypeMeta(def, obj);
  checkMicroTimes(def, obj);
  const meta = obj.metadata;
  checkNamespace(def, meta, namespace);
  if (meta.resourceVersion !== undefined && meta.resourceVersion !== '') {
    throw new ApiError(500, 'InternalError', 'Internal error occurred: resourceVersion should not be set on objects to be created');
  }
  let name = meta.name ?? '';
  if (name === '' && typeof meta.generateName === 'string' && meta.generateName !== '') {
    name = meta.generateName + randomNameSuffix();
  }
  if (name === '') {
    throw invalid(def, '', { reason: 'FieldValueRequired', field: 'metadata.name', message: 'Required value: name or generateName is required' });
  }
  checkName(def, name);
  const out: KubeObject = { ...clone(obj), apiVersion: apiVersionOf(def), kind: def.kind };
  const m: ObjectMeta = { ...clone(meta), name, uid: crypto.randomUUID(), creationTimestamp: nowRfc3339(now), generation: 1 };
  if (def.namespaced) m.namespace = namespace;
  else delete m.namespace;
  delete m.deletionTimestamp;
  delete m.deletionGracePeriodSeconds;
  delete m.resourceVersion;
  out.metadata = m;
  if (def.custom && def.statusSubresource) delete out['status'];
  checkRules(def, undefined, out);
  return out;
}

/** 409 if `given` is a resourceVersion other than the stored one; 422 if required and missing. */
export function checkResourceVersion(def: ResourceDef, old: KubeObject, given: unknown, required: boolean): void {
  const name = old.metadata?.name ?? '';
  if (given === undefined || given === null || given === '') {
    if (required) {
      throw invalid(def, name, {
        reason: 'FieldValueInvalid', field: 'metadata.resourceVersion',
        message: 'Invalid value: 0x0: must be specified for an update',
      });
    }
    return;
  }
  if (given !== old.metadata?.resourceVersion) throw conflict(def, name, STALE_MESSAGE);
}

function checkIdentity(def: ResourceDef, old: KubeObject, obj: KubeObject & { metadata: ObjectMeta }): void {
  checkTypeMeta(def, obj);
  const name = old.metadata?.name ?? '';
  if (obj.metadata.name !== name) {
    throw badRequest(`the name of the object (${obj.metadata.name ?? ''}) does not match the name on the URL (${name})`);
  }
  checkNamespace(def, obj.metadata, old.metadata?.namespace ?? '');
  const uid = obj.metadata.uid;
  if (uid !== undefined && uid !== '' && uid !== old.metadata?.uid) {
    throw conflict(def, name, `Precondition failed: UID in precondition: ${uid}, UID in object meta: ${old.metadata?.uid ?? ''}`);
  }
}

function withoutMetadata(obj: KubeObject): Record<string, unknown> {
  const { metadata: _m, apiVersion: _a, kind: _k, ...rest } = obj;
  return rest;
}

function checkFinalizers(def: ResourceDef, old: KubeObject, next: KubeObject): void {
  if (old.metadata?.deletionTimestamp === undefined) return;
  const before = new Set(finalizerList(old.metadata));
  const added = finalizerList(next.metadata).filter((f) => !before.has(f));
  if (added.length > 0) {
    throw invalid(def, old.metadata.name ?? '', {
      reason: 'FieldValueForbidden', field: 'metadata.finalizers',
      message: `Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers ${JSON.stringify(added)}`,
    });
  }
}

export interface UpdateOptions {
  /** PUT without metadata.resourceVersion is refused (custom resources). */
  requireResourceVersion: boolean;
}

/** The object a main-resource PUT (or patch result) stores; `.status` changes are dropped when a status subresource exists. */
export function prepareUpdate(def: ResourceDef, old: KubeObject, body: unknown, opts: UpdateOptions): KubeObject {
  const obj = requireObject(body);
  checkIdentity(def, old, obj);
  checkMicroTimes(def, obj);
  checkResourceVersion(def, old, obj.metadata.resourceVersion, opts.requireResourceVersion);
  const next: KubeObject = { ...clone(obj), apiVersion: apiVersionOf(def), kind: def.kind };
  const meta: ObjectMeta = { ...clone(obj.metadata) };
  for (const k of SYSTEM_META) {
    if (old.metadata?.[k] === undefined) delete meta[k];
    else (meta as Record<string, unknown>)[k] = clone(old.metadata[k]);
  }
  next.metadata = meta;
  if (def.statusSubresource) {
    if (old['status'] === undefined) delete next['status'];
    else next['status'] = clone(old['status']);
  }
  checkFinalizers(def, old, next);
  checkRules(def, old, next);
  if (!deepEqual(withoutMetadata(old), withoutMetadata(next))) {
    meta.generation = (old.metadata?.generation ?? 0) + 1;
  }
  return next;
}

/** The object a `/status` PUT (or patch result) stores: the stored object with only `.status` replaced. */
export function prepareStatusUpdate(def: ResourceDef, old: KubeObject, body: unknown, requireRv: boolean): KubeObject {
  const obj = requireObject(body);
  checkIdentity(def, old, obj);
  checkResourceVersion(def, old, obj.metadata.resourceVersion, requireRv);
  const next = clone(old);
  if (obj['status'] === undefined) delete next['status'];
  else next['status'] = clone(obj['status']);
  return next;
}

/** Marks an object with finalizers as being deleted (deletionTimestamp, grace 0, generation+1). */
export function markDeleting(old: KubeObject, now: Date): KubeObject {
  const next = clone(old);
  const meta: ObjectMeta = { ...(next.metadata ?? {}) };
  meta.deletionTimestamp = nowRfc3339(now);
  meta.deletionGracePeriodSeconds = 0;
  if (typeof meta.generation === 'number' && meta.generation > 0) meta.generation += 1;
  next.metadata = meta;
  return next;
}

export function hasFinalizers(obj: KubeObject): boolean {
  return finalizerList(obj.metadata).length > 0;
}

/** True when two stored states differ only by resourceVersion (a no-op write). */
export function sameContent(a: KubeObject, b: KubeObject): boolean {
  const strip = (o: KubeObject): KubeObject => ({ ...o, metadata: { ...o.metadata, resourceVersion: undefined } });
  return deepEqual(strip(a), strip(b));
}
