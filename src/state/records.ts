import { DEVICE_STATES, type DeviceRecord, type Mutation, StoreError } from './types.ts';

// What every store does with a record on its way in and out, whatever keeps it.

/**
 * Deep copy through JSON, as a persistent store would: undefined fields vanish and
 * non-JSON values fail here rather than only in production.
 */
export function jsonCopy<T>(value: T): T {
  return JSON.parse(JSON.stringify(value)) as T;
}

/**
 * A caller's copy of a stored record. Stored records went through jsonCopy on the way in, and
 * `meta` is their only nested field, so this is as deep as jsonCopy at a thirtieth of its cost
 * (a copy through JSON was most of a reconcile's own CPU time, and a start lists them more than once).
 */
export function recordCopy(r: DeviceRecord): DeviceRecord {
  return { ...r, meta: { ...r.meta } };
}

const isInt = (v: unknown): boolean => Number.isSafeInteger(v) && (v as number) >= 0;
const isStr = (v: unknown): boolean => typeof v === 'string';

/**
 * Why `x` is not a storable DeviceRecord, or undefined when it is. Checked on every
 * write so a bad record fails at the caller instead of being quarantined at the next start.
 */
export function deviceProblem(x: unknown): string | undefined {
  if (typeof x !== 'object' || x === null || Array.isArray(x)) return 'not an object';
  const r = x as Record<string, unknown>;
  if (!isStr(r.id) || r.id === '') return 'id must be a non-empty string';
  if (!isStr(r.dmName)) return 'dmName must be a string';
  if (r.kind !== 'volume' && r.kind !== 'snapshot') return `kind ${JSON.stringify(r.kind)} is not volume or snapshot`;
  if (!isInt(r.deviceId)) return 'deviceId must be a non-negative integer';
  if (!isInt(r.sizeBytes)) return 'sizeBytes must be a non-negative integer';
  if (!(DEVICE_STATES as readonly unknown[]).includes(r.state)) return `state ${JSON.stringify(r.state)} is not a device state`;
  if (r.origin !== undefined && !isStr(r.origin)) return 'origin must be a string';
  if (r.error !== undefined && !isStr(r.error)) return 'error must be a string';
  if (typeof r.meta !== 'object' || r.meta === null || Array.isArray(r.meta)
    || !Object.values(r.meta).every(isStr)) return 'meta must map strings to strings';
  if (!isStr(r.createdAt) || !isStr(r.updatedAt)) return 'createdAt and updatedAt must be strings';
  return undefined;
}

export function poolProblem(x: unknown): string | undefined {
  if (typeof x !== 'object' || x === null || Array.isArray(x)) return 'not an object';
  const r = x as Record<string, unknown>;
  if (!isStr(r.name)) return 'name must be a string';
  if (!isInt(r.transactionId)) return 'transactionId must be a non-negative integer';
  if (!isStr(r.updatedAt)) return 'updatedAt must be a string';
  return undefined;
}

/** Throws a TypeError naming the record when it cannot be stored. */
export function assertStorable(kind: 'device' | 'pool', x: unknown): void {
  const problem = kind === 'device' ? deviceProblem(x) : poolProblem(x);
  if (problem !== undefined) throw new TypeError(`invalid ${kind} record: ${problem}`);
}

/**
 * Applies a mutation to a private copy and returns the record to store. The id is the
 * key, so a mutation may not change it; the revision belongs to the store.
 */
export function applyMutation(current: DeviceRecord, mutate: Mutation<DeviceRecord>): DeviceRecord {
  // `current` is a stored record: recordCopy is as deep as it needs (see there); the result is
  // the caller's mutation, so it goes through jsonCopy.
  const draft = recordCopy(current);
  const result = mutate(draft) ?? draft;
  if (result.id !== current.id) {
    throw new StoreError('conflict', `updateDevice ${current.id}: the mutation changed the id to ${JSON.stringify(result.id)}`);
  }
  const copy = jsonCopy(result);
  assertStorable('device', copy);
  return copy;
}
