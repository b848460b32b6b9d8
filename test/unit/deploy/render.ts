/**
 * Renders charts/dmthin-csi with the real Helm: `helm template` of helm v3.7.1 from ../shared/bin
 * (unpacked into .cache/realkube/bin beside the Kubernetes binaries), so every sprig function,
 * values.schema.json, the coalescing of user values (maps key by key, lists replaced, null
 * removes a key) and the order of the output are Helm's own. CRDs (crds/) are not rendered, as
 * with `helm template` without --include-crds. A render with a chart directory other than the
 * real one (`chartDir`) is for tests that trim or edit the chart's files.
 *
 * CLI: node test/unit/deploy/render.ts [--write]   (--write updates deploy/dmthin-csi.yaml)
 */
import { execFile, execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { load, loadAll } from 'js-yaml';
import { sharedBin } from '../../realkernel/realkube/cluster.ts';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const CHART_DIR = path.join(ROOT, 'charts/dmthin-csi');
export const PLAIN_MANIFEST = path.join(ROOT, 'deploy/dmthin-csi.yaml');
/** Release of the plain manifests: `helm template dmthin-csi charts/dmthin-csi -n kube-system`. */
export const DEFAULT_RELEASE = { name: 'dmthin-csi', namespace: 'kube-system' };
/** The Kubernetes version Helm is told it renders for (Chart.yaml's kubeVersion must accept it). */
export const KUBE_VERSION = 'v1.26.4';

export type Values = Record<string, unknown>;

export interface RenderedDoc {
  /** Template path as Helm prints it, e.g. dmthin-csi/templates/node.yaml. */
  source: string;
  /** The document's text exactly as the template produced it. */
  text: string;
  object: Record<string, unknown>;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The chart's own values.yaml, parsed. */
export function chartValues(): Values {
  const values = load(readFileSync(path.join(CHART_DIR, 'values.yaml'), 'utf8'));
  if (!isPlainObject(values)) throw new Error('values.yaml is not a map');
  return values;
}

/**
 * The helm binary, decompressed from ../shared/bin when missing. Test files run in parallel
 * processes, so each writes its own temporary file and renames it into place (atomic), and the
 * checksum is checked before the rename.
 */
export function helmBinary(): string {
  const bin = path.join(ROOT, '.cache', 'realkube', 'bin', 'helm');
  if (existsSync(bin)) return bin;
  const shared = sharedBin(ROOT);
  const sum = /^([0-9a-f]{64}) helm$/m.exec(readFileSync(path.join(shared, 'SHA256SUMS'), 'utf8'))?.[1];
  const data = execFileSync('xz', ['-dc', path.join(shared, 'helm.xz')], { maxBuffer: 1 << 30 });
  if (createHash('sha256').update(data).digest('hex') !== sum) throw new Error(`${shared}/helm.xz: checksum mismatch`);
  mkdirSync(path.dirname(bin), { recursive: true });
  const tmp = `${bin}.${process.pid}.tmp`;
  writeFileSync(tmp, data, { mode: 0o755 });
  renameSync(tmp, bin);
  return bin;
}

const run = promisify(execFile);

/** `helm template`'s output split into its documents; Helm heads each with `# Source:`. */
export function splitManifest(out: string): RenderedDoc[] {
  const docs: RenderedDoc[] = [];
  for (const part of out.split(/^---[ \t]*\n/m)) {
    const m = /^# Source: (\S+)\n/.exec(part);
    if (!m) {
      if (part.trim() !== '') throw new Error(`a document without a # Source: header:\n${part}`);
      continue;
    }
    const text = part.slice(m[0].length).trimEnd();
    const objects = loadAll(text);
    if (objects.length !== 1 || !isPlainObject(objects[0])) throw new Error(`${m[1]}: a document is not one YAML map:\n${text}`);
    docs.push({ source: m[1]!, text, object: objects[0] });
  }
  return docs;
}

/** Runs `helm template` and returns its raw output; a values override becomes one `-f` file. */
export async function helmTemplate(opts: { release?: { name: string; namespace: string }; values?: Values; chartDir?: string; extra?: string[] } = {}): Promise<string> {
  const release = opts.release ?? DEFAULT_RELEASE;
  const dir = mkdtempSync(path.join(tmpdir(), 'dmthin-helm-'));
  try {
    const args = ['template', release.name, opts.chartDir ?? CHART_DIR, '--namespace', release.namespace, '--kube-version', KUBE_VERSION, ...(opts.extra ?? [])];
    if (opts.values) {
      writeFileSync(path.join(dir, 'values.json'), JSON.stringify(opts.values));
      args.push('-f', path.join(dir, 'values.json'));
    }
    // HOME and the XDG dirs inside the temp dir: helm writes nothing into the user's config.
    const env = { PATH: process.env.PATH ?? '', HOME: dir, XDG_CACHE_HOME: dir, XDG_CONFIG_HOME: dir, XDG_DATA_HOME: dir };
    try {
      return (await run(helmBinary(), args, { env, maxBuffer: 16 << 20 })).stdout;
    } catch (err) {
      throw new Error(`helm template failed: ${String((err as { stderr?: string }).stderr ?? err)}`, { cause: err });
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function renderChart(opts: { release?: { name: string; namespace: string }; values?: Values; chartDir?: string } = {}): Promise<RenderedDoc[]> {
  return splitManifest(await helmTemplate(opts));
}

/** The docs as `helm template` prints them. */
export function toManifest(docs: readonly RenderedDoc[]): string {
  return docs.map((d) => `---\n# Source: ${d.source}\n${d.text}\n`).join('');
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const text = toManifest(await renderChart());
  if (process.argv.includes('--write')) writeFileSync(PLAIN_MANIFEST, text);
  else process.stdout.write(text);
}
