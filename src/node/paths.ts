import { isAbsolute, normalize } from 'node:path';
import { invalidArgument } from '../errors.ts';

/** A path the CO gives us must be absolute and already normal: no '..', no '//', no NUL. */
export function checkPath(p: string, field: string): string {
  if (!p) throw invalidArgument(`${field} is required`);
  if (p.includes('\0') || p.length > 4096) throw invalidArgument(`${field} is not a valid path`);
  if (!isAbsolute(p)) throw invalidArgument(`${field} "${p}" must be an absolute path`);
  const trimmed = p.length > 1 && p.endsWith('/') ? p.slice(0, -1) : p;
  if (normalize(trimmed) !== trimmed || trimmed.split('/').includes('..')) throw invalidArgument(`${field} "${p}" must not contain '..', '.' or repeated '/'`);
  if (trimmed === '/') throw invalidArgument(`${field} must not be /`);
  return trimmed;
}
