import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { CHART_DIR, ROOT } from './render.ts';

const DEPLOY_CRDS = path.join(ROOT, 'deploy/crds');
const CHART_CRDS = path.join(CHART_DIR, 'crds');
const EXPECTED = ['dmthin.csi.io_thingroupsnapshots.yaml', 'dmthin.csi.io_thinpools.yaml', 'dmthin.csi.io_thinsnapshots.yaml', 'dmthin.csi.io_thinvolumes.yaml'];

const yamlIn = (dir: string) => (existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith('.yaml')).sort() : []);

test('the chart carries identical copies of deploy/crds', () => {
  assert.deepEqual(yamlIn(CHART_CRDS), yamlIn(DEPLOY_CRDS), 'copy deploy/crds/*.yaml to charts/dmthin-csi/crds/');
  for (const f of yamlIn(DEPLOY_CRDS)) {
    assert.equal(readFileSync(path.join(CHART_CRDS, f), 'utf8'), readFileSync(path.join(DEPLOY_CRDS, f), 'utf8'), f);
  }
});

test('the four CRDs of the contract are there', { skip: yamlIn(DEPLOY_CRDS).length === 0 ? 'deploy/crds/ not written yet' : false }, () => {
  assert.deepEqual(yamlIn(DEPLOY_CRDS), EXPECTED);
});
