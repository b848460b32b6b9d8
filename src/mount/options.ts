/**
 * A mount(8) option list split the way libmount splits it for mount(2): the words the kernel
 * takes as MS_* flags, the words mount(8) keeps to itself, and the rest, which is the
 * filesystem's own data string. Pure, so the in-process mounter passes the kernel what the
 * `mount` command would have.
 */

/** MS_* values of linux/mount.h. */
export const MS = {
  RDONLY: 1,
  NOSUID: 2,
  NODEV: 4,
  NOEXEC: 8,
  SYNCHRONOUS: 16,
  REMOUNT: 32,
  MANDLOCK: 64,
  DIRSYNC: 128,
  NOSYMFOLLOW: 256,
  NOATIME: 1024,
  NODIRATIME: 2048,
  BIND: 4096,
  MOVE: 8192,
  REC: 16384,
  SILENT: 32768,
  UNBINDABLE: 1 << 17,
  PRIVATE: 1 << 18,
  SLAVE: 1 << 19,
  SHARED: 1 << 20,
  RELATIME: 1 << 21,
  I_VERSION: 1 << 23,
  STRICTATIME: 1 << 24,
  LAZYTIME: 1 << 25,
} as const;

/** word → [flag, whether the word sets it (true) or clears it (false)], libmount's linux_flags_map. */
const FLAG_WORDS: ReadonlyMap<string, readonly [number, boolean]> = new Map(([
  ['ro', MS.RDONLY, true], ['rw', MS.RDONLY, false],
  ['nosuid', MS.NOSUID, true], ['suid', MS.NOSUID, false],
  ['nodev', MS.NODEV, true], ['dev', MS.NODEV, false],
  ['noexec', MS.NOEXEC, true], ['exec', MS.NOEXEC, false],
  ['sync', MS.SYNCHRONOUS, true], ['async', MS.SYNCHRONOUS, false],
  ['dirsync', MS.DIRSYNC, true],
  ['noatime', MS.NOATIME, true], ['atime', MS.NOATIME, false],
  ['nodiratime', MS.NODIRATIME, true], ['diratime', MS.NODIRATIME, false],
  ['relatime', MS.RELATIME, true], ['norelatime', MS.RELATIME, false],
  ['strictatime', MS.STRICTATIME, true], ['nostrictatime', MS.STRICTATIME, false],
  ['lazytime', MS.LAZYTIME, true], ['nolazytime', MS.LAZYTIME, false],
  ['mand', MS.MANDLOCK, true], ['nomand', MS.MANDLOCK, false],
  ['silent', MS.SILENT, true], ['loud', MS.SILENT, false],
  ['nosymfollow', MS.NOSYMFOLLOW, true], ['symfollow', MS.NOSYMFOLLOW, false],
  ['iversion', MS.I_VERSION, true], ['noiversion', MS.I_VERSION, false],
] as const).map(([w, f, set]) => [w, [f, set] as const]));

/**
 * Propagation changes: libmount makes each a mount(2) call of its own after the mount, since
 * the kernel takes no other flag with them.
 */
const PROPAGATION: ReadonlyMap<string, number> = new Map([
  ['shared', MS.SHARED], ['rshared', MS.SHARED | MS.REC],
  ['slave', MS.SLAVE], ['rslave', MS.SLAVE | MS.REC],
  ['private', MS.PRIVATE], ['rprivate', MS.PRIVATE | MS.REC],
  ['unbindable', MS.UNBINDABLE], ['runbindable', MS.UNBINDABLE | MS.REC],
]);

/** Words that make mount(8) do another operation than a mount: never a filesystem option. */
const OPERATIONS = new Set(['bind', 'rbind', 'remount', 'move']);

/** Words mount(8) reads itself and never passes to the kernel (libmount's userspace map). */
const USERSPACE = new Set(['auto', 'noauto', 'user', 'nouser', 'users', 'owner', 'noowner', 'group', 'nogroup', 'nofail', '_netdev', 'loop']);
const USERSPACE_KEYS = new Set(['user', 'comment', 'loop', 'offset', 'sizelimit', 'encryption', 'uhelper', 'helper']);

function userspaceOnly(word: string): boolean {
  if (USERSPACE.has(word) || word.startsWith('x-') || word.startsWith('X-')) return true;
  const eq = word.indexOf('=');
  return eq > 0 && USERSPACE_KEYS.has(word.slice(0, eq));
}

export interface SplitOptions {
  /** MS_* flags for mount(2). */
  flags: number;
  /** The filesystem's own options, comma-joined in the order given ('' for none). */
  data: string;
  /** One mount(2) each, after the mount (MS_SHARED, MS_PRIVATE | MS_REC, ...). */
  propagation: number[];
  /** bind/rbind/remount/move: another operation, which the caller decides about. */
  operations: string[];
}

/**
 * Splits an option list as mount(8) does: flag words set or clear their bit in order, so a
 * later word wins over an earlier one (`ro,rw` is read-write); `defaults` changes nothing, as in
 * libmount (its bits are the kernel's defaults already); empty words are skipped.
 */
export function splitOptions(words: readonly string[]): SplitOptions {
  let flags = 0;
  const data: string[] = [];
  const propagation: number[] = [];
  const operations: string[] = [];
  for (const w of words) {
    const flag = FLAG_WORDS.get(w);
    const prop = PROPAGATION.get(w);
    if (flag) flags = flag[1] ? flags | flag[0] : flags & ~flag[0];
    else if (prop !== undefined) propagation.push(prop);
    else if (OPERATIONS.has(w)) operations.push(w);
    else if (w !== '' && w !== 'defaults' && !userspaceOnly(w)) data.push(w);
  }
  return { flags: flags >>> 0, data: data.join(','), propagation, operations };
}

/**
 * The flags for a bind's `MS_REMOUNT | MS_BIND` call: the mount's current per-mount flags (its
 * mountinfo options) with the requested words applied over them, as libmount merges them. A
 * flag left out would be cleared, and one the kernel has locked (a mount inherited into a user
 * namespace) then makes the remount fail with EPERM.
 */
export function bindRemountFlags(current: readonly string[], requested: readonly string[]): number {
  return (splitOptions([...current.filter((w) => FLAG_WORDS.has(w)), ...requested]).flags | MS.REMOUNT | MS.BIND) >>> 0;
}
