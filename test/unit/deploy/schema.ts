/**
 * Checks of rendered objects against Kubernetes' own schemas:
 * - kubernetes-models (types, formats, required fields, enums generated from the Kubernetes
 *   OpenAPI spec) for every built-in kind;
 * - unknown fields, which kubernetes-models lets through but `kubectl apply` (server-side
 *   strict field validation) refuses, checked against @kubernetes/client-node's model metadata
 *   (also generated from the Kubernetes OpenAPI spec);
 * - custom resources (VolumeSnapshotClass) against the openAPIV3Schema of their CRD, with ajv,
 *   plus the same unknown-field check against that schema.
 */
import * as k8s from '@kubernetes/client-node';
import { Ajv } from 'ajv';

type Obj = Record<string, unknown>;
interface Attr { baseName: string; type: string }
interface ModelClass { getAttributeTypeMap(): Attr[] }

/** Validates with kubernetes-models; returns the problems (empty when valid). */
export async function validateBuiltin(obj: Obj): Promise<string[]> {
  const apiVersion = String(obj.apiVersion);
  const kind = String(obj.kind);
  const modulePath = `kubernetes-models/${apiVersion}/${kind}`;
  let mod: Record<string, unknown>;
  try {
    mod = await import(modulePath) as Record<string, unknown>;
  } catch {
    return [`${apiVersion} ${kind} is not a Kubernetes built-in kind known to kubernetes-models`];
  }
  const Model = mod[kind] as new (data: Obj) => { validate(): void };
  try {
    new Model(obj).validate();
    return [];
  } catch (err) {
    return [(err as Error).message];
  }
}

function modelClass(type: string): ModelClass | undefined {
  const c = (k8s as unknown as Record<string, unknown>)[type];
  return typeof c === 'function' && 'getAttributeTypeMap' in c ? c as unknown as ModelClass : undefined;
}

/** Class name of a kind in @kubernetes/client-node: apps/v1 Deployment → V1Deployment. */
function rootType(obj: Obj): string {
  const version = String(obj.apiVersion).split('/').pop() ?? '';
  return `${version.charAt(0).toUpperCase()}${version.slice(1)}${String(obj.kind)}`;
}

function unknownIn(value: unknown, type: string, at: string, out: string[]): void {
  if (value === null || value === undefined) return;
  const arr = /^Array<(.+)>$/.exec(type);
  if (arr) {
    if (Array.isArray(value)) value.forEach((v, i) => unknownIn(v, arr[1]!, `${at}[${i}]`, out));
    return;
  }
  const map = /^\{ \[key: string\]: (.+); \}$/.exec(type);
  if (map) {
    if (typeof value === 'object') for (const [k, v] of Object.entries(value)) unknownIn(v, map[1]!, `${at}.${k}`, out);
    return;
  }
  const cls = modelClass(type);
  if (!cls || typeof value !== 'object' || Array.isArray(value)) return;
  const attrs = new Map(cls.getAttributeTypeMap().map((a) => [a.baseName, a.type]));
  for (const [k, v] of Object.entries(value)) {
    const t = attrs.get(k);
    if (t === undefined) out.push(`${at}.${k}: unknown field (${type})`);
    else unknownIn(v, t, `${at}.${k}`, out);
  }
}

/** Fields the Kubernetes API does not know, by path; throws if the kind has no model. */
export function unknownBuiltinFields(obj: Obj): string[] {
  const type = rootType(obj);
  if (!modelClass(type)) throw new Error(`@kubernetes/client-node has no model ${type}`);
  const out: string[] = [];
  unknownIn(obj, type, String(obj.kind), out);
  return out;
}

interface Schema { type?: string; properties?: Record<string, Schema>; items?: Schema; additionalProperties?: boolean | Schema; 'x-kubernetes-preserve-unknown-fields'?: boolean }

/** Fields an API server would prune (structural schema without preserve-unknown-fields). */
export function unknownCrdFields(value: unknown, schema: Schema, at: string, out: string[] = []): string[] {
  if (value === null || typeof value !== 'object' || schema['x-kubernetes-preserve-unknown-fields']) return out;
  if (Array.isArray(value)) {
    if (schema.items) value.forEach((v, i) => unknownCrdFields(v, schema.items!, `${at}[${i}]`, out));
    return out;
  }
  for (const [k, v] of Object.entries(value)) {
    const sub = schema.properties?.[k] ?? (typeof schema.additionalProperties === 'object' ? schema.additionalProperties : undefined);
    if (sub) unknownCrdFields(v, sub, `${at}.${k}`, out);
    else if (schema.properties && !(at.split('.').length === 1 && (k === 'apiVersion' || k === 'kind' || k === 'metadata'))) out.push(`${at}.${k}: unknown field`);
  }
  return out;
}

/** The served openAPIV3Schema of one version of a CRD object. */
export function crdSchema(crd: Obj, version: string): Schema {
  const versions = (crd.spec as { versions: Array<{ name: string; served: boolean; schema: { openAPIV3Schema: Schema } }> }).versions;
  const v = versions.find((x) => x.name === version && x.served);
  if (!v) throw new Error(`CRD serves no version ${version}`);
  return v.schema.openAPIV3Schema;
}

/** ajv against a CRD schema (Kubernetes' x-kubernetes-* keywords and CEL rules are not evaluated). */
export function validateAgainstCrd(obj: Obj, schema: Schema): string[] {
  const ajv = new Ajv({ strict: false, allErrors: true });
  const validate = ajv.compile(schema);
  const errors = validate(obj) ? [] : (validate.errors ?? []).map((e) => `${e.instancePath || '/'} ${e.message ?? ''}`);
  return [...errors, ...unknownCrdFields(obj, schema, String(obj.kind))];
}
