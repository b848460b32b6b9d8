import { readFileSync } from 'node:fs';

/** Outputs recorded from a real 6.1 kernel by test/vm/smoke.sh --record (see INDEX.txt there). */
const DIR = new URL('../../fixtures/dmsetup/', import.meta.url);

/** A recorded stdout, exactly as dmsetup printed it. */
export function recorded(name: string): string {
  return readFileSync(new URL(name, DIR), 'utf8');
}

/** A recorded failure: files whose first line is "exit=N", followed by dmsetup's stderr. */
export function recordedFailure(name: string): { exit: number; stderr: string } {
  const text = recorded(name);
  const nl = text.indexOf('\n');
  const m = /^exit=(\d+)$/.exec(nl < 0 ? text : text.slice(0, nl));
  if (!m) throw new Error(`${name} does not start with exit=N`);
  return { exit: Number(m[1]), stderr: nl < 0 ? '' : text.slice(nl + 1) };
}

/** The lines of a multi-device listing whose target is `target` (what --target would keep). */
export function onlyTarget(listing: string, target: string): string {
  return listing.split('\n').filter((l) => l.split(' ')[3] === target).map((l) => `${l}\n`).join('');
}
