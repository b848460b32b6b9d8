import { parseArgs, type ParseArgsOptionsConfig } from 'node:util';

/**
 * A command line the CLI cannot run (an unknown flag, a bad or missing value): run.ts prints
 * its message and exits 2. Not a CsiError: no gRPC client ever sees it.
 */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

type Strict<T extends ParseArgsOptionsConfig> = { args: string[]; options: T; strict: true; allowPositionals: false };

/** The flags of one command; a line it cannot parse fails with the command's usage. */
export function parseCommandLine<T extends ParseArgsOptionsConfig>(argv: string[], options: T, usage: string): ReturnType<typeof parseArgs<Strict<T>>>['values'] {
  try {
    return parseArgs<Strict<T>>({ args: argv, options, strict: true, allowPositionals: false }).values;
  } catch (err) {
    throw new UsageError(`${(err as Error).message}\n${usage}`);
  }
}

const UNITS: Record<string, number> = {
  '': 1, k: 1e3, m: 1e6, g: 1e9, t: 1e12, ki: 1024, mi: 1024 ** 2, gi: 1024 ** 3, ti: 1024 ** 4,
};

/** "256Gi", "1G", "4096" → bytes. */
export function parseSize(text: string, what: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kKmMgGtT]i?)?[bB]?$/.exec(text.trim());
  const unit = UNITS[(m?.[2] ?? '').toLowerCase()];
  if (!m || unit === undefined) throw new UsageError(`${what}: "${text}" is not a size (examples: 512Mi, 10Gi, 1T)`);
  const n = Math.floor(Number(m[1]) * unit);
  if (!Number.isSafeInteger(n) || n <= 0) throw new UsageError(`${what}: "${text}" is out of range`);
  return n;
}

export function parseRatio(text: string, what: string): number {
  const n = Number(text);
  if (!Number.isFinite(n) || n <= 0 || n > 1000) throw new UsageError(`${what}: "${text}" must be a number between 0 and 1000`);
  return n;
}
