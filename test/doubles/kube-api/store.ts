// In-memory object store of the Kubernetes API server TEST DOUBLE: one global,
// increasing resourceVersion (like etcd's revision), a bounded event history for
// watches, and the create/update/patch/delete semantics of the real API server.
import { alreadyExists, badRequest, conflict, notFound, tooOld, unsupportedMediaType } from './errors.ts';
import {
  hasFinalizers, markDeleting, prepareCreate, prepareStatusUpdate, prepareUpdate, requireObject, sameContent,
} from './mutate.ts';
import { jsonPatch, mergePatch } from './patch.ts';
import { apiVersionOf, crdResources, storageKey } from './registry.ts';
import type { Registry } from './registry.ts';
import type { ObjectFilter } from './selectors.ts';
import type { KubeObject, ResourceDef, StoredEvent, StoredEventType } from './types.ts';
import { clone, isPlainObject } from './util.ts';

export interface StoreOptions {
  /** Events kept for watches resuming from a resourceVersion; older ones are forgotten (410). Default 1000. */
  historyLimit?: number;
  /** Clock for creationTimestamp / deletionTimestamp. */
  now?: () => Date;
}

export interface ListResult {
  items: KubeObject[];
  resourceVersion: string;
}

export type StoreListener = (event: StoredEvent) => void;

export const PATCH_TYPES = {
  json: 'application/json-patch+json',
  merge: 'application/merge-patch+json',
  strategic: 'application/strategic-merge-patch+json',
  apply: 'application/apply-patch+yaml',
} as const;

export interface DeleteResult {
  object: KubeObject;
  /** False when finalizers keep the object (deletionTimestamp set instead). */
  finished: boolean;
}

export class Store {
  readonly registry: Registry;
  readonly #historyLimit: number;
  readonly #now: () => Date;
  readonly #data = new Map<string, Map<string, KubeObject>>();
  readonly #listeners = new Set<StoreListener>();
  #history: StoredEvent[] = [];
  #rv = 0;
  #compactedRv = 0;

  constructor(registry: Registry, opts: StoreOptions = {}) {
    this.registry = registry;
    this.#historyLimit = Math.max(1, opts.historyLimit ?? 1000);
    this.#now = opts.now ?? (() => new Date());
  }

  /** Latest resourceVersion handed out. */
  get resourceVersion(): number {
    return this.#rv;
  }

  /** Watches from a resourceVersion below this get 410 Expired. */
  get compactedResourceVersion(): number {
    return this.#compactedRv;
  }

  subscribe(fn: StoreListener): () => void {
    this.#listeners.add(fn);
    return () => this.#listeners.delete(fn);
  }

  /** Forgets all history: watches resuming from any older resourceVersion get 410. */
  compact(): void {
    this.#compactedRv = this.#rv;
    this.#history = [];
  }

