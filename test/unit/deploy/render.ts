/**
 * Renders charts/dmthin-csi the way `helm template` does, as far as can be done without Helm:
 * every template is executed by Go's own text/template (compiled to WebAssembly, from the
 * @evertdespiegeleer/go-template package) with the chart's _*.tpl helpers prepended, on the
 * same top-level objects Helm passes (.Values, .Release, .Chart). The templates use only Go's
 * built-in functions, so this is the same engine Helm runs, minus Helm's extra functions (which
 * the chart does not use: a template that calls one fails here). Missing keys are errors here
 * (Helm would print nothing), which is stricter. Output: Helm's install order of kinds, each
 * document headed by `# Source:` as Helm prints it. CRDs (crds/) are not rendered, as with
 * `helm template` without --include-crds.
 *
 * CLI: node test/unit/deploy/render.ts [--write]   (--write updates deploy/dmthin-csi.yaml)
 */
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse as goTemplate } from '@evertdespiegeleer/go-template';
import { load, loadAll } from 'js-yaml';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const CHART_DIR = path.join(ROOT, 'charts/dmthin-csi');
export const PLAIN_MANIFEST = path.join(ROOT, 'deploy/dmthin-csi.yaml');
/** Release of the plain manifests: `helm template dmthin-csi charts/dmthin-csi -n kube-system`. */
export const DEFAULT_RELEASE = { name: 'dmthin-csi', namespace: 'kube-system' };

/** Helm's InstallOrder (pkg/releaseutil/kind_sorter.go); unknown kinds go last. */
const INSTALL_ORDER = [
  'PriorityClass', 'Namespace', 'NetworkPolicy', 'ResourceQuota', 'LimitRange', 'PodSecurityPolicy',
  'PodDisruptionBudget', 'ServiceAccount', 'Secret', 'SecretList', 'ConfigMap', 'StorageClass',
  'PersistentVolume', 'PersistentVolumeClaim', 'CustomResourceDefinition', 'ClusterRole', 'ClusterRoleList',
  'ClusterRoleBinding', 'ClusterRoleBindingList', 'Role', 'RoleList', 'RoleBinding', 'RoleBindingList',
  'Service', 'DaemonSet', 'Pod', 'ReplicationController', 'ReplicaSet', 'Deployment', 'HorizontalPodAutoscaler',
  'StatefulSet', 'Job', 'CronJob', 'IngressClass', 'Ingress', 'APIService',
];

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

/** Helm's values coalescing for user overrides: maps merge key by key, anything else replaces. */
export function mergeValues(base: Values, over: Values): Values {
  const out: Values = { ...base };
  for (const [k, v] of Object.entries(over)) {
    const b = out[k];
    out[k] = isPlainObject(b) && isPlainObject(v) ? mergeValues(b, v) : v;
  }
  return out;
}

export function chartValues(overrides: Values = {}): Values {
  const values = load(readFileSync(path.join(CHART_DIR, 'values.yaml'), 'utf8'));
  if (!isPlainObject(values)) throw new Error('values.yaml is not a map');
  return mergeValues(values, overrides);
}

/** Chart.yaml as Helm exposes it to templates (.Chart.Name, .Chart.Version, .Chart.AppVersion...). */
function chartObject(): Record<string, unknown> {
  const meta = load(readFileSync(path.join(CHART_DIR, 'Chart.yaml'), 'utf8'));
  if (!isPlainObject(meta)) throw new Error('Chart.yaml is not a map');
  return Object.fromEntries(Object.entries(meta).map(([k, v]) => [k.charAt(0).toUpperCase() + k.slice(1), v]));
}

/** A document holding only comments and blank lines is dropped, as Helm drops it. */
function isEmptyDoc(text: string): boolean {
  return text.split('\n').every((l) => l.trim() === '' || l.trimStart().startsWith('#'));
}

export async function renderChart(opts: { release?: { name: string; namespace: string }; values?: Values } = {}): Promise<RenderedDoc[]> {
  const release = opts.release ?? DEFAULT_RELEASE;
  const chart = chartObject();
  const data = {
    Values: chartValues(opts.values),
    Release: { Name: release.name, Namespace: release.namespace, Service: 'Helm', IsInstall: true, IsUpgrade: false, Revision: 1 },
    Chart: chart,
  };
  const dir = path.join(CHART_DIR, 'templates');
  const files = readdirSync(dir).sort();
  const helpers = files.filter((f) => f.startsWith('_')).map((f) => readFileSync(path.join(dir, f), 'utf8')).join('');
  const docs: RenderedDoc[] = [];
  for (const file of files.filter((f) => !f.startsWith('_') && /\.ya?ml$/.test(f))) {
    const source = `${String(chart.Name)}/templates/${file}`;
    let out: string;
    try {
      out = await goTemplate(helpers + readFileSync(path.join(dir, file), 'utf8'), data);
    } catch (err) {
      throw new Error(`${source}: ${(err as Error).message}`, { cause: err });
    }
    for (const part of out.split(/^---[ \t]*$/m)) {
      if (isEmptyDoc(part)) continue;
      const text = part.replace(/^\n+/, '').trimEnd();
      const objects = loadAll(text);
      if (objects.length !== 1 || !isPlainObject(objects[0])) throw new Error(`${source}: a document is not one YAML map:\n${text}`);
      docs.push({ source, text, object: objects[0] });
    }
  }
  const rank = (d: RenderedDoc) => {
    const i = INSTALL_ORDER.indexOf(String(d.object.kind));
    return i < 0 ? INSTALL_ORDER.length : i;
  };
  // Array.prototype.sort is stable: same-kind documents keep file order.
  return docs.sort((a, b) => rank(a) - rank(b));
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
