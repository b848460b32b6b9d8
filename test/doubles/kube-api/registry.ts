// Resource registry of the Kubernetes API server TEST DOUBLE.
import { propertyRules } from './cel.ts';
import { badRequest } from './errors.ts';
import type { ResourceDef, ResourceInput } from './types.ts';
import { isPlainObject } from './util.ts';

/** Storage key of a resource: `plural` for core, `plural.group` otherwise (kubectl style). */
export function storageKey(def: Pick<ResourceDef, 'group' | 'plural'>): string {
  return def.group === '' ? def.plural : `${def.plural}.${def.group}`;
}

/** `v1` or `group/version`. */
export function apiVersionOf(def: Pick<ResourceDef, 'group' | 'version'>): string {
  return def.group === '' ? def.version : `${def.group}/${def.version}`;
}

export function normalizeResource(input: ResourceInput): ResourceDef {
  for (const k of ['version', 'plural', 'kind'] as const) {
    if (typeof input[k] !== 'string' || input[k] === '') throw new Error(`resource ${k} is required`);
  }
  return {
    group: input.group,
    version: input.version,
    plural: input.plural,
    kind: input.kind,
    singular: input.singular ?? input.kind.toLowerCase(),
    namespaced: input.namespaced ?? false,
    statusSubresource: input.statusSubresource ?? false,
    custom: input.custom ?? true,
    fieldSelectors: input.fieldSelectors ?? [],
    shortNames: input.shortNames ?? [],
    microTimeFields: input.microTimeFields ?? [],
    rules: input.rules ?? [],
  };
}

const CORE_EVENT_FIELDS = [
  'involvedObject.kind', 'involvedObject.namespace', 'involvedObject.name', 'involvedObject.uid',
  'involvedObject.apiVersion', 'involvedObject.resourceVersion', 'involvedObject.fieldPath',
  'reason', 'reportingComponent', 'source', 'type',
];
const EVENTS_V1_FIELDS = [
  'regarding.kind', 'regarding.namespace', 'regarding.name', 'regarding.uid',
  'regarding.apiVersion', 'regarding.resourceVersion', 'regarding.fieldPath',
  'reason', 'reportingController', 'type',
];

/** Pre-registered resources (built-in Kubernetes types the driver touches). */
export const BUILTIN_RESOURCES: readonly ResourceInput[] = [
  { group: '', version: 'v1', plural: 'nodes', kind: 'Node', statusSubresource: true, custom: false,
    fieldSelectors: ['spec.unschedulable'], shortNames: ['no'] },
  { group: '', version: 'v1', plural: 'events', kind: 'Event', namespaced: true, custom: false,
    fieldSelectors: CORE_EVENT_FIELDS, shortNames: ['ev'], microTimeFields: ['eventTime', 'series.lastObservedTime'] },
  { group: 'events.k8s.io', version: 'v1', plural: 'events', kind: 'Event', namespaced: true, custom: false,
    fieldSelectors: EVENTS_V1_FIELDS, shortNames: ['ev'], microTimeFields: ['eventTime', 'series.lastObservedTime'] },
  { group: 'coordination.k8s.io', version: 'v1', plural: 'leases', kind: 'Lease', namespaced: true, custom: false,
    microTimeFields: ['spec.acquireTime', 'spec.renewTime'] },
  { group: 'apiextensions.k8s.io', version: 'v1', plural: 'customresourcedefinitions',
    kind: 'CustomResourceDefinition', statusSubresource: true, custom: false, shortNames: ['crd', 'crds'] },
];

export class Registry {
  readonly #defs: ResourceDef[] = [];

  constructor(initial: readonly ResourceInput[] = BUILTIN_RESOURCES) {
    for (const r of initial) this.register(r);
  }

  /** Adds (or replaces, same group/version/plural) a resource. Custom by default. */
  register(input: ResourceInput): ResourceDef {
    const def = normalizeResource(input);
    const i = this.#defs.findIndex(
      (d) => d.group === def.group && d.version === def.version && d.plural === def.plural,
    );
    if (i >= 0) this.#defs[i] = def;
    else this.#defs.push(def);
    return def;
  }

  /** Registers every served version of an apiextensions.k8s.io/v1 CustomResourceDefinition. */
  registerCrd(crd: unknown): ResourceDef[] {
    return crdResources(crd).map((r) => this.register(r));
  }

  find(group: string, version: string, plural: string): ResourceDef | undefined {
    return this.#defs.find((d) => d.group === group && d.version === version && d.plural === plural);
  }

  /** `plural` (core group preferred, else the only match) or `plural.group`. */
  resolve(name: string): ResourceDef {
    const exact = this.#defs.filter((d) => storageKey(d) === name);
    const byPlural = this.#defs.filter((d) => d.plural === name);
    const found = exact[0] ?? (byPlural.length === 1 ? byPlural[0] : undefined);
    if (found === undefined) throw new Error(`test double: unknown or ambiguous resource "${name}"`);
    return found;
  }

  all(): readonly ResourceDef[] {
    return this.#defs;
  }
}

function str(v: unknown): string | undefined {
  return typeof v === 'string' && v !== '' ? v : undefined;
}

/** ResourceInputs described by a CRD object (already parsed from YAML/JSON). */
export function crdResources(crd: unknown): ResourceInput[] {
  if (!isPlainObject(crd) || !isPlainObject(crd['spec'])) throw badRequest('CRD: spec is required');
  const spec = crd['spec'];
  const names = isPlainObject(spec['names']) ? spec['names'] : {};
  const group = str(spec['group']);
  const plural = str(names['plural']);
  const kind = str(names['kind']);
  if (group === undefined || plural === undefined || kind === undefined) {
    throw badRequest('CRD: spec.group, spec.names.plural and spec.names.kind are required');
  }
  const versions = Array.isArray(spec['versions']) ? spec['versions'] : [];
  const out: ResourceInput[] = [];
  for (const v of versions) {
    if (!isPlainObject(v) || v['served'] === false) continue;
    const version = str(v['name']);
    if (version === undefined) continue;
    const sub = isPlainObject(v['subresources']) ? v['subresources'] : {};
    const shortNames = Array.isArray(names['shortNames']) ? names['shortNames'].filter((s) => typeof s === 'string') : [];
    out.push({
      group, version, plural, kind,
      singular: str(names['singular']) ?? kind.toLowerCase(),
      namespaced: spec['scope'] === 'Namespaced',
      statusSubresource: sub['status'] !== undefined,
      custom: true,
      fieldSelectors: selectableFields(v),
      shortNames,
      rules: propertyRules(v),
    });
  }
  if (out.length === 0) throw badRequest('CRD: no served version');
  return out;
}

function selectableFields(version: Record<string, unknown>): string[] {
  const fields = version['selectableFields'];
  if (!Array.isArray(fields)) return [];
  return fields
    .map((f) => (isPlainObject(f) ? str(f['jsonPath']) : undefined))
    .filter((p): p is string => p !== undefined)
    .map((p) => p.replace(/^\./, ''));
}
