// Bundles the driver (and the real-kernel test programs) into single files: in the
// emulated test VM, loading one file is ~60x faster than resolving node_modules.
import { cpSync, existsSync, readdirSync } from 'node:fs';
import { build } from 'esbuild';

// BUNDLE_OUTDIR: somewhere else than dist/ (a test builds its own copy, leaving dist/ alone).
const outdir = process.env.BUNDLE_OUTDIR ?? 'dist';
const entries = {
  'dmthin-csi': 'src/cli/main.ts',
  ...Object.fromEntries(process.argv.slice(2).map((p) => [p.replace(/^.*\//, '').replace(/\.ts$/, ''), p])),
};

await build({
  entryPoints: entries,
  outdir,
  outExtension: { '.js': '.mjs' },
  bundle: true,
  platform: 'node',
  target: 'node24',
  format: 'esm',
  // Shared code and on-demand modules (the Kubernetes client) go to chunks: each command
  // parses only what it runs, which in the emulated guest is seconds per start.
  splitting: true,
  chunkNames: 'chunks/[name]-[hash]',
  sourcemap: 'linked',
  legalComments: 'none',
  // CommonJS dependencies (winston, grpc-js) call require() on Node built-ins.
  banner: { js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" },
  logLevel: 'warning',
});

// koffi's native part (a prebuilt .node per platform, installed as an optional package) cannot be
// bundled: the bundle requires it at run time by its package name, which Node resolves from the
// chunk's folder upward, so it goes to dist/node_modules and travels with dist/ (the VM runs the
// bundle in place, the image copies dist/ to /app).
const native = 'node_modules/@koromix';
if (existsSync(native)) {
  for (const pkg of readdirSync(native).filter((d) => d.startsWith('koffi-'))) {
    cpSync(`${native}/${pkg}`, `${outdir}/node_modules/@koromix/${pkg}`, { recursive: true });
  }
}
