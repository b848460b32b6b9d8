// What the chart tells its users: the values table in its README (generated from values.yaml),
// NOTES.txt as `helm install` prints it, and the one image name the chart and the build share.
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import { load } from 'js-yaml';
import { chartReadme, describedKeys, README, VALUES, valuesTable } from '../../../scripts/generate-chart-docs.ts';
import { CHART_DIR, chartValues, renderChart, ROOT, type Values } from './render.ts';

test('the chart README\'s values table is what values.yaml generates', () => {
  assert.equal(readFileSync(README, 'utf8'), chartReadme(readFileSync(README, 'utf8'), readFileSync(VALUES, 'utf8')),
    'charts/dmthin-csi/README.md is stale: run `npm run generate-chart-docs`');
});

test('the generator refuses a key no comment describes, and takes a parent\'s comment for its children', () => {
  const text = 'a:\n  # -- The b.\n  # Second line.\n  b: 1\n  c: x\n# -- D, whole.\nd:\n  e: [1]\n';
  assert.deepEqual(describedKeys(text), [{ key: 'a.b', description: 'The b. Second line.' }, { key: 'd', description: 'D, whole.' }]);
  assert.throws(() => valuesTable(text), /no `# --` comment describes a\.c/);
  assert.match(valuesTable(text.replace('  c: x\n', '')), /\| `d` \| object \| `\{"e":\[1\]\}` \| D, whole\. \|/);
});

/** NOTES.txt rendered by Helm: in a copy of the chart, its text becomes one YAML document's string. */
async function notes(values?: Values): Promise<string> {
  const dir = mkdtempSync(path.join(tmpdir(), 'dmthin-notes-'));
  try {
    const chart = path.join(dir, 'dmthin-csi');
    cpSync(CHART_DIR, chart, { recursive: true });
    const text = readFileSync(path.join(chart, 'templates', 'NOTES.txt'), 'utf8');
    writeFileSync(path.join(chart, 'templates', 'zz-notes.yaml'),
      `{{- define "notes-under-test" }}${text}{{- end }}\nkind: NotesUnderTest\ntext: {{ include "notes-under-test" . | toJson }}\n`);
    const docs = await renderChart({ chartDir: chart, ...(values ? { values } : {}) });
    return String(docs.find((d) => d.object.kind === 'NotesUnderTest')!.object.text);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('NOTES.txt: what to check after the install, and a warning for each deprecated key in use', async () => {
  const plain = await notes();
  assert.match(plain, /kubectl -n kube-system get pods -l app\.kubernetes\.io\/instance=dmthin-csi/);
  assert.match(plain, /exec ds\/dmthin-csi-node -c dmthin-csi -- dmthin-csi doctor/);
  assert.match(plain, /StorageClasses: dmthin\./);
  assert.doesNotMatch(plain, /WARNING|control-plane/);
  const old = await notes({ storageClass: { create: true, name: 'old' }, node: { tolerateAllTaints: true, affinity: null } });
  assert.match(old, /StorageClasses: old\./);
  assert.match(old, /WARNING: `storageClass` is deprecated/);
  assert.match(old, /WARNING: `node\.tolerateAllTaints` is deprecated/);
  assert.match(old, /may run on control-plane nodes/);
});

test('the image the chart pulls by default is the one scripts/build-image.sh tags by default', () => {
  const chart = load(readFileSync(path.join(CHART_DIR, 'Chart.yaml'), 'utf8')) as { appVersion: string };
  const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string };
  assert.equal(chart.appVersion, pkg.version, 'Chart.yaml appVersion is package.json\'s version');
  const image = chartValues().image as { repository: string; tag: string };
  assert.equal(image.tag, '', 'the tag follows appVersion');
  const script = readFileSync(path.join(ROOT, 'scripts', 'build-image.sh'), 'utf8');
  const line = /^tag="([^"$]+):\$\(sed -n 's\/\^  "version": "\\\(\.\*\\\)",\$\/\\1\/p' package\.json\)"$/m.exec(script);
  assert.ok(line, 'build-image.sh tags REPOSITORY:<package.json version> by default');
  assert.equal(line[1], image.repository);
});
