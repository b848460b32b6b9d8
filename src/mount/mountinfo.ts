import type { MountEntry } from './types.ts';

/** Every field of one /proc/self/mountinfo line (proc(5)); paths unescaped. */
export interface MountinfoRecord extends MountEntry {
  mountId: number;
  parentId: number;
  /** Optional fields such as `shared:1` or `master:2`; may be empty. */
  optionalFields: string[];
  /** Per-superblock options (fs-specific, e.g. `errors=remount-ro`). */
  superOptions: string[];
}

/**
 * The kernel escapes space, tab, newline and backslash in paths as three-digit octal
 * (`\040`, `\011`, `\012`, `\134`); anything else after a backslash is left alone.
 */
export function unescapeMountinfo(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

function splitOptions(field: string): string[] {
  return field === '' ? [] : field.split(',');
}

/**
 * Parses one line. Fields are split on single spaces (not runs of whitespace) because
 * an empty source shows up as two adjacent spaces, and the optional fields are
 * variable in number, so the fixed tail is located by the lone `-` separator.
 */
export function parseMountinfoLine(line: string): MountinfoRecord {
  const fields = line.replace(/\n$/, '').split(' ');
  const sep = fields.indexOf('-', 6);
  if (sep < 0 || fields.length < sep + 3) throw new Error(`malformed mountinfo line: ${JSON.stringify(line)}`);
  const [mountId, parentId, majorMinor, root, target, options] = fields;
  if (!/^\d+:\d+$/.test(majorMinor ?? '')) throw new Error(`malformed mountinfo major:minor in: ${JSON.stringify(line)}`);
  return {
    mountId: Number(mountId),
    parentId: Number(parentId),
    majorMinor: majorMinor as string,
    root: unescapeMountinfo(root as string),
    target: unescapeMountinfo(target as string),
    options: splitOptions(options as string),
    optionalFields: fields.slice(6, sep).filter((f) => f !== ''),
    fsType: unescapeMountinfo(fields[sep + 1] as string),
    source: unescapeMountinfo(fields[sep + 2] as string),
    // Super options are the last field, but tolerate spaces by re-joining the rest.
    superOptions: splitOptions(fields.slice(sep + 3).join(' ')),
  };
}

/** Parses a whole mountinfo file, skipping blank lines; a malformed line throws. */
export function parseMountinfo(text: string): MountinfoRecord[] {
  return text.split('\n').filter((l) => l.trim() !== '').map(parseMountinfoLine);
}

/** Narrows a record to the MountEntry the Mounter interface returns. */
export function toMountEntry(r: MountinfoRecord): MountEntry {
  return { target: r.target, source: r.source, fsType: r.fsType, options: r.options, majorMinor: r.majorMinor, root: r.root };
}
