// src/status.ts: the one mapping from every error type the layers throw to a gRPC code.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
// The package's index, as the code that throws it imports it: the class must be the one status.ts knows.
import { ApiException } from '@kubernetes/client-node';
import { DmError, type DmErrorKind } from '../../src/devmapper/types.ts';
import { Code, CsiError } from '../../src/errors.ts';
import { MountError } from '../../src/mount/types.ts';
import { StoreError } from '../../src/state/types.ts';
import { apiStatus, codeFromName, codeName, failureOf, toStatus } from '../../src/status.ts';
import { CommandError } from '../../src/system/exec.ts';
import { SysError } from '../../src/system/ffi.ts';

function commandError(o: { errno?: string; timedOut?: boolean; exitCode?: number }): CommandError {
  return new CommandError({
    command: 'mount', args: ['/dev/x', '/mnt'], exitCode: o.exitCode ?? 32, stderr: '', stdout: '',
    errno: o.errno, timedOut: o.timedOut ?? false, message: 'mount /dev/x /mnt: failed',
  });
}

function expectCode(err: unknown, code: Code): CsiError {
  const e = toStatus(err, 'doing it');
  assert.equal(Code[e.code], Code[code], `${String(err)}`);
  assert.equal(e.cause, err);
  return e;
}

describe('toStatus', () => {
  it('passes a CsiError through as it is, with or without a what', () => {
    const e = new CsiError(Code.OUT_OF_RANGE, 'too big');
    assert.equal(toStatus(e, 'doing it'), e);
    assert.equal(toStatus(e), e);
    assert.equal(apiStatus(e, 'doing it'), e);
  });

  const dm: Array<[DmErrorKind, Code]> = [
    ['no_space', Code.RESOURCE_EXHAUSTED], ['busy', Code.FAILED_PRECONDITION], ['timeout', Code.DEADLINE_EXCEEDED],
    ['unsupported', Code.FAILED_PRECONDITION], ['not_found', Code.INTERNAL], ['exists', Code.INTERNAL],
    ['no_data', Code.INTERNAL], ['invalid', Code.INTERNAL], ['unknown', Code.INTERNAL],
  ];
  for (const [kind, code] of dm) {
    it(`DmError ${kind} → ${Code[code]}`, () => {
      const e = expectCode(new DmError(kind, 'dm said no'), code);
      assert.equal(e.message, kind === 'busy' ? 'doing it: dm said no (device is in use)' : 'doing it: dm said no');
    });
  }

  const store: Array<[StoreError['kind'], Code]> = [
    ['not_found', Code.NOT_FOUND], ['conflict', Code.ABORTED], ['exists', Code.INTERNAL], ['io', Code.INTERNAL],
  ];
  for (const [kind, code] of store) {
    it(`StoreError ${kind} → ${Code[code]}`, () => {
      assert.equal(expectCode(new StoreError(kind, 'store said no'), code).message, 'doing it: store said no');
    });
  }

  // Shared by MountError, CommandError and SysError. ENOENT above all is not NOT_FOUND: in CSI
  // that says the volume does not exist, and a missing mount point or tool says nothing of it.
  const errnos: Array<[string | undefined, Code]> = [
    ['ETIMEDOUT', Code.DEADLINE_EXCEEDED], ['ECANCELED', Code.DEADLINE_EXCEEDED], ['EBUSY', Code.FAILED_PRECONDITION],
    ['ENOSPC', Code.RESOURCE_EXHAUSTED], ['ENOENT', Code.INTERNAL], ['EINVAL', Code.INTERNAL], ['EIO', Code.INTERNAL],
    ['EROFS', Code.INTERNAL], ['EACCES', Code.INTERNAL], ['ENOTDIR', Code.INTERNAL], [undefined, Code.INTERNAL],
  ];
  for (const [errno, code] of errnos) {
    it(`errno ${errno ?? '(none)'} → ${Code[code]} for a MountError, a CommandError and a SysError`, () => {
      assert.equal(expectCode(new MountError('mount /dev/x /mnt: failed', { errno }), code).message, 'doing it: mount /dev/x /mnt: failed');
      expectCode(commandError({ errno }), code);
      if (errno !== undefined) assert.equal(expectCode(new SysError('mount', errno, 1), code).message, `doing it: mount: ${errno}`);
    });
  }

  it('a command killed at its deadline is DEADLINE_EXCEEDED whatever its stderr named, also inside a MountError', () => {
    const killed = commandError({ errno: 'EBUSY', timedOut: true, exitCode: undefined });
    expectCode(killed, Code.DEADLINE_EXCEEDED);
    expectCode(new MountError('mkfs: timed out', { errno: 'EBUSY', cause: killed }), Code.DEADLINE_EXCEEDED);
    expectCode(new MountError('mkfs: failed', { cause: commandError({}) }), Code.INTERNAL);
  });

  for (const http of [400, 403, 404, 409, 422, 429, 500, 503]) {
    it(`ApiException HTTP ${http} → UNAVAILABLE, with the Status message`, () => {
      const body = JSON.stringify({ kind: 'Status', message: 'thinvolumes "v" is refused' });
      assert.equal(expectCode(new ApiException(http, 'x', body, {}), Code.UNAVAILABLE).message, `doing it: ${http}: thinvolumes "v" is refused`);
      assert.equal(expectCode(new ApiException(http, 'x', '<html>', {}), Code.UNAVAILABLE).message, `doing it: HTTP ${http}`);
    });
  }

  it('anything else is INTERNAL with its own message, a Node errno included', () => {
    expectCode(new Error('boom'), Code.INTERNAL);
    const fsErr = Object.assign(new Error('EBUSY: resource busy'), { code: 'EBUSY' });
    assert.equal(expectCode(fsErr, Code.INTERNAL).message, 'doing it: EBUSY: resource busy');
    assert.equal(expectCode('a string', Code.INTERNAL).message, 'doing it: a string');
  });

  it('without a what, the message is the error\'s own (as the RPC wrapper answers)', () => {
    assert.equal(toStatus(new Error('boom')).message, 'boom');
    assert.equal(toStatus(new DmError('no_space', 'full')).code, Code.RESOURCE_EXHAUSTED);
    assert.equal(toStatus(new ApiException(500, 'x', '{"message":"etcd down"}', {})).message, '500: etcd down');
  });
});

