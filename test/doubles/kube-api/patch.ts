// Patch application of the Kubernetes API server TEST DOUBLE:
// RFC 7386 JSON merge patch and RFC 6902 JSON patch.
import { ApiError, badRequest } from './errors.ts';
import { clone, deepEqual, isPlainObject } from './util.ts';

/** RFC 7386: objects merge recursively, null deletes, everything else replaces. */
export function mergePatch(target: unknown, patch: unknown): unknown {
  if (!isPlainObject(patch)) return clone(patch);
  const out: Record<string, unknown> = isPlainObject(target) ? { ...target } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

interface Op {
  op: string;
  path: string;
  from?: string;
  value?: unknown;
  hasValue: boolean;
}

function unprocessable(message: string): ApiError {
  return new ApiError(422, 'Invalid', message);
}

function decodeOps(ops: unknown): Op[] {
  if (!Array.isArray(ops)) {
    throw badRequest('json: cannot unmarshal object into Go value of type jsonpatch.Patch');
  }
  return ops.map((o) => {
    if (!isPlainObject(o) || typeof o['op'] !== 'string' || typeof o['path'] !== 'string') {
      throw badRequest('invalid JSON patch operation');
    }
    const from = typeof o['from'] === 'string' ? o['from'] : undefined;
    return { op: o['op'], path: o['path'], from, value: o['value'], hasValue: Object.hasOwn(o, 'value') };
  });
}

function parsePointer(ptr: string): string[] {
  if (ptr === '') return [];
  if (!ptr.startsWith('/')) throw unprocessable(`invalid JSON pointer "${ptr}"`);
  return ptr.slice(1).split('/').map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
}

type Container = Record<string, unknown> | unknown[];

function arrayIndex(arr: unknown[], seg: string, forAdd: boolean): number {
  if (forAdd && seg === '-') return arr.length;
  if (!/^(0|[1-9]\d*)$/.test(seg)) throw unprocessable(`invalid array index "${seg}"`);
  const i = Number(seg);
  if (i > arr.length || (!forAdd && i === arr.length)) throw unprocessable(`array index ${i} out of bounds`);
  return i;
}

function child(c: Container, seg: string): unknown {
  if (Array.isArray(c)) return c[arrayIndex(c, seg, false)];
  return Object.hasOwn(c, seg) ? c[seg] : undefined;
}

/** The container at a pointer (the document root is held in `root.doc`) and the last segment. */
function locate(root: { doc: unknown }, path: string): [Container, string] {
  const segs = parsePointer(path);
  const last = segs.pop();
  if (last === undefined) return [root as unknown as Container, 'doc'];
  let cur: unknown = root.doc;
  for (const seg of segs) {
    if (!isPlainObject(cur) && !Array.isArray(cur)) break;
    cur = child(cur, seg);
  }
  if (!isPlainObject(cur) && !Array.isArray(cur)) throw unprocessable(`doc is missing path: "${path}"`);
  return [cur, last];
}

function getAt(root: { doc: unknown }, path: string): unknown {
  const [c, key] = locate(root, path);
  if (!Array.isArray(c) && !Object.hasOwn(c, key)) throw unprocessable(`doc is missing path: "${path}"`);
  return child(c, key);
}

function addAt(root: { doc: unknown }, path: string, value: unknown): void {
  const [c, key] = locate(root, path);
  if (Array.isArray(c)) c.splice(arrayIndex(c, key, true), 0, value);
  else c[key] = value;
}

function removeAt(root: { doc: unknown }, path: string): unknown {
  const [c, key] = locate(root, path);
  if (Array.isArray(c)) return c.splice(arrayIndex(c, key, false), 1)[0];
  if (!Object.hasOwn(c, key)) throw unprocessable(`doc is missing path: "${path}"`);
  const v = c[key];
  delete c[key];
  return v;
}

function applyOp(root: { doc: unknown }, op: Op): void {
  const need = (): unknown => {
    if (!op.hasValue) throw unprocessable(`missing value for ${op.op} operation`);
    return clone(op.value);
  };
  switch (op.op) {
    case 'add': addAt(root, op.path, need()); return;
    case 'remove': removeAt(root, op.path); return;
    case 'replace': {
      const value = need();
      removeAt(root, op.path);
      addAt(root, op.path, value);
      return;
    }
    case 'move':
    case 'copy': {
      if (op.from === undefined) throw unprocessable(`missing from for ${op.op} operation`);
      const v = op.op === 'move' ? removeAt(root, op.from) : clone(getAt(root, op.from));
      addAt(root, op.path, v);
      return;
    }
    case 'test':
      if (!deepEqual(getAt(root, op.path), op.value)) {
        throw unprocessable(`testing value ${op.path} failed: test failed`);
      }
      return;
    default:
      throw unprocessable(`unexpected kind: ${op.op}`);
  }
}

/** RFC 6902; 400 if the body is not a patch array, 422 if an operation cannot apply (as the real server). */
export function jsonPatch(doc: unknown, ops: unknown): unknown {
  const decoded = decodeOps(ops);
  const root = { doc: clone(doc) };
  for (const op of decoded) applyOp(root, op);
  return root.doc;
}
