/**
 * The one place a failure's gRPC code is decided. Each layer throws its own typed error (DmError,
 * StoreError, MountError, CommandError, SysError, the Kubernetes client's ApiException) and knows
 * nothing of gRPC; the CSI layers, the RPC wrapper and the node agent (whose verdict the controller
 * returns from a CR's status) all turn it into a CsiError here, so one failure answers one code
 * whichever way it reaches the CO. A code is given only where the CO can act on it and it cannot
 * mislead (NOT_FOUND means "the volume does not exist" in CSI, so no missing path or device is
 * ever NOT_FOUND); anything else is INTERNAL, which says "a bug or a broken node: look at the log".
 */
// The exception's own module, not the package's index: a standalone start never loads the
// Kubernetes client (src/cli/run.ts), and every layer imports this file. It is the same class
// the client throws, since the index re-exports this very module.
import { ApiException } from '@kubernetes/client-node/dist/gen/apis/exception.js';
import { type DmErrorKind, isDmError } from './devmapper/types.ts';
import { Code, CsiError, errorMessage } from './errors.ts';
import { MountError } from './mount/types.ts';
import { StoreError } from './state/types.ts';
import { CommandError } from './system/exec.ts';
import { SysError } from './system/ffi.ts';

const DM_CODES: Partial<Record<DmErrorKind, Code>> = {
  no_space: Code.RESOURCE_EXHAUSTED,
  busy: Code.FAILED_PRECONDITION,
  timeout: Code.DEADLINE_EXCEEDED,
  unsupported: Code.FAILED_PRECONDITION,
};

const STORE_CODES: Partial<Record<StoreError['kind'], Code>> = {
  not_found: Code.NOT_FOUND,
  conflict: Code.ABORTED,
};

/**
 * errno of a mount, a tool or a system call. Only these: ENOENT (a missing mount point, device
 * node or tool) is not the volume missing, EINVAL is as often a bad superblock as a bad option,
 * and EIO, EROFS, EACCES... are the node's to fix. A cancel is the RPC's end like its deadline,
 * as for a dm ioctl (devmapper/ioctl/control.ts).
 */
const ERRNO_CODES: Readonly<Record<string, Code>> = {
  ETIMEDOUT: Code.DEADLINE_EXCEEDED,
  ECANCELED: Code.DEADLINE_EXCEEDED,
  EBUSY: Code.FAILED_PRECONDITION,
  ENOSPC: Code.RESOURCE_EXHAUSTED,
};

const byErrno = (errno: string | undefined): Code => (errno === undefined ? undefined : ERRNO_CODES[errno]) ?? Code.INTERNAL;

function codeOf(err: unknown): Code {
  if (isDmError(err)) return DM_CODES[err.kind] ?? Code.INTERNAL;
  if (err instanceof StoreError) return STORE_CODES[err.kind] ?? Code.INTERNAL;
  // A killed tool's stderr may name any errno; the kill is what happened.
  if (err instanceof CommandError) return err.timedOut ? Code.DEADLINE_EXCEEDED : byErrno(err.errno);
  if (err instanceof MountError) return err.cause instanceof CommandError && err.cause.timedOut ? Code.DEADLINE_EXCEEDED : byErrno(err.errno);
  if (err instanceof SysError) return byErrno(err.errno);
  // Whatever the HTTP status: a 404 or 409 that means something is decided by the caller, who
  // knows the call (isNotFound, isConflict); any other is the API server not doing it.
  if (err instanceof ApiException) return Code.UNAVAILABLE;
  return Code.INTERNAL;
}

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

/**
 * Gives a failure the gRPC code a CO can act on; a CsiError passes as it is. `what` names the
 * operation so the message says what failed, not only how.
 */
export function toStatus(err: unknown, what?: string): CsiError {
  if (err instanceof CsiError) return err;
  const code = codeOf(err);
  const how = `${apiMessage(err)}${isDmError(err, 'busy') ? ' (device is in use)' : ''}`;
  return new CsiError(code, what === undefined ? how : `${what}: ${how}`, { cause: err });
}

/**
 * A call to the Kubernetes API that failed: ApiException or no answer at all (a refused
 * connection, a reset), the API server did not do it and a retry is the remedy.
 */
export function apiStatus(err: unknown, what: string): CsiError {
  if (err instanceof CsiError) return err;
  return new CsiError(Code.UNAVAILABLE, `${what}: ${apiMessage(err)}`, { cause: err });
}

/** A code as the name written to a CR's status (what the controller returns). */
export function codeName(code: number): string {
  return (Code as unknown as Record<number, string>)[code] ?? 'INTERNAL';
}

export function codeFromName(name: string | undefined): number {
  const n = name ? (Code as unknown as Record<string, number>)[name] : undefined;
  return typeof n === 'number' ? n : Code.INTERNAL;
}

/** Any failure as the CSI code name + message written to a CR's status. */
export function failureOf(err: unknown): { code: string; message: string } {
  const e = toStatus(err);
  return { code: codeName(e.code), message: e.details };
}
