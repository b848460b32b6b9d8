import { observeCommands } from '../system/exec.ts';
import winston from 'winston';

export type Logger = winston.Logger;

const SECRET_KEYS = /secret|password|token|key|credential/i;

/** Replaces values of secret-looking keys (and every `secrets` map) before anything is logged. */
export function redact(value: unknown, depth = 0): unknown {
  if (depth > 8 || value === null || typeof value !== 'object') return value;
  if (Array.isArray(value)) return value.map((v) => redact(v, depth + 1));
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
    if (k === 'secrets' || k.endsWith('_secrets')) out[k] = v && typeof v === 'object' ? '[REDACTED]' : v;
    else if (SECRET_KEYS.test(k) && typeof v === 'string' && k !== 'starting_token' && k !== 'next_token') out[k] = '[REDACTED]';
    else out[k] = redact(v, depth + 1);
  }
  return out;
}

/** Keeps winston's symbol keys (level, message): without them no transport writes anything. */
const redactFormat = winston.format((info) => {
  const out = redact(info) as winston.Logform.TransformableInfo;
  for (const s of Object.getOwnPropertySymbols(info)) {
    (out as unknown as Record<symbol, unknown>)[s] = (info as unknown as Record<symbol, unknown>)[s];
  }
  return out;
});

export function createLogger(opts: { level?: string; silent?: boolean } = {}): Logger {
  return winston.createLogger({
    level: opts.level ?? 'info',
    silent: opts.silent ?? false,
    format: winston.format.combine(redactFormat(), winston.format.timestamp(), winston.format.json()),
    transports: [new winston.transports.Stream({ stream: process.stderr })],
  });
}

/** A logger that drops everything: for unit tests and embedded use. */
export function silentLogger(): Logger {
  return createLogger({ silent: true });
}

/** At debug level, one line per system command: what ran, for how long, how it ended. */
export function logCommands(log: Logger): void {
  if (!log.isDebugEnabled()) return;
  observeCommands((e) => log.debug('command', { command: e.command, args: e.args.join(' '), duration_ms: e.durationMs, exit_code: e.exitCode, failed: e.failed }));
}

/**
 * Which failures of a run of the same failure to log: the first, then one per interval, the
 * interval doubling up to maxMs. An outage that lasts hours then logs a few lines an hour,
 * each saying how many attempts failed since the last line, instead of one line per retry.
 */
export class FallingRate {
  private readonly firstMs: number;
  private readonly maxMs: number;
  private intervalMs = 0;
  private nextAt = 0;
  private unlogged = 0;

  constructor(firstMs = 5_000, maxMs = 300_000) {
    this.firstMs = firstMs;
    this.maxMs = maxMs;
  }

  /** A failure now: the number of failures this line stands for, or undefined to log nothing. */
  failed(now = Date.now()): number | undefined {
    this.unlogged++;
    if (now < this.nextAt) return undefined;
    this.intervalMs = this.intervalMs === 0 ? this.firstMs : Math.min(this.maxMs, this.intervalMs * 2);
    this.nextAt = now + this.intervalMs;
    const n = this.unlogged;
    this.unlogged = 0;
    return n;
  }

  /** The failure is over: the next one is logged at once. */
  reset(): void {
    this.intervalMs = 0;
    this.nextAt = 0;
    this.unlogged = 0;
  }
}
