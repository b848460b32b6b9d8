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

export const sleep = (ms: number, signal?: AbortSignal): Promise<void> => new Promise((resolve) => {
  const t = setTimeout(resolve, ms);
  signal?.addEventListener('abort', () => { clearTimeout(t); resolve(); }, { once: true });
});

/** Capped exponential backoff with jitter, so a flapping API server is not hammered in lockstep. */
export function backoff(attempt: number, baseMs: number, maxMs: number): number {
  const ms = Math.min(maxMs, baseMs * 2 ** Math.min(attempt, 20));
  return Math.round(ms * (0.8 + Math.random() * 0.4));
}
