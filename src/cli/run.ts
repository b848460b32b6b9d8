import { CsiError } from '../errors.ts';
import { buildConfig, parseFlags, USAGE } from './config.ts';
import { UsageError } from './flags.ts';
import { FatalError, runStandalone } from './standalone.ts';
import { runDoctor } from './doctor.ts';
import { untilSignalled } from './signals.ts';
import { runStatus } from './status.ts';

const COMMANDS = `Usage: dmthin-csi COMMAND [flags]
Commands:
  standalone   serve the Identity, Controller and Node services in one process (default)
  controller   Kubernetes: Identity + Controller, volumes as custom resources (leader-elected)
  node         Kubernetes: Identity + Node and the node agent for --node-id's pool
  status       print the pool and the volume table of this node (--state-dir, --pool-name)
  doctor       check this node: dm-thin in the kernel, tools and versions, pool health (--pool-name)
  help         this text
`;

async function main(argv: string[]): Promise<number> {
  const [command = 'standalone', ...rest] = argv[0]?.startsWith('-') ? ['standalone', ...argv] : argv;
  if (command === 'help' || rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(`${COMMANDS}\n${USAGE}\n`);
    return 0;
  }
  if (command === 'status') return runStatus(rest);
  if (command === 'doctor') return runDoctor(rest);
  if (command !== 'standalone' && command !== 'controller' && command !== 'node') {
    process.stderr.write(`unknown command "${command}"\n${COMMANDS}`);
    return 2;
  }
  // Listen before starting, so a signal that arrives mid-start still shuts down cleanly.
  const signalled = untilSignalled();
  // Kubernetes modes load the Kubernetes client on demand: a standalone start never parses it.
  const stop = command === 'standalone' ? await runStandalone(buildConfig(parseFlags(rest)))
    : await (await import('./kube.ts'))[command === 'controller' ? 'runController' : 'runNode'](rest);
  await signalled;
  await stop();
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    // A known failure is said in its message: a bad command line, a kernel without dm-thin, or a
    // pool the start cannot use (ensurePool's CsiErrors, such as a --pool-existing pool that is not there).
    const known = err instanceof UsageError || err instanceof FatalError || err instanceof CsiError;
    process.stderr.write(`dmthin-csi: ${known ? (err as Error).message : (err as Error)?.stack ?? String(err)}\n`);
    process.exit(known ? 2 : 1);
  },
);
