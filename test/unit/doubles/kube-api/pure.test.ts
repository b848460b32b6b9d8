// Pure helpers of the kube test double: selectors and patches.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ApiError, jsonPatch, matchLabels, mergePatch, parseLabelSelector } from '../../../doubles/kube-api/index.ts';

describe('kube double: selectors and patches', () => {
  it('parses and matches label selectors', () => {
    const m = (sel: string, labels: Record<string, string>): boolean => matchLabels(parseLabelSelector(sel), labels);
    assert.ok(m('a=1,b in (x, y),!c,d notin (z)', { a: '1', b: 'y' }));
    assert.ok(!m('a=1,b in (x, y)', { a: '1', b: 'q' }));
    assert.ok(m('example.com/role', { 'example.com/role': '' }));
    assert.ok(m('n>3,n<10', { n: '5' }));
    assert.ok(!m('n>3', { n: 'x' }));
    assert.ok(m('', {}));
    for (const bad of ['a in ()', 'a=b=c', '=x', 'a in (b', '!']) {
      assert.throws(() => parseLabelSelector(bad), (e: unknown) => e instanceof ApiError && e.code === 400, bad);
    }
  });

  it('applies RFC 7386 merge patches', () => {
    assert.deepEqual(mergePatch({ a: { b: 1, c: 2 }, l: [1] }, { a: { b: null, d: 3 }, l: [2] }), { a: { c: 2, d: 3 }, l: [2] });
  });

  it('applies RFC 6902 JSON patches', () => {
    const doc = { a: [1, 2], m: { 'x/y': 1, 't~': 2 } };
    const out = jsonPatch(doc, [
      { op: 'add', path: '/a/-', value: 3 },
      { op: 'add', path: '/a/0', value: 0 },
      { op: 'remove', path: '/m/x~1y' },
      { op: 'replace', path: '/m/t~0', value: 5 },
      { op: 'copy', from: '/a', path: '/b' },
      { op: 'move', from: '/m', path: '/n' },
      { op: 'test', path: '/b/3', value: 3 },
    ]);
    assert.deepEqual(out, { a: [0, 1, 2, 3], b: [0, 1, 2, 3], n: { 't~': 5 } });
    assert.deepEqual(doc, { a: [1, 2], m: { 'x/y': 1, 't~': 2 } }, 'input untouched');
    const code = (f: () => unknown): number | undefined => {
      try {
        f();
      } catch (e) {
        return e instanceof ApiError ? e.code : -1;
      }
      return undefined;
    };
    assert.equal(code(() => jsonPatch(doc, { op: 'add' })), 400);
    assert.equal(code(() => jsonPatch(doc, [{ op: 'remove', path: '/nope' }])), 422);
    assert.equal(code(() => jsonPatch(doc, [{ op: 'replace', path: '/a/5', value: 1 }])), 422);
    assert.equal(code(() => jsonPatch(doc, [{ op: 'add', path: '/x/y', value: 1 }])), 422);
    assert.equal(code(() => jsonPatch(doc, [{ op: 'test', path: '/a/0', value: 9 }])), 422);
  });
});
