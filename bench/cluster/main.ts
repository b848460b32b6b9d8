// npm run bench:cluster -- [--nodes 100] [--volumes 10000] [--per-host 25] [--n1 200] [--n16 1000]
//   [--snapshots 500] [--sample-every 1000] [--idle 20] [--src] [--save NAME] | --render FILE.json
// See bench/README.md ("cluster bench") and docs/cluster-bench.md.
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { runClusterBench } from './bench.ts';
import { render, targets, type Result } from './report.ts';

const ROOT = resolve(import.meta.dirname, '..', '..');

const { values } = parseArgs({
  options: {
    nodes: { type: 'string', default: '100' }, volumes: { type: 'string', default: '10000' }, 'per-host': { type: 'string', default: '25' },
    n1: { type: 'string', default: '200' }, n16: { type: 'string', default: '1000' }, snapshots: { type: 'string', default: '500' },
    'sample-every': { type: 'string', default: '1000' }, idle: { type: 'string', default: '20' },
    src: { type: 'boolean', default: false }, save: { type: 'string' }, render: { type: 'string' }, out: { type: 'string', default: join(ROOT, 'bench', 'out', 'cluster') },
  },
});

if (values.render) {
  process.stdout.write(render(JSON.parse(readFileSync(values.render, 'utf8')) as Result));
  process.exit(0);
}

const num = (k: keyof typeof values) => Number(values[k]);
const uptime = () => execFileSync('uptime', { encoding: 'utf8' }).trim();
const before = uptime();
if (!values.src) execFileSync(process.execPath, [join(ROOT, 'scripts', 'bundle.mjs')], { cwd: ROOT, stdio: 'inherit' });
const volumes = num('volumes');
const result = await runClusterBench({
  root: ROOT, dir: values.out!, nodes: num('nodes'), volumes, perHost: num('per-host'),
  small: { 1: Math.min(num('n1'), volumes), 16: Math.min(num('n16'), volumes) }, snapshots: Math.min(num('snapshots'), volumes),
  sampleEvery: num('sample-every'), bundle: !values.src, idleSeconds: num('idle'),
  log: (l) => process.stdout.write(`[${new Date().toISOString().slice(11, 19)}] ${l}\n`),
});
result.machine.uptime = `${before} / after: ${uptime()}`;
const table = render(result);
mkdirSync(values.out!, { recursive: true });
writeFileSync(join(values.out!, 'results.json'), JSON.stringify(result, null, 1));
writeFileSync(join(values.out!, 'results.md'), table);
if (values.save) {
  writeFileSync(join(ROOT, 'bench', 'results', `${values.save}.json`), JSON.stringify(result, null, 1));
  writeFileSync(join(ROOT, 'bench', 'results', `${values.save}.md`), table);
}
process.stdout.write(`\n${table}`);
process.exit(targets(result).every((t) => t.met) ? 0 : 3);
