// Kubernetes `Status` errors produced by the API server TEST DOUBLE.
import type { ResourceDef } from './types.ts';

export interface StatusCause {
  reason: string;
  message: string;
  field?: string;
}

export interface StatusDetails {
  name?: string;
  group?: string;
  kind?: string;
  uid?: string;
  causes?: StatusCause[];
}

/** A failed request; rendered as a `Status` object with `code` as HTTP status. */
export class ApiError extends Error {
  readonly code: number;
  readonly reason: string;
  readonly details: StatusDetails | undefined;

  constructor(code: number, reason: string, message: string, details?: StatusDetails) {
    super(message);
    this.code = code;
    this.reason = reason;
    this.details = details;
  }
}

const REASONS: Record<number, string> = {
  400: 'BadRequest',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'NotFound',
  405: 'MethodNotAllowed',
  409: 'Conflict',
  410: 'Expired',
  415: 'UnsupportedMediaType',
  422: 'Invalid',
  429: 'TooManyRequests',
  500: 'InternalError',
  503: 'ServiceUnavailable',
  504: 'Timeout',
};

export function reasonForCode(code: number): string {
  return REASONS[code] ?? 'Unknown';
}

/** The `Status` object (kind Status, apiVersion v1) for an error. */
export function statusObject(err: ApiError): Record<string, unknown> {
  const out: Record<string, unknown> = {
    kind: 'Status',
    apiVersion: 'v1',
    metadata: {},
    status: 'Failure',
    message: err.message,
    reason: err.reason,
    code: err.code,
  };
  if (err.details !== undefined) out['details'] = err.details;
  return out;
}

/** `thinvolumes.dmthin.csi.io` / `nodes`: how the real server names a resource in messages. */
export function qualifiedResource(def: ResourceDef): string {
  return def.group === '' ? def.plural : `${def.plural}.${def.group}`;
}

function qualifiedKind(def: ResourceDef): string {
  return def.group === '' ? def.kind : `${def.kind}.${def.group}`;
}

function details(def: ResourceDef, name: string): StatusDetails {
  return { name, group: def.group, kind: def.plural };
}

export function notFound(def: ResourceDef, name: string): ApiError {
  return new ApiError(404, 'NotFound', `${qualifiedResource(def)} "${name}" not found`, details(def, name));
}

export function alreadyExists(def: ResourceDef, name: string): ApiError {
  return new ApiError(409, 'AlreadyExists', `${qualifiedResource(def)} "${name}" already exists`, details(def, name));
}

export function conflict(def: ResourceDef, name: string, why: string): ApiError {
  const msg = `Operation cannot be fulfilled on ${qualifiedResource(def)} "${name}": ${why}`;
  return new ApiError(409, 'Conflict', msg, details(def, name));
}

export const STALE_MESSAGE =
  'the object has been modified; please apply your changes to the latest version and try again';

/** 422 Invalid with one field cause, e.g. ("FieldValueForbidden", "metadata.finalizers", "Forbidden: …"). */
export function invalid(def: ResourceDef, name: string, cause: StatusCause & { field: string }): ApiError {
  const msg = `${qualifiedKind(def)} "${name}" is invalid: ${cause.field}: ${cause.message}`;
  return new ApiError(422, 'Invalid', msg, { name, group: def.group, kind: def.kind, causes: [cause] });
}

export function badRequest(message: string): ApiError {
  return new ApiError(400, 'BadRequest', message);
}

export function pathNotFound(): ApiError {
  return new ApiError(404, 'NotFound', 'the server could not find the requested resource', {});
}

export function methodNotAllowed(method: string): ApiError {
  return new ApiError(405, 'MethodNotAllowed', `the server does not allow this method on the requested resource (${method})`);
}

export function unsupportedMediaType(type: string, accepted: readonly string[]): ApiError {
  const msg = `the body of the request was in an unknown format (${type}) - accepted media types include: ${accepted.join(', ')}`;
  return new ApiError(415, 'UnsupportedMediaType', msg);
}

export function tooOld(requested: number, oldestKept: number): ApiError {
  return new ApiError(410, 'Expired', `too old resource version: ${requested} (${oldestKept})`);
}
