import { realpath } from 'node:fs/promises';
import { basename, dirname, isAbsolute, join, normalize } from 'node:path';
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

/**
 * `p` with every existing directory above it resolved (symlinks followed), the rest appended:
 * where a mount or mkdir at `p` would really land. The last component is not followed; the
 * callers refuse a symlink there.
 */
async function landing(p: string): Promise<string> {
  const rest = [basename(p)];
  for (let dir = dirname(p); ; dir = dirname(dir)) {
    try {
      return join(await realpath(dir), ...rest);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT' && (err as NodeJS.ErrnoException).code !== 'ENOTDIR') throw err;
      if (dir === '/') return p;
      rest.unshift(basename(dir));
    }
  }
}

function under(p: string, root: string): boolean {
  return p === root || p.startsWith(root.endsWith('/') ? root : `${root}/`);
}

/**
 * With `--node-path-root` set, a staging or target path must land under one of the roots once
 * symlinks above it are followed; a CO (kubelet) only ever hands paths under its own directory.
 */
export async function checkUnderRoots(p: string, roots: readonly string[], field: string): Promise<void> {
  if (roots.length === 0) return;
  const real = await landing(p);
  const resolvedRoots = await Promise.all(roots.map((r) => realpath(r).catch(() => r)));
  if (!resolvedRoots.some((r) => under(real, r))) {
    throw invalidArgument(`${field} "${p}"${real === p ? '' : ` (resolves to ${real})`} is outside the node path roots (${roots.join(', ')})`);
  }
}
