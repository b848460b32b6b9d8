import { status as Code } from '@grpc/grpc-js';
import { CsiError, errorMessage } from '../errors.ts';

export function codeName(code: number): string {
  return (Code as unknown as Record<number, string>)[code] ?? 'INTERNAL';
}

export function codeFromName(name: string | undefined): number {
  const n = name ? (Code as unknown as Record<string, number>)[name] : undefined;
  return typeof n === 'number' ? n : Code.INTERNAL;
}

/** Turns any failure into the CSI code name + message written to a CR's status. */
export function failureOf(err: unknown): { code: string; message: string } {
  if (err instanceof CsiError) return { code: codeName(err.code), message: err.details };
  return { code: 'INTERNAL', message: errorMessage(err) };
}
