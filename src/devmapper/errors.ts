import { CommandError } from '../system/exec.ts';
import { DmError, type DmErrorKind } from './types.ts';

/** errno → kind, for errors the kernel returned about a named device or pool message. */
export const KIND_BY_ERRNO: Readonly<Record<string, DmErrorKind>> = {
  EEXIST: 'exists',
  EBUSY: 'busy',
  ENODATA: 'no_data',
  EINVAL: 'invalid',
  // dm-thin answers every message with EOPNOTSUPP while the pool is read-only or failed.
  EOPNOTSUPP: 'invalid',
  ENOSPC: 'no_space',
  ENXIO: 'not_found',
  ENODEV: 'not_found',
  ENOENT: 'not_found',
};

/** Lines dmsetup adds to every failure; they say nothing about the cause. */
const NOISE = new Set(['Command failed.', 'Command failed']);

/** Lines printed when a device vanished between dmsetup listing it and querying it. */
const VANISHED = new Set(['Device does not exist.', ...NOISE]);

/** The stderr lines worth quoting in an error message. */
export function stderrSummary(stderr: string): string {
  return stderr.split('\n').map((l) => l.trim()).filter((l) => l !== '' && !NOISE.has(l)).join('; ');
}

/**
 * True when a whole-host listing failed only because some device disappeared while dmsetup
 * walked the list: its stdout is still a valid listing of the devices that remained.
 */
export function onlyVanished(err: unknown): err is CommandError {
  if (!(err instanceof CommandError) || err.timedOut || err.exitCode === undefined) return false;
  const lines = err.stderr.split('\n').map((l) => l.trim()).filter((l) => l !== '');
  return lines.length > 0 && lines.every((l) => VANISHED.has(l));
}

/**
 * Turns a failed dmsetup run into a DmError. Order matters: a missing control node (the
 * errno there is about /dev/mapper/control, not the device) and a missing binary come first,
 * then the kernel's errno, then dmsetup's own wording for errors that carry no errno.
 */
export function classifyDmsetupError(err: unknown, description: string, aborted = false): DmError {
  if (!(err instanceof CommandError)) {
    return new DmError('unknown', `${description}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
  const stderr = err.stderr;
  const summary = stderrSummary(stderr);
  const errno = err.errno ?? (/Operation not supported/.test(stderr) ? 'EOPNOTSUPP' : undefined);
  const detail = { errno, exitCode: err.exitCode, stderr, cause: err };
  const says = (why: string): string => `${description}: ${why}${summary && !why.includes(summary) ? `: ${summary}` : ''}`;

  if (err.timedOut) return new DmError('timeout', says('timed out'), detail);
  if (aborted) return new DmError('timeout', says('cancelled'), detail);
  if (err.exitCode === undefined && (errno === 'ENOENT' || errno === 'EACCES')) {
    return new DmError('unsupported', says(`cannot run ${err.command} (${errno}): is dmsetup installed?`), detail);
  }
  if (/\/dev\/mapper\/control: open failed|Failure to communicate with kernel device-mapper/.test(stderr)) {
    return new DmError('unsupported', says('kernel has no device-mapper (or no permission to use it)'), detail);
  }
  const byErrno = errno === undefined ? undefined : KIND_BY_ERRNO[errno];
  if (byErrno !== undefined) {
    // The kernel refuses a duplicate name at DM_DEV_CREATE with EBUSY; that means "exists".
    const kind = byErrno === 'busy' && /\bcreate ioctl on\b/.test(stderr) ? 'exists' : byErrno;
    return new DmError(kind, says(summary || errno || 'failed'), detail);
  }
  if (/Device does not exist/.test(stderr)) return new DmError('not_found', says('device does not exist'), detail);
  if (/Device \S+ not found/.test(stderr)) {
    // udev never made the node: the kernel device may well exist. Not a not_found.
    return new DmError('unknown', says('device node did not appear (udev not running? use udev: false)'), detail);
  }
  return new DmError('unknown', says(summary || err.message), detail);
}
