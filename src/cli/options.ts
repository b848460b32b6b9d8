import type { ParseArgsOptionsConfig } from 'node:util';
import { parseCommandLine, UsageError } from './flags.ts';

/**
 * One flag of a command, with its environment variable and default: the parser, the value's
 * lookup and the usage text all come from this one description, so the help shows the
 * defaults the command actually uses.
 */
export interface FlagDef {
  /** Without the dashes. */
  name: string;
  /** The value's placeholder in the usage; none: a boolean flag. */
  arg?: string;
  /** Lines of help; the environment variable and the default are appended to the last. */
  help: string[];
  env?: string;
  /** The environment variable's previous name: still read for one release, with a warning. */
  oldEnv?: string;
  /** Used when neither the flag nor the environment says; shown as "(default ...)". */
  default?: string;
  /** Said instead of `default` when the default is computed (the hostname, say). */
  defaultText?: string;
  multiple?: boolean;
}

const HELP: FlagDef = { name: 'help', help: ['this text'] };

export type FlagValues = Record<string, string | boolean | string[] | undefined>;

function specOf(defs: readonly FlagDef[]): ParseArgsOptionsConfig {
  const spec: ParseArgsOptionsConfig = { help: { type: 'boolean', short: 'h' } };
  for (const d of defs) spec[d.name] = { type: d.arg ? 'string' : 'boolean', ...(d.multiple ? { multiple: true } : {}) };
  return spec;
}

const FLAG_COLUMN = 29;

/** The flags' block of a usage text, kubectl's layout: flag and placeholder, then the help. */
export function flagLines(defs: readonly FlagDef[]): string {
  return [...defs, HELP].map((d) => {
    const left = `--${d.name}${d.arg ? ` ${d.arg}` : ''}${d.name === 'help' ? ', -h' : ''}`;
    const tail = [d.env ? `[${d.env}]` : '', d.default !== undefined ? `(default ${d.default})` : d.defaultText ? `(default ${d.defaultText})` : '']
      .filter((x) => x !== '').join(' ');
    const help = [...d.help];
    if (tail) help[help.length - 1] = `${help[help.length - 1]} ${tail}`;
    const pad = ' '.repeat(FLAG_COLUMN + 2);
    const head = left.length < FLAG_COLUMN - 1 ? [`  ${left.padEnd(FLAG_COLUMN)}${help.shift()}`] : [`  ${left}`];
    return [...head, ...help.map((h) => `${pad}${h}`)].join('\n');
  }).join('\n');
}

/** A command's parsed line: each flag's value from the line, else its environment, else its default. */
export class Options {
  /** Deprecated names the line or environment used: the command logs each once. */
  readonly deprecations: string[] = [];
  readonly values: FlagValues;
  private readonly byName: Map<string, FlagDef>;
  private readonly env: NodeJS.ProcessEnv;

  constructor(values: FlagValues, defs: readonly FlagDef[], env: NodeJS.ProcessEnv) {
    this.values = values;
    this.byName = new Map(defs.map((d) => [d.name, d]));
    this.env = env;
  }

  static parse(argv: string[], defs: readonly FlagDef[], usage: string, env: NodeJS.ProcessEnv): Options {
    return new Options(parseCommandLine(argv, specOf(defs), usage) as FlagValues, defs, env);
  }

  get help(): boolean {
    return this.values.help === true;
  }

  string(name: string): string | undefined {
    const d = this.def(name);
    const v = this.values[name];
    if (typeof v === 'string') return v;
    if (d.env && this.env[d.env]) return this.env[d.env];
    if (d.oldEnv && this.env[d.oldEnv]) {
      this.deprecations.push(`${d.oldEnv} is deprecated and will be removed in the next release: set ${d.env} instead`);
      return this.env[d.oldEnv];
    }
    return d.default;
  }

  bool(name: string): boolean {
    return this.values[name] === true;
  }

  list(name: string): string[] {
    const v = this.values[name];
    return Array.isArray(v) ? v : [];
  }

  private def(name: string): FlagDef {
    const d = this.byName.get(name);
    if (!d) throw new Error(`no flag --${name}`);
    return d;
  }
}

/** The levels the driver logs at: winston's others (http, verbose, silly) would log nothing more. */
export const LOG_LEVELS = ['error', 'warn', 'info', 'debug'] as const;

export const LOG_LEVEL_FLAG: FlagDef = {
  name: 'log-level', arg: 'LEVEL', help: [LOG_LEVELS.join(', ')], env: 'DMTHIN_LOG_LEVEL', oldEnv: 'LOG_LEVEL', default: 'info',
};

/** "WARN" → "warn"; anything the driver never logs at is refused rather than silencing it. */
export function logLevel(o: Options): string {
  const raw = o.string('log-level') ?? 'info';
  const level = raw.trim().toLowerCase();
  if (!(LOG_LEVELS as readonly string[]).includes(level)) {
    throw new UsageError(`--log-level "${raw}" is not a log level (use ${LOG_LEVELS.join(', ')})`);
  }
  return level;
}

/** Each deprecated name a command was started with, once, at its start. */
export function warnDeprecated(log: { warn(message: string, meta?: object): unknown }, deprecations: readonly string[]): void {
  for (const d of new Set(deprecations)) log.warn('deprecated', { detail: d });
}
