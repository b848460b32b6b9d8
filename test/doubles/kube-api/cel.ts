// CRD validation rules (x-kubernetes-validations) as the real apiextensions server applies them to
// the top-level properties of a custom resource: a rule naming `oldSelf` is a transition rule,
// checked on updates where the property exists before and after; any other rule on every write.
// A broken rule refuses the write with 422 Invalid and the rule's message, worded as kube-apiserver
// words it (seen from v1.26.4: `spec: Invalid value: "object": <message>`).
// Test-only code: never import anything under test/ from src/.
import { evaluate } from '@marcbachmann/cel-js';
import { invalid } from './errors.ts';
import type { KubeObject, PropertyRule, ResourceDef } from './types.ts';
import { isPlainObject } from './util.ts';

/** The rules of each top-level property of a CRD version's schema. */
export function propertyRules(version: Record<string, unknown>): PropertyRule[] {
  const schema = isPlainObject(version['schema']) ? version['schema']['openAPIV3Schema'] : undefined;
  const props = isPlainObject(schema) && isPlainObject(schema['properties']) ? schema['properties'] : {};
  const out: PropertyRule[] = [];
  for (const [property, s] of Object.entries(props)) {
    const rules = isPlainObject(s) && Array.isArray(s['x-kubernetes-validations']) ? s['x-kubernetes-validations'] : [];
    for (const r of rules) {
      if (isPlainObject(r) && typeof r['rule'] === 'string') {
        out.push({ property, rule: r['rule'], ...(typeof r['message'] === 'string' ? { message: r['message'] } : {}) });
      }
    }
  }
  return out;
}

/** Throws 422 Invalid for the first rule `next` breaks (`old` absent on create). */
export function checkRules(def: ResourceDef, old: KubeObject | undefined, next: KubeObject): void {
  for (const r of def.rules) {
    const self = next[r.property];
    if (self === undefined) continue;
    const transition = /\boldSelf\b/.test(r.rule);
    const oldSelf = old?.[r.property];
    if (transition && oldSelf === undefined) continue;
    let ok: unknown;
    try {
      ok = evaluate(r.rule, transition ? { self, oldSelf } : { self });
    } catch {
      ok = false; // the server reports an evaluation error as a refusal too
    }
    if (ok !== true) {
      const type = Array.isArray(self) ? 'array' : typeof self === 'object' && self !== null ? 'object' : typeof self;
      throw invalid(def, next.metadata?.name ?? '', { reason: 'FieldValueInvalid', field: r.property,
        message: `Invalid value: "${type}": ${r.message ?? `failed rule: ${r.rule}`}` });
    }
  }
}
