import { CsiError } from '../errors.ts';
import { VERSION } from '../version.ts';
import { buildConfig, CONTROLLER_USAGE, NODE_USAGE, parseFlags, USAGE } from './config.ts';
import { UsageError } from './flags.ts';
import { FatalError, runStandalone } from './standalone.ts';
import { DOCTOR_USAGE, runDoctor } from './doctor.ts';
import { untilSignalled } from './signals.ts';
import { runStatus, STATUS_USAGE } from './status.ts';

const COMMANDS = `Usage: dmthin-csi COMMAND [flags]
Commands:
  standalone   serve the Identity, Controller and Node services in one process (default)
  controller   Kubernetes: Identity + Controller, volumes as custom resources (leader-elected)
  node         Kubernetes: Identity + Node and the node agent for --node-id's pool
  status       print the pool and the volume table of this node
  doctor       check this node: dm-thin in the kernel, tools and versions, pool health
  version      print the version
  help         this text; \`dmthin-csi help COMMAND\` or \`dmthin-csi COMMAND --help\`: a command's flags
`;

/** Each command's own usage, for `COMMAND --help` and `help COMMAND`. */
const USAGES: Record<string, string> = {
  standalone: USAGE, controller: CONTROLLER_USAGE, node: NODE_USAGE, status: STATUS_USAGE, doctor: DOCTOR_USAGE,
};

const print = (text: string): number => {
  process.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
  return 0;
};

async function main(argv: string[]): Promise<number> {
  if (argv[0] === '--version' || argv[0] === '-v' || argv[0] === 'version') return print(`dmthin-csi ${VERSION}`);
  if (argv.length === 1 && (argv[0] === '--help' || argv[0] === '-h')) return print(`${COMMANDS}\n${USAGE}`);
  if (argv[0] === 'help') return print(USAGES[argv[1] ?? ''] ?? COMMANDS);
  const [command = 'standalone', ...rest] = argv[0]?.startsWith('-') ? ['standalone', ...argv] : argv;
  const usage = USAGES[command];
  if (usage === undefined) {
    process.stderr.write(`dmthin-csi: unknown command "${command}"\n${COMMANDS}`);
    return 2;
  }
  if (rest.includes('--help') || rest.includes('-h')) return print(usage);
  if (command === 'status') return runStatus(rest);
  if (command === 'doctor') return runDoctor(rest);
  // Listen before starting, so a signal that arrives mid-start still shuts down cleanly.
  const signalled = untilSignalled();
  // Kubernetes modes load the Kubernetes client on demand: a standalone start never parses it.
  const stop = command === 'standalone' ? await runStandalone(buildConfig(parseFlags(rest)))
    : await (await import('./kube.ts'))[command === 'controller' ? 'runController' : 'runNode'](rest, process.env, signalled);
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
