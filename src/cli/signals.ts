import { constants } from 'node:os';

/**
 * Resolves on the first SIGTERM or SIGINT, for a clean stop; a second one exits at once.
 *
 * The listeners stay installed (`on`, not `once`): a library's exit handler (execa's
 * subprocess cleanup did, before run() turned it off) may re-raise a signal when it finds no
 * listener besides its own, and a `once` listener has already removed itself by then. That
 * killed the driver on the spot when a SIGTERM came while a command ran (and the next start
 * found the metadata snapshot a pool check had reserved still marked held).
 */
export function untilSignalled(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    let seen = false;
    const onSignal = (sig: NodeJS.Signals) => {
      if (seen) {
        process.stderr.write(`dmthin-csi: ${sig} again while stopping: exiting now\n`);
        process.exit(128 + (constants.signals[sig] ?? 0));
      }
      seen = true;
      resolve(sig);
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  });
}