  /** History after `rv` (exclusive); throws 410 Expired if part of it was forgotten. */
  eventsSince(rv: number): readonly StoredEvent[] {
    if (rv < this.#compactedRv) throw tooOld(rv, this.#compactedRv);
    return this.#history.filter((e) => e.rv > rv);
  }

  get(def: ResourceDef, namespace: string, name: string): KubeObject {
    return this.output(def, this.#require(def, namespace, name));
  }

  list(def: ResourceDef, filter: ObjectFilter): ListResult {
    const items = [...this.#bucket(def).entries()]
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([, o]) => o)
      .filter(filter)
      .map((o) => this.output(def, o));
    return { items, resourceVersion: String(this.#rv) };
  }

  create(def: ResourceDef, namespace: string, body: unknown): KubeObject {
    const isCrd = isCrdResource(def);
    if (isCrd) crdResources(body);
    const obj = prepareCreate(def, namespace, body, this.#now());
    const key = objectKey(obj.metadata?.namespace ?? '', obj.metadata?.name ?? '');
    if (this.#bucket(def).has(key)) throw alreadyExists(def, obj.metadata?.name ?? '');
    obj.metadata = { ...obj.metadata, resourceVersion: String(++this.#rv) };
    this.#bucket(def).set(key, obj);
    this.#emit('ADDED', def, obj);
    if (isCrd) return this.#establishCrd(def, obj);
    return this.output(def, obj);
  }

  /** PUT on the main resource. */
  update(def: ResourceDef, namespace: string, name: string, body: unknown): KubeObject {
    const old = this.#require(def, namespace, name);
    const next = prepareUpdate(def, this.output(def, old), body, { requireResourceVersion: def.custom });
    return this.#commit(def, old, next);
  }

  /** PUT on `/status`. */
  updateStatus(def: ResourceDef, namespace: string, name: string, body: unknown): KubeObject {
    const old = this.#require(def, namespace, name);
    return this.#commit(def, old, prepareStatusUpdate(def, this.output(def, old), body, def.custom));
  }

  /** PATCH on the main resource or `/status`; `contentType` selects the patch kind. */
  patch(def: ResourceDef, namespace: string, name: string, contentType: string, body: unknown, status = false): KubeObject {
    const type = contentType.split(';')[0]?.trim().toLowerCase() ?? '';
    checkPatchType(def, type);
    const raw = this.#bucket(def).get(objectKey(namespace, name));
    if (type === PATCH_TYPES.apply && raw === undefined && !status) {
      return this.create(def, namespace, applyBody(def, name, body));
    }
    if (raw === undefined) throw notFound(def, name);
    const current = this.output(def, raw);
    const patched = applyPatch(current, type, body);
    const next = status
      ? prepareStatusUpdate(def, current, patched, false)
      : prepareUpdate(def, current, patched, { requireResourceVersion: false });
    return this.#commit(def, raw, next);
  }

  delete(def: ResourceDef, namespace: string, name: string, options?: unknown): DeleteResult {
    const old = this.#require(def, namespace, name);
    checkDeletePreconditions(def, old, options);
    if (hasFinalizers(old)) {
      if (old.metadata?.deletionTimestamp !== undefined) return { object: this.output(def, old), finished: false };
      return { object: this.#commit(def, old, markDeleting(old, this.#now())), finished: false };
    }
    this.#bucket(def).delete(objectKey(namespace, name));
    const gone: KubeObject = { ...old, metadata: { ...old.metadata, resourceVersion: String(++this.#rv) } };
    this.#emit('DELETED', def, gone, old);
    return { object: this.output(def, gone), finished: true };
  }

  /** DELETE on a collection: deletes (or marks) every object the filter selects. */
  deleteCollection(def: ResourceDef, filter: ObjectFilter): KubeObject[] {
    const targets = [...this.#bucket(def).values()].filter(filter);
    return targets.map((o) => this.delete(def, o.metadata?.namespace ?? '', o.metadata?.name ?? '').object);
  }

  /**
   * Server-side write for tests (another actor changing an object): `fn` edits a copy freely
   * (status, finalizers…); identity fields are kept; no preconditions. Emits like any write.
   */
  mutate(def: ResourceDef, namespace: string, name: string, fn: (obj: KubeObject) => KubeObject | void): KubeObject {
    const old = this.#require(def, namespace, name);
    const draft = this.output(def, old);
    const res = fn(draft) ?? draft;
    const meta = { ...clone(res.metadata ?? {}) };
    for (const k of ['name', 'namespace', 'uid', 'creationTimestamp', 'resourceVersion'] as const) {
      if (old.metadata?.[k] === undefined) delete meta[k];
      else meta[k] = old.metadata[k];
    }
    return this.#commit(def, old, { ...clone(res), apiVersion: apiVersionOf(def), kind: def.kind, metadata: meta });
  }

  /** A copy of a stored object as served at `def`'s version. */
  output(def: ResourceDef, obj: KubeObject): KubeObject {
    return { ...clone(obj), apiVersion: apiVersionOf(def), kind: def.kind };
  }

  #bucket(def: ResourceDef): Map<string, KubeObject> {
    const k = storageKey(def);
    let b = this.#data.get(k);
    if (b === undefined) {
      b = new Map();
      this.#data.set(k, b);
    }
    return b;
  }

  #require(def: ResourceDef, namespace: string, name: string): KubeObject {
    const o = this.#bucket(def).get(objectKey(namespace, name));
    if (o === undefined) throw notFound(def, name);
    return o;
  }

  /** Stores `next` (or deletes it when it is being deleted and has no finalizers left). */
  #commit(def: ResourceDef, old: KubeObject, next: KubeObject): KubeObject {
    if (sameContent(old, next)) return this.output(def, old);
    next.metadata = { ...next.metadata, resourceVersion: String(++this.#rv) };
    const key = objectKey(old.metadata?.namespace ?? '', old.metadata?.name ?? '');
    if (next.metadata.deletionTimestamp !== undefined && !hasFinalizers(next)) {
      this.#bucket(def).delete(key);
      this.#emit('DELETED', def, next, old);
    } else {
      this.#bucket(def).set(key, next);
      this.#emit('MODIFIED', def, next, old);
    }
    return this.output(def, next);
  }

  #emit(type: StoredEventType, def: ResourceDef, object: KubeObject, prev?: KubeObject): void {
    const rv = Number(object.metadata?.resourceVersion);
    const ev: StoredEvent = prev === undefined
      ? { rv, type, resource: storageKey(def), object }
      : { rv, type, resource: storageKey(def), object, prev };
    this.#history.push(ev);
    while (this.#history.length > this.#historyLimit) {
      const dropped = this.#history.shift();
      if (dropped !== undefined) this.#compactedRv = dropped.rv;
    }
    for (const fn of [...this.#listeners]) {
      try {
        fn(ev);
      } catch {
        // a broken watch connection must not break the write
      }
    }
  }

  /** The real server's CRD controllers mark a new CRD NamesAccepted + Established; do it at once. */
  #establishCrd(def: ResourceDef, crd: KubeObject): KubeObject {
    const defs = this.registry.registerCrd(crd);
    const spec = isPlainObject(crd['spec']) ? crd['spec'] : {};
    const condition = (type: string, reason: string): Record<string, string> => ({
      type, status: 'True', reason, message: '', lastTransitionTime: this.#now().toISOString().replace(/\.\d{3}Z$/, 'Z'),
    });
    return this.mutate(def, '', crd.metadata?.name ?? '', (o) => {
      o['status'] = {
        conditions: [condition('NamesAccepted', 'NoConflicts'), condition('Established', 'InitialNamesAccepted')],
        acceptedNames: clone(spec['names'] ?? {}),
        storedVersions: defs.slice(0, 1).map((d) => d.version),
      };
    });
  }
}

function objectKey(namespace: string, name: string): string {
  return `${namespace}/${name}`;
}

function isCrdResource(def: ResourceDef): boolean {
  return def.group === 'apiextensions.k8s.io' && def.plural === 'customresourcedefinitions';
}

/** The real server refuses unknown patch types (and strategic merge on custom resources) before any lookup. */
function checkPatchType(def: ResourceDef, type: string): void {
  const accepted = def.custom ? [PATCH_TYPES.json, PATCH_TYPES.merge, PATCH_TYPES.apply] : Object.values(PATCH_TYPES);
  if (!(accepted as readonly string[]).includes(type)) throw unsupportedMediaType(type, accepted);
}

function applyPatch(current: KubeObject, type: string, body: unknown): unknown {
  return type === PATCH_TYPES.json ? jsonPatch(current, body) : mergeBody(current, body);
}

function mergeBody(current: KubeObject, body: unknown): unknown {
  if (!isPlainObject(body)) throw badRequest('json: cannot unmarshal array into Go value of type map[string]interface {}');
  return mergePatch(current, body);
}

function applyBody(def: ResourceDef, name: string, body: unknown): KubeObject {
  const obj = requireObject(body);
  if (obj.metadata.name !== undefined && obj.metadata.name !== name) {
    throw badRequest(`the name of the object (${obj.metadata.name}) does not match the name on the URL (${name})`);
  }
  return { ...obj, apiVersion: obj.apiVersion ?? apiVersionOf(def), kind: obj.kind ?? def.kind, metadata: { ...obj.metadata, name } };
}

function checkDeletePreconditions(def: ResourceDef, old: KubeObject, options: unknown): void {
  const pre = isPlainObject(options) && isPlainObject(options['preconditions']) ? options['preconditions'] : {};
  const name = old.metadata?.name ?? '';
  const uid = pre['uid'];
  if (typeof uid === 'string' && uid !== '' && uid !== old.metadata?.uid) {
    throw conflict(def, name, `Precondition failed: UID in precondition: ${uid}, UID in object meta: ${old.metadata?.uid ?? ''}`);
  }
  const rv = pre['resourceVersion'];
  if (typeof rv === 'string' && rv !== '' && rv !== old.metadata?.resourceVersion) {
    throw conflict(def, name,
      `Precondition failed: ResourceVersion in precondition: ${rv}, ResourceVersion in object meta: ${old.metadata?.resourceVersion ?? ''}`);
  }
}
