// Label and field selectors of the Kubernetes API server TEST DOUBLE.
import { badRequest } from './errors.ts';
import type { KubeObject, ResourceDef } from './types.ts';
import { isPlainObject } from './util.ts';

export type LabelOp = 'exists' | '!' | '=' | '!=' | 'in' | 'notin' | 'gt' | 'lt';

export interface LabelRequirement {
  readonly key: string;
  readonly op: LabelOp;
  readonly values: readonly string[];
}

export interface FieldRequirement {
  readonly field: string;
  readonly op: '=' | '!=';
  readonly value: string;
}

const KEY = String.raw`(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?\/)?[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?`;
const VALUE = String.raw`(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?)?`;
const RE_NOT_EXISTS = new RegExp(`^!\\s*(${KEY})$`);
const RE_EXISTS = new RegExp(`^(${KEY})$`);
const RE_SET = new RegExp(`^(${KEY})\\s+(in|notin)\\s*\\((.*)\\)$`);
const RE_EQ = new RegExp(`^(${KEY})\\s*(==|=|!=)\\s*(${VALUE})$`);
const RE_CMP = new RegExp(`^(${KEY})\\s*(>|<)\\s*(-?\\d+)$`);
const RE_VALUE = new RegExp(`^${VALUE}$`);

/** Splits on commas that are not inside parentheses. */
function splitTopLevel(s: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let cur = '';
  for (const ch of s) {
    if (ch === '(') depth++;
    if (ch === ')') depth--;
    if (ch === ',' && depth === 0) {
      parts.push(cur);
      cur = '';
    } else {
      cur += ch;
    }
  }
  parts.push(cur);
  return parts;
}

function parseRequirement(raw: string, whole: string): LabelRequirement {
  const part = raw.trim();
  let m = RE_NOT_EXISTS.exec(part);
  if (m) return { key: m[1] ?? '', op: '!', values: [] };
  m = RE_SET.exec(part);
  if (m) {
    const values = (m[3] ?? '').split(',').map((v) => v.trim());
    if (values.some((v) => !RE_VALUE.test(v)) || (values.length === 1 && values[0] === '')) {
      throw badRequest(`unable to parse requirement: invalid label selector "${whole}"`);
    }
    return { key: m[1] ?? '', op: m[2] === 'in' ? 'in' : 'notin', values };
  }
  m = RE_EQ.exec(part);
  if (m) return { key: m[1] ?? '', op: m[2] === '!=' ? '!=' : '=', values: [m[3] ?? ''] };
  m = RE_CMP.exec(part);
  if (m) return { key: m[1] ?? '', op: m[2] === '>' ? 'gt' : 'lt', values: [m[3] ?? ''] };
  m = RE_EXISTS.exec(part);
  if (m) return { key: m[1] ?? '', op: 'exists', values: [] };
  throw badRequest(`unable to parse requirement: invalid label selector "${whole}"`);
}

/** Parses a label selector (equality, inequality, set-based, exists, !exists, gt/lt). */
export function parseLabelSelector(selector: string | undefined): LabelRequirement[] {
  if (selector === undefined || selector.trim() === '') return [];
  return splitTopLevel(selector).map((p) => parseRequirement(p, selector));
}

function matchOne(req: LabelRequirement, labels: Record<string, string>): boolean {
  const has = Object.hasOwn(labels, req.key);
  const v = labels[req.key];
  switch (req.op) {
    case 'exists': return has;
    case '!': return !has;
    case '=': return has && v === req.values[0];
    case '!=': return !has || v !== req.values[0];
    case 'in': return has && req.values.includes(v ?? '');
    case 'notin': return !has || !req.values.includes(v ?? '');
    case 'gt':
    case 'lt': {
      if (!has || !/^-?\d+$/.test(v ?? '')) return false;
      const n = Number(v);
      const bound = Number(req.values[0]);
      return req.op === 'gt' ? n > bound : n < bound;
    }
  }
}

export function matchLabels(reqs: readonly LabelRequirement[], labels: Record<string, string> | undefined): boolean {
  const l = labels ?? {};
  return reqs.every((r) => matchOne(r, l));
}

/** Parses a field selector; only `allowed` field labels are accepted (400 otherwise, as the real server). */
export function parseFieldSelector(selector: string | undefined, allowed: readonly string[]): FieldRequirement[] {
  if (selector === undefined || selector.trim() === '') return [];
  return selector.split(',').map((raw) => {
    const m = /^\s*([^=!\s]+)\s*(==|=|!=)\s*(.*?)\s*$/.exec(raw);
    if (!m) throw badRequest(`invalid field selector: "${selector}"`);
    const field = m[1] ?? '';
    if (!allowed.includes(field)) {
      throw badRequest(`field label not supported: ${field}`);
    }
    return { field, op: m[2] === '!=' ? '!=' : '=', value: m[3] ?? '' };
  });
}

function fieldValue(obj: KubeObject, path: string): string {
  let cur: unknown = obj;
  for (const seg of path.split('.')) {
    cur = isPlainObject(cur) ? cur[seg] : undefined;
  }
  if (cur === undefined || cur === null) return '';
  if (isPlainObject(cur) && path === 'source') return String(cur['component'] ?? '');
  return typeof cur === 'object' ? JSON.stringify(cur) : String(cur);
}

export function matchFields(reqs: readonly FieldRequirement[], obj: KubeObject): boolean {
  return reqs.every((r) => {
    const v = fieldValue(obj, r.field);
    return r.op === '=' ? v === r.value : v !== r.value;
  });
}

export interface ListFilterInput {
  namespace?: string | undefined;
  labelSelector?: string | undefined;
  fieldSelector?: string | undefined;
}

export type ObjectFilter = (obj: KubeObject) => boolean;

/** One predicate for namespace + label selector + field selector (parse errors throw 400). */
export function makeFilter(def: ResourceDef, input: ListFilterInput): ObjectFilter {
  const labels = parseLabelSelector(input.labelSelector);
  const allowed = ['metadata.name', ...(def.namespaced ? ['metadata.namespace'] : []), ...def.fieldSelectors];
  const fields = parseFieldSelector(input.fieldSelector, allowed);
  const ns = input.namespace;
  return (obj) => {
    if (ns !== undefined && (obj.metadata?.namespace ?? '') !== ns) return false;
    return matchLabels(labels, obj.metadata?.labels) && matchFields(fields, obj);
  };
}
