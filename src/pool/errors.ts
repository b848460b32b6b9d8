import { isDmError } from '../devmapper/types.ts';
import { CsiError, Code, errorMessage } from '../errors.ts';
import { StoreError } from '../state/types.ts';

/**
 * Gives a lower-layer failure the gRPC code a CO can act on. `what` names the operation
 * so the message says what failed, not only how.
 */
export function toStatus(err: unknown, what: string): CsiError {
  if (err instanceof CsiError) return err;
  const msg = `${what}: ${errorMessage(err)}`;
  if (isDmError(err)) {
    switch (err.kind) {
      case 'no_space': return new CsiError(Code.RESOURCE_EXHAUSTED, msg, { cause: err });
      case 'busy': return new CsiError(Code.FAILED_PRECONDITION, `${msg} (device is in use)`, { cause: err });
      case 'timeout': return new CsiError(Code.DEADLINE_EXCEEDED, msg, { cause: err });
      case 'unsupported': return new CsiError(Code.FAILED_PRECONDITION, msg, { cause: err });
      default: return new CsiError(Code.INTERNAL, msg, { cause: err });
    }
  }
  if (err instanceof StoreError) {
    const code = err.kind === 'not_found' ? Code.NOT_FOUND : err.kind === 'conflict' ? Code.ABORTED : Code.INTERNAL;
    return new CsiError(code, msg, { cause: err });
  }
  return new CsiError(Code.INTERNAL, msg, { cause: err });
}
