import { status } from '@grpc/grpc-js';

export { status as Code };

/**
 * The one error type that crosses layers. grpc-js turns any thrown object with an
 * integer `code` into that status, so handlers can simply throw.
 */
export class CsiError extends Error {
  readonly code: status;
  readonly details: string;
  constructor(code: status, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'CsiError';
    this.code = code;
    this.details = message;
  }
}

export const invalidArgument = (msg: string) => new CsiError(status.INVALID_ARGUMENT, msg);
export const notFound = (msg: string) => new CsiError(status.NOT_FOUND, msg);
export const alreadyExists = (msg: string) => new CsiError(status.ALREADY_EXISTS, msg);
export const failedPrecondition = (msg: string) => new CsiError(status.FAILED_PRECONDITION, msg);
export const outOfRange = (msg: string) => new CsiError(status.OUT_OF_RANGE, msg);
export const resourceExhausted = (msg: string) => new CsiError(status.RESOURCE_EXHAUSTED, msg);
export const unavailable = (msg: string) => new CsiError(status.UNAVAILABLE, msg);
export const aborted = (msg: string) => new CsiError(status.ABORTED, msg);
export const internal = (msg: string, cause?: unknown) => new CsiError(status.INTERNAL, msg, { cause });
export const deadlineExceeded = (msg: string) => new CsiError(status.DEADLINE_EXCEEDED, msg);

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
