import { ApiException, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { errorMessage } from '../errors.ts';

/** HTTP status of a failed client-node call, or undefined for a non-API failure (network...). */
export function httpCode(err: unknown): number | undefined {
  return err instanceof ApiException ? err.code : undefined;
}

export const isNotFound = (err: unknown) => httpCode(err) === 404;
export const isConflict = (err: unknown) => httpCode(err) === 409;

/** The Status message of an API error (client-node 2.x keeps the body as raw text). */
export function apiMessage(err: unknown): string {
  if (err instanceof ApiException) {
    try {
      const body = JSON.parse(String(err.body)) as { message?: string };
      if (body.message) return `${err.code}: ${body.message}`;
    } catch { /* not JSON: fall through */ }
    return `HTTP ${err.code}`;
  }
  return errorMessage(err);
}

/** client-node 2.x sends json-patch unless told otherwise. */
export const MERGE_PATCH = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);
