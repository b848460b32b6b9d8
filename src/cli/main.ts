#!/usr/bin/env node
import module from 'node:module';

// Before anything else is loaded: on an older Node the bundle's dependencies (undici) fail at
// load with a TypeError that names nothing. Only node: built-ins are imported above this line.
const NODE_MAJOR = 24;
if (Number(process.versions.node.split('.')[0]) < NODE_MAJOR) {
  process.stderr.write(`dmthin-csi needs Node.js >= ${NODE_MAJOR} (this is v${process.versions.node})\n`);
  process.exit(2);
}

// A dm suspend, remove or pool message that outlives its deadline keeps its worker thread until
// the kernel lets go (a flush on a full pool: no_space_timeout, 60 s by default). With libuv's
// 4 threads, four such calls would queue every later ioctl, mount and file write behind them.
// libuv reads this once, on its first use of the pool, which is after this line.
process.env.UV_THREADPOOL_SIZE ??= '16';

// V8's compile cache (in $NODE_COMPILE_CACHE, else the temp dir): a restarted driver skips
// parsing its bundle again, which is most of a start on a slow machine. It is loaded first, so
// the cache covers everything the command imports; NODE_DISABLE_COMPILE_CACHE=1 turns it off.
module.enableCompileCache?.();
await import('./run.ts');
