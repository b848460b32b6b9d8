import { execa } from 'execa';
import { type OpContext, timeLeft } from './context.ts';
import { step } from './crashpoint.ts';

/** errno names recognised in a tool's stderr, as printed by strerror(3) in the C locale. */
const STRERROR: ReadonlyArray<[string, string]> = [
  ['File exists', 'EEXIST'],
  ['Device or resource busy', 'EBUSY'],
  ['No data available', 'ENODATA'],
  ['Invalid argument', 'EINVAL'],
  ['No space left on device', 'ENOSPC'],
  ['No such device or address', 'ENXIO'],
  ['No such file or directory', 'ENOENT'],
  ['No such device', 'ENODEV'],
  ['Operation not permitted', 'EPERM'],
  ['Permission denied', 'EACCES'],
  ['Read-only file system', 'EROFS'],
  ['Input/output error', 'EIO'],
];

/** The first errno name whose strerror text appears in `text`, if any. */
export function errnoFromText(text: string): string | undefined {
  for (const [needle, name] of STRERROR) if (text.includes(needle)) return name;
  return undefined;
}

export class CommandError extends Error {
  readonly command: string;
  readonly args: readonly string[];
  /** Process exit code; undefined when it never ran or was killed. */
  readonly exitCode: number | undefined;
  readonly stderr: string;
  readonly stdout: string;
  /** errno name: from the spawn failure itself, else from the tool's strerror text. */
  readonly errno: string | undefined;
  readonly timedOut: boolean;
  constructor(init: {
    command: string; args: readonly string[]; exitCode: number | undefined; stderr: string;
    stdout: string; errno: string | undefined; timedOut: boolean; message: string;
  }) {
    super(init.message);
    this.name = 'CommandError';
    this.command = init.command;
    this.args = init.args;
    this.exitCode = init.exitCode;
    this.stderr = init.stderr;
    this.stdout = init.stdout;
    this.errno = init.errno;
    this.timedOut = init.timedOut;
  }
}

export interface RunOptions {
  /** Upper bound for this command, further capped by the context deadline. */
  maxMs?: number;
  input?: string;
  env?: Record<string, string>;
  /** A read that changes nothing; it is not a step at which crash injection may kill. */
  query?: boolean;
}

export interface RunResult { stdout: string; stderr: string }

export interface CommandEvent { command: string; args: readonly string[]; durationMs: number; exitCode: number | undefined; failed: boolean }
let observer: ((e: CommandEvent) => void) | undefined;

/** Sees every command run (the CLI logs them at debug level: what ran, how long, how it ended). */
export function observeCommands(fn: ((e: CommandEvent) => void) | undefined): void {
  observer = fn;
}

/** Reports a system call made in process (a dm ioctl) to the same observer as the commands. */
export function reportCall(e: CommandEvent): void {
  observer?.(e);
}

/** Runs a system command: argument array only, C locale, bounded by the caller's deadline. */
export async function run(ctx: OpContext, command: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const timeout = timeLeft(ctx, opts.maxMs ?? 60_000);
  const started = performance.now();
  const result = await execa(command, args, {
    reject: false,
    timeout,
    cancelSignal: ctx.signal,
    input: opts.input,
    stdin: opts.input === undefined ? 'ignore' : undefined,
    env: { LC_ALL: 'C', LANG: 'C', ...opts.env },
    extendEnv: true,
    stripFinalNewline: true,
    // A command outlives an abrupt exit of the driver: a dmsetup killed between its create and
    // its table load leaves a half-made device, while one left to finish leaves a whole step
    // for the next start to judge, as after a SIGKILL. The deadline and the RPC's cancel still
    // kill it. (It also spares every spawn execa's install and removal of exit handlers.)
    cleanup: false,
  });
  observer?.({ command, args, durationMs: Math.round(performance.now() - started), exitCode: result.exitCode, failed: result.failed });
  // A kill right after a query leaves the world as a kill before it does: no new boundary.
  if (!opts.query) step(`${command} ${args.join(' ')}`);
  if (!result.failed) return { stdout: String(result.stdout), stderr: String(result.stderr) };
  throw commandFailure(command, args, timeout, result);
}

/** What execa answered for a failed command, as the typed error every caller maps (status.ts). */
export function commandFailure(command: string, args: readonly string[], timeout: number, result: {
  stderr?: unknown; stdout?: unknown; cause?: unknown; exitCode?: number; timedOut?: boolean; shortMessage?: string;
}, stdout = String(result.stdout ?? '')): CommandError {
  const stderr = String(result.stderr ?? '');
  const spawnErrno = (result.cause as NodeJS.ErrnoException | undefined)?.code;
  const errno = typeof spawnErrno === 'string' && spawnErrno.startsWith('E') ? spawnErrno : errnoFromText(stderr);
  const why = result.timedOut ? `timed out after ${timeout} ms`
    : result.exitCode !== undefined ? `exit code ${result.exitCode}` : (result.shortMessage ?? 'failed');
  return new CommandError({
    command, args, exitCode: result.exitCode, stderr, stdout,
    errno, timedOut: Boolean(result.timedOut),
    message: `${command} ${args.join(' ')}: ${why}${stderr ? `: ${stderr.trim()}` : ''}`,
  });
}
