import assert from 'node:assert/strict';
import { it } from 'node:test';
import { ArmedFaults } from '../../doubles/armed.ts';

interface F { name: string; times?: number }
const named = (n: string) => (f: F) => f.name === n;

it('ArmedFaults: a fault serves `times` matching calls (default 1, Infinity for always), first armed first', () => {
  const a = new ArmedFaults<F>();
  const once = { name: 'x' };
  const twice = { name: 'x', times: 2 };
  const always = { name: 'y', times: Infinity };
  a.arm(once);
  a.arm(twice);
  a.arm(always);
  assert.equal(a.take(named('x')), once);
  assert.equal(a.take(named('x')), twice);
  assert.equal(a.take(named('x')), twice);
  assert.equal(a.take(named('x')), undefined);
  for (let i = 0; i < 5; i++) assert.equal(a.take(named('y')), always);
  assert.equal(a.take(named('z')), undefined, 'a call nothing matches takes nothing');
  a.clear();
  assert.equal(a.take(named('y')), undefined);
});
