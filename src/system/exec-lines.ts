import { createInterface } from 'node:readline';
import { execa } from 'execa';
import { type OpContext, timeLeft } from './context.ts';
import { commandFailure, reportCall, type RunOptions } from './exec.ts';

/**
 * Runs a read-only command and yields its stdout line by line as it comes, for output too large
 * to hold (a 16 GiB volume's block map). run()'s conventions: argument array, C locale, bounded
 * by the caller's deadline and cancelled with its signal; a failure is a CommandError once the
 * output is read. A consumer that stops early (break, throw) kills the command.
 */
export async function* runLines(ctx: OpContext, command: string, args: readonly string[], opts: Pick<RunOptions, 'maxMs'> = {}): AsyncGenerator<string> {
  const timeout = timeLeft(ctx, opts.maxMs ?? 600_000);
  const started = performance.now();
  const child = execa(command, args, {
    reject: false, timeout, cancelSignal: ctx.signal, stdin: 'ignore', buffer: { stdout: false, stderr: true },
    env: { LC_ALL: 'C', LANG: 'C' }, extendEnv: true, cleanup: false,
  });
  let finished = false;
  try {
    // readline pauses stdout while the consumer is behind: the pipe fills and the tool waits.
    for await (const line of createInterface({ input: child.stdout!, crlfDelay: Infinity })) yield line;
    const result = await child;
    finished = true;
    reportCall({ command, args, durationMs: Math.round(performance.now() - started), exitCode: result.exitCode, failed: result.failed });
    if (!result.failed) return;
    // The lines went to the consumer: the error carries stderr only.
    throw commandFailure(command, args, timeout, result, '');
  } finally {
    if (!finished) {
      child.kill();
      await child.catch(() => undefined);
    }
  }
}
