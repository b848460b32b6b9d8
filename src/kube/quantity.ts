/**
 * Byte counts as Kubernetes quantities, for the string fields kubectl's printer columns show
 * (a column cannot format an integer as a size).
 */
const UNITS = ['', 'Ki', 'Mi', 'Gi', 'Ti', 'Pi', 'Ei'];

/** Exact, as Kubernetes canonicalises a binary quantity: the largest unit it is a whole number of (1Gi, 1536Mi, 1000). */
export function quantity(bytes: number): string {
  let v = bytes;
  let i = 0;
  while (v !== 0 && v % 1024 === 0 && i < UNITS.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v}${UNITS[i]}`;
}

/** Rounded for reading (1.5Ki, 10Gi, 1.25Ti): the pool's usage, which is seldom a round figure. */
export function formatBytes(n: number): string {
  let v = n;
  let i = 0;
  while (v >= 1024 && i < UNITS.length - 1) {
    v /= 1024;
    i++;
  }
  const text = i === 0 || Number.isInteger(v) ? String(v) : v.toFixed(v < 10 ? 2 : 1).replace(/\.?0+$/, '');
  return `${text}${UNITS[i]}`;
}