describe('apiStatus', () => {
  it('a Kubernetes API call that failed is UNAVAILABLE, an HTTP error or no answer at all', () => {
    const refused = Object.assign(new Error('connect ECONNREFUSED 10.0.0.1:443'), { code: 'ECONNREFUSED' });
    const e = apiStatus(refused, 'reading thinpools/n1');
    assert.equal(e.code, Code.UNAVAILABLE);
    assert.equal(e.message, 'reading thinpools/n1: connect ECONNREFUSED 10.0.0.1:443');
    const h = apiStatus(new ApiException(403, 'x', '{"message":"forbidden"}', {}), 'listing thinvolumes');
    assert.equal(h.code, Code.UNAVAILABLE);
    assert.equal(h.message, 'listing thinvolumes: 403: forbidden');
  });
});

describe('code names (a CR status carries the name)', () => {
  const all = Object.entries(Code).filter((e): e is [string, number] => typeof e[1] === 'number');
  it('every code round-trips through its name', () => {
    assert.equal(all.length, 17);
    for (const [name, code] of all) {
      assert.equal(codeName(code), name);
      assert.equal(codeFromName(codeName(code)), code);
    }
  });

  it('an unknown code or name is INTERNAL, never another code', () => {
    assert.equal(codeName(99), 'INTERNAL');
    for (const name of [undefined, '', 'BOGUS', 'internal', 'toString', '__proto__', '13']) assert.equal(codeFromName(name), Code.INTERNAL, String(name));
  });

  it('failureOf writes the code the RPC would answer, and the message', () => {
    assert.deepEqual(failureOf(new CsiError(Code.ALREADY_EXISTS, 'taken')), { code: 'ALREADY_EXISTS', message: 'taken' });
    assert.deepEqual(failureOf(new DmError('busy', 'in use')), { code: 'FAILED_PRECONDITION', message: 'in use (device is in use)' });
    assert.deepEqual(failureOf(new StoreError('conflict', 'raced')), { code: 'ABORTED', message: 'raced' });
    assert.deepEqual(failureOf(new Error('boom')), { code: 'INTERNAL', message: 'boom' });
  });
});
