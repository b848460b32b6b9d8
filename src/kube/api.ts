import { ApiException, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';

/** HTTP status of a failed client-node call, or undefined for a non-API failure (network...). */
export function httpCode(err: unknown): number | undefined {
  return err instanceof ApiException ? err.code : undefined;
}

export const isNotFound = (err: unknown) => httpCode(err) === 404;
export const isConflict = (err: unknown) => httpCode(err) === 409;

/** The Status message of an API error: one definition, in the module that decides codes from it. */
export { apiMessage } from '../status.ts';

/** client-node 2.x sends json-patch unless told otherwise. */
export const MERGE_PATCH = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);
