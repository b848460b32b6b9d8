// The CRDs' x-kubernetes-validations rules, evaluated with a CEL implementation on the updates
// they must refuse and the ones the driver itself makes (which they must let through). The API
// server test double does not evaluate CEL, so this is where the rules are proven.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { load } from 'js-yaml';
import { evaluate } from '@marcbachmann/cel-js';
import { ROOT } from './render.ts';

type Rule = { rule: string; message: string };
type Spec = Record<string, unknown>;

function specRules(file: string): Rule[] {
  const crd = load(readFileSync(path.join(ROOT, 'deploy/crds', file), 'utf8')) as {
    spec: { versions: Array<{ schema: { openAPIV3Schema: { properties: { spec: { 'x-kubernetes-validations'?: Rule[] } } } } }> };
  };
  return crd.spec.versions[0]!.schema.openAPIV3Schema.properties.spec['x-kubernetes-validations'] ?? [];
}

/** The messages of the rules an update from `old` to `next` breaks (Kubernetes checks transition rules only on update). */
function refusals(rules: Rule[], old: Spec, next: Spec): string[] {
  return rules.filter((r) => evaluate(r.rule, { self: next, oldSelf: old }) !== true).map((r) => r.message);
}

describe('CRD validation rules (CEL)', () => {
  const vol = specRules('dmthin.csi.io_thinvolumes.yaml');
  const base: Spec = { nodeName: 'n1', sizeBytes: 1073741824, accessType: 'mount', fsType: 'ext4', csiName: 'pvc-1' };
  const restored: Spec = { ...base, source: { kind: 'snapshot', name: 'snap-1' } };

  it('ThinVolume: lets through what the driver writes (the same spec, a larger size)', () => {
    assert.ok(vol.length >= 6);
    assert.deepEqual(refusals(vol, base, base), []);
    assert.deepEqual(refusals(vol, base, { ...base, sizeBytes: 2147483648 }), []);
    assert.deepEqual(refusals(vol, restored, { ...restored, sizeBytes: 2147483648 }), []);
    assert.deepEqual(refusals(vol, { ...base, fsType: undefined }, { ...base, fsType: undefined }), []);
    const sized = { ...base, size: '1Gi', claim: { pvName: 'pvc-1', pvcName: 'data', pvcNamespace: 'shop' } };
    assert.deepEqual(refusals(vol, sized, { ...sized, sizeBytes: 2147483648, size: '2Gi' }), [], 'an expansion rewrites the quantity with the size');
    assert.deepEqual(refusals(vol, base, { ...base, sizeBytes: 2147483648, size: '2Gi' }), [], 'a previous release\'s volume, expanded by this one, gains its quantity');
  });

  it('ThinVolume: the claim a volume was made for is immutable, and absent on a previous release\'s volumes', () => {
    const claim = { pvName: 'pvc-1', pvcName: 'data', pvcNamespace: 'shop' };
    const made = { ...base, claim };
    assert.deepEqual(refusals(vol, made, { ...made, claim: { ...claim, pvcName: 'other' } }), ['spec.claim is immutable']);
    assert.deepEqual(refusals(vol, made, base), ['spec.claim is immutable']);
    assert.deepEqual(refusals(vol, base, made), ['spec.claim is immutable']);
  });

  it('ThinVolume: refuses a move to another node, a shrink, and any change of type, name, filesystem or source', () => {
    assert.deepEqual(refusals(vol, base, { ...base, nodeName: 'n2' }), ["spec.nodeName is immutable: the device lives in that node's pool"]);
    assert.deepEqual(refusals(vol, base, { ...base, sizeBytes: 1 }), ['spec.sizeBytes can only grow']);
    assert.equal(refusals(vol, base, { ...base, accessType: 'block' }).length, 1);
    assert.equal(refusals(vol, base, { ...base, csiName: 'pvc-2' }).length, 1);
    assert.deepEqual(refusals(vol, base, { ...base, fsType: 'xfs' }), ['spec.fsType is immutable']);
    const { fsType: _f, ...noFs } = base;
    assert.deepEqual(refusals(vol, base, noFs), ['spec.fsType is immutable']);
    assert.deepEqual(refusals(vol, base, restored), ['spec.source is immutable']);
    assert.deepEqual(refusals(vol, restored, base), ['spec.source is immutable']);
    assert.deepEqual(refusals(vol, restored, { ...restored, source: { kind: 'snapshot', name: 'snap-2' } }), ['spec.source is immutable']);
  });

  it('ThinSnapshot: the whole spec is immutable', () => {
    const snap = specRules('dmthin.csi.io_thinsnapshots.yaml');
    const s: Spec = { nodeName: 'n1', sourceVolume: 'vol-1', csiName: 'snap-1' };
    assert.deepEqual(refusals(snap, s, { ...s }), []);
    for (const change of [{ nodeName: 'n2' }, { sourceVolume: 'vol-2' }, { csiName: 'x' }]) {
      assert.equal(refusals(snap, s, { ...s, ...change }).length, 1, JSON.stringify(change));
    }
  });

  it('ThinPool: the node is immutable, the rest (how the pool is made) may be edited', () => {
    const pool = specRules('dmthin.csi.io_thinpools.yaml');
    const p: Spec = { nodeName: 'n1', poolName: 'dmthin', source: 'loop' };
    assert.deepEqual(refusals(pool, p, { ...p, source: 'existing' }), []);
    assert.deepEqual(refusals(pool, p, { ...p, nodeName: 'n2' }), ['spec.nodeName is immutable']);
  });
});
