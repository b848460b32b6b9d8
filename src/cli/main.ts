#!/usr/bin/env node
import module from 'node:module';

// V8's compile cache (in $NODE_COMPILE_CACHE, else the temp dir): a restarted driver skips
// parsing its bundle again, which is most of a start on a slow machine. It is loaded first, so
// the cache covers everything the command imports; NODE_DISABLE_COMPILE_CACHE=1 turns it off.
module.enableCompileCache?.();
await import('./run.ts');
