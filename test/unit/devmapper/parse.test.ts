import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  DmParseError, parseAs, parseInfoRows, parseLiveTable, parseMultiDevice, parseTargets, parseThinPoolStatus,
  parseThinPoolTable, parseThinStatus, parseThinTable,
} from '../../../src/devmapper/parse.ts';
import { DmError } from '../../../src/devmapper/types.ts';
import { recorded } from './fixtures.ts';

// Lines quoted in /work/shared/reference/real-dm-thin-in-a-vm.md; whole recorded outputs
// from test/fixtures/dmsetup are parsed in the 'recorded output' suite below.
const REAL_POOL = '0 2097152 thin-pool 0 1655/16384 530/16384 - rw discard_passdown queue_if_no_space - 1024';
const REAL_THIN = '0 2097152 thin 67712 2097151';

function rejects(fn: () => unknown, pattern: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof DmParseError, `expected DmParseError, got ${String(err)}`);
    assert.match(err.message, pattern);
    return true;
  });
}

describe('parseThinPoolStatus', () => {
  it('parses the real status line', () => {
    assert.deepEqual(parseThinPoolStatus(REAL_POOL), {
      lengthSectors: 2097152, transactionId: 0, usedMetadataBlocks: 1655, totalMetadataBlocks: 16384,
      usedDataBlocks: 530, totalDataBlocks: 16384, mode: 'rw', discardPassdown: true,
      errorIfNoSpace: false, needsCheck: false, metadataLowWatermark: 1024,
    });
  });

  it('accepts the kernel trailing space and dmsetup newline', () => {
    assert.equal(parseThinPoolStatus(`${REAL_POOL} \n`).metadataLowWatermark, 1024);
  });

  it('reads the root of a held metadata snapshot (recorded), and none when there is none', () => {
    assert.equal(parseThinPoolStatus(recorded('status-pool-held-snap.txt')).heldMetadataRoot, 154);
    assert.equal(parseThinPoolStatus(recorded('status-pool.txt')).heldMetadataRoot, undefined);
  });

  it('reads out_of_data_space, ro, error_if_no_space, needs_check and a held root', () => {
    const s = parseThinPoolStatus('0 2097152 thin-pool 7 20/16384 16384/16384 42 out_of_data_space no_discard_passdown error_if_no_space needs_check 1024 ');
    assert.equal(s.mode, 'out_of_data_space');
    assert.equal(s.transactionId, 7);
    assert.equal(s.discardPassdown, false);
    assert.equal(s.errorIfNoSpace, true);
    assert.equal(s.needsCheck, true);
    assert.equal(parseThinPoolStatus(REAL_POOL.replace(' rw ', ' ro ')).mode, 'ro');
    assert.equal(parseThinPoolStatus(REAL_POOL.replace('discard_passdown', 'ignore_discard')).discardPassdown, false);
  });

  it("reports 'Fail' as mode fail with zeroed counters", () => {
    const s = parseThinPoolStatus('0 2097152 thin-pool Fail');
    assert.equal(s.mode, 'fail');
    assert.equal(s.lengthSectors, 2097152);
    assert.equal(s.totalDataBlocks, 0);
  });

  it('accepts older kernels that print fewer trailing fields', () => {
    const s = parseThinPoolStatus('0 2097152 thin-pool 3 10/100 5/50 - rw');
    assert.equal(s.transactionId, 3);
    assert.equal(s.metadataLowWatermark, undefined);
    assert.equal(s.needsCheck, false);
  });

  it('rejects garbage, naming the input, and never yields NaN', () => {
    rejects(() => parseThinPoolStatus(''), /empty output/);
    rejects(() => parseThinPoolStatus(REAL_THIN), /target is thin, not thin-pool/);
    rejects(() => parseThinPoolStatus('0 2097152 thin-pool x 1655/16384 530/16384 - rw'), /transaction id is "x"/);
    rejects(() => parseThinPoolStatus('0 2097152 thin-pool 0 1655-16384 530/16384 - rw'), /USED\/TOTAL/);
    rejects(() => parseThinPoolStatus('0 2097152 thin-pool 0 1655/16384 530/16384 - weird'), /mode "weird"/);
    rejects(() => parseThinPoolStatus(`${REAL_POOL} extra`), /trailing fields extra/);
    rejects(() => parseThinPoolStatus(`${REAL_POOL}\n${REAL_POOL}`), /2 segments/);
    rejects(() => parseThinPoolStatus('0 2097152 thin-pool Error'), /could not read/);
    rejects(() => parseThinPoolStatus('0 2097152 thin-pool 99999999999999999999 1/2 1/2 - rw'), /too large/);
    rejects(() => parseThinPoolStatus('garbage'), /"garbage"/);
  });
});

describe('parseThinStatus', () => {
  it('parses the real thin line', () => {
    assert.deepEqual(parseThinStatus(`${REAL_THIN}\n`), {
      lengthSectors: 2097152, mappedSectors: 67712, highestMappedSector: 2097151, fail: false,
    });
  });

  it("reads '-' (nothing mapped) and 'Fail'", () => {
    assert.deepEqual(parseThinStatus('0 2097152 thin 0 -'), {
      lengthSectors: 2097152, mappedSectors: 0, highestMappedSector: undefined, fail: false,
    });
    assert.deepEqual(parseThinStatus('0 4096 thin Fail'), {
      lengthSectors: 4096, mappedSectors: 0, highestMappedSector: undefined, fail: true,
    });
  });

  it('rejects garbage', () => {
    rejects(() => parseThinStatus('0 2097152 thin 12'), /1 fields, expected 2/);
    rejects(() => parseThinStatus('0 2097152 thin abc -'), /mapped sectors is "abc"/);
    rejects(() => parseThinStatus('0 2097152 thin 128 x'), /highest mapped sector is "x"/);
    rejects(() => parseThinStatus('8 2097152 thin 0 -'), /starts at sector 8/);
    rejects(() => parseThinStatus('0 2097152 linear 7:0 0'), /target is linear/);
  });
});

describe('parseThinPoolTable / parseThinTable', () => {
  it('parses a pool table with features and one without', () => {
    assert.deepEqual(parseThinPoolTable('0 2097152 thin-pool 7:1 7:0 128 32768 1 skip_block_zeroing '), {
      lengthSectors: 2097152, metadataDev: '7:1', dataDev: '7:0', dataBlockSectors: 128, lowWaterMark: 32768,
      features: ['skip_block_zeroing'],
    });
    assert.deepEqual(parseThinPoolTable('0 2097152 thin-pool 7:1 7:0 128 0 0 ').features, []);
  });

  it('rejects a feature count that does not match', () => {
    rejects(() => parseThinPoolTable('0 2097152 thin-pool 7:1 7:0 128 32768 2 skip_block_zeroing'), /feature count says 2 but 1/);
    rejects(() => parseThinPoolTable('0 2097152 thin-pool 7:1 7:0 big 32768 0'), /data block size is "big"/);
  });

  it('parses a thin table with and without an external origin', () => {
    assert.deepEqual(parseThinTable('0 2097152 thin 254:0 1'), {
      lengthSectors: 2097152, poolDev: '254:0', deviceId: 1, externalOrigin: undefined,
    });
    assert.equal(parseThinTable('0 2097152 thin 254:0 1 7:3').externalOrigin, '7:3');
    rejects(() => parseThinTable('0 2097152 thin 254:0'), /1 fields/);
    rejects(() => parseThinTable('0 2097152 thin 254:0 one'), /device id is "one"/);
  });
  it('reads the empty table of a device with no live table as not_found; a malformed one stays an error', () => {
    assert.throws(() => parseLiveTable('v', '\n', parseThinTable), (e: unknown) => e instanceof DmError && e.kind === 'not_found' && /v has no live table/.test(e.message));
    assert.throws(() => parseLiveTable('v', '0 8 linear 7:0 0', parseThinTable), (e: unknown) => e instanceof DmError && e.kind === 'invalid');
    assert.equal(parseLiveTable('v', '0 2097152 thin 254:0 1\n', parseThinTable).deviceId, 1);
  });
});

describe('parseInfoRows', () => {
  it('parses rows, attributes and an empty uuid', () => {
    const rows = parseInfoRows('pool|254|0|L--w|2|1|0|\nvol-1|254|1|LIsr|1|1|3|CSI-abc\n');
    assert.deepEqual(rows[0], {
      name: 'pool', major: 254, minor: 0, live: true, inactiveTable: false, suspended: false, readOnly: false,
      openCount: 2, segments: 1, events: 0, uuid: '',
    });
    assert.deepEqual(
      [rows[1]?.live, rows[1]?.inactiveTable, rows[1]?.suspended, rows[1]?.readOnly, rows[1]?.uuid],
      [true, true, true, true, 'CSI-abc'],
    );
    assert.equal(parseInfoRows('new|254|2|-I-w|0|0|0|')[0]?.live, false);
  });

  it("treats 'No devices found' as no rows and keeps a '|' inside a name", () => {
    assert.deepEqual(parseInfoRows('No devices found\n'), []);
    assert.equal(parseInfoRows('a|b|254|3|L--w|0|1|0|')[0]?.name, 'a|b');
  });

  it('rejects malformed rows', () => {
    rejects(() => parseInfoRows('pool|254|0|L--w|1'), /5 columns/);
    rejects(() => parseInfoRows('pool|254|0|XX|1|1|0|'), /attr "XX"/);
    rejects(() => parseInfoRows('pool|254|zero|L--w|1|1|0|'), /minor is "zero"/);
  });
});

describe('parseMultiDevice / parseTargets / parseAs', () => {
  it('splits "NAME: line" output and keeps the first segment of a name', () => {
    const m = parseMultiDevice(`v1: ${REAL_THIN}\nv2: 0 4096 thin 0 -\nv1: 2097152 4096 thin 0 -\n`);
    assert.deepEqual([...m], [['v1', REAL_THIN], ['v2', '0 4096 thin 0 -']]);
    assert.equal(parseMultiDevice('No devices found').size, 0);
    assert.equal(parseMultiDevice('').size, 0);
    rejects(() => parseMultiDevice('v1 0 4096 thin 0 -'), /NAME: START LENGTH TARGET/);
  });

  it('reads target names', () => {
    assert.deepEqual(parseTargets('thin-pool        v1.23.0\nthin             v1.23.0\nerror            v1.6.0\n'), ['thin-pool', 'thin', 'error']);
    rejects(() => parseTargets('thin-pool'), /NAME vX.Y.Z/);
  });

  it("maps a wrong target to 'invalid' and garbage to 'unknown'", () => {
    const kind = (text: string): string | undefined => {
      try { parseAs('dev', text, parseThinPoolStatus); } catch (err) { return err instanceof DmError ? err.kind : 'other'; }
      return undefined;
    };
    assert.equal(kind(REAL_THIN), 'invalid');
    assert.equal(kind('nonsense'), 'unknown');
    assert.equal(kind(REAL_POOL), undefined);
  });
});

describe('recorded output of a real 6.1 kernel', () => {
  it('pool status: fresh, in use, with a snapshot, after set_transaction_id and deletes', () => {
    const fresh = parseThinPoolStatus(recorded('status-pool-fresh.txt'));
    assert.deepEqual(fresh, {
      lengthSectors: 2097152, transactionId: 0, usedMetadataBlocks: 1649, totalMetadataBlocks: 16384,
      usedDataBlocks: 0, totalDataBlocks: 16384, mode: 'rw', discardPassdown: true,
      errorIfNoSpace: false, needsCheck: false, metadataLowWatermark: 1024,
    });
    assert.equal(parseThinPoolStatus(recorded('status-pool.txt')).usedDataBlocks, 146);
    assert.equal(parseThinPoolStatus(recorded('status-pool-with-snap.txt')).usedDataBlocks, 147);
    assert.equal(parseThinPoolStatus(recorded('status-pool-txid1.txt')).transactionId, 1);
    const after = parseThinPoolStatus(recorded('status-pool-after-deletes.txt'));
    assert.deepEqual([after.transactionId, after.usedDataBlocks], [1, 0]);
  });

  it('a pool that ran out of data space, and after a delete freed it', () => {
    const empty = parseThinPoolStatus(recorded('status-full-pool-empty.txt'));
    assert.deepEqual([empty.totalDataBlocks, empty.totalMetadataBlocks, empty.errorIfNoSpace, empty.metadataLowWatermark], [256, 2048, true, 512]);
    const full = parseThinPoolStatus(recorded('status-full-pool.txt'));
    assert.deepEqual([full.mode, full.usedDataBlocks, full.totalDataBlocks], ['out_of_data_space', 256, 256]);
    assert.equal(parseThinPoolStatus(recorded('status-full-pool-after-delete.txt')).mode, 'rw');
    assert.deepEqual(parseThinStatus(recorded('status-full-thin.txt')), {
      lengthSectors: 131072, mappedSectors: 32768, highestMappedSector: 32767, fail: false,
    });
  });

  it('thin and snapshot status', () => {
    assert.deepEqual(parseThinStatus(recorded('status-thin.txt')), {
      lengthSectors: 2097152, mappedSectors: 18688, highestMappedSector: 2097151, fail: false,
    });
    assert.equal(parseThinStatus(recorded('status-snap.txt')).mappedSectors, 18688);
    assert.equal(parseThinStatus(recorded('status-thin-after-writes.txt')).mappedSectors, 26880);
  });

  it('tables print devices as MAJOR:MINOR', () => {
    assert.deepEqual(parseThinPoolTable(recorded('table-pool.txt')), {
      lengthSectors: 2097152, metadataDev: '7:0', dataDev: '7:1', dataBlockSectors: 128, lowWaterMark: 32768,
      features: ['skip_block_zeroing'],
    });
    assert.deepEqual(parseThinPoolTable(recorded('table-full-pool.txt')).features, ['error_if_no_space']);
    assert.deepEqual(parseThinTable(recorded('table-thin.txt')), {
      lengthSectors: 2097152, poolDev: '254:0', deviceId: 0, externalOrigin: undefined,
    });
    assert.equal(parseThinTable(recorded('table-snap.txt')).deviceId, 1);
  });

  it('info -c rows: one device, several, suspended, and none', () => {
    assert.deepEqual(parseInfoRows(recorded('info-c-thin.txt')), [{
      name: 'smoke-thin', major: 254, minor: 1, live: true, inactiveTable: false, suspended: false,
      readOnly: false, openCount: 1, segments: 1, events: 0, uuid: 'SMOKE-THIN-0000',
    }]);
    const pool = parseInfoRows(recorded('info-c-pool.txt'));
    assert.deepEqual([pool[0]?.name, pool[0]?.uuid, pool[0]?.openCount, pool[0]?.events], ['smoke-pool', '', 1, 1]);
    assert.deepEqual(parseInfoRows(recorded('info-c-all.txt')).map((r) => r.name), ['smoke-pool', 'smoke-thin']);
    assert.deepEqual(parseInfoRows(recorded('info-c-pool-thin.txt')).map((r) => r.minor), [0, 1]);
    assert.equal(parseInfoRows(recorded('info-c-thin-suspended.txt'))[0]?.suspended, true);
    assert.deepEqual(parseInfoRows(recorded('ok-info-c-none.stdout.txt')), []);
  });

  it('whole-host listings', () => {
    const status = parseMultiDevice(recorded('status-all.txt'));
    assert.deepEqual([...status.keys()], ['smoke-pool', 'smoke-thin']);
    assert.equal(parseThinPoolStatus(status.get('smoke-pool') ?? '').usedDataBlocks, 146);
    assert.equal(parseThinStatus(status.get('smoke-thin') ?? '').mappedSectors, 18688);
    const tables = parseMultiDevice(recorded('table-all.txt'));
    assert.equal(parseThinTable(tables.get('smoke-thin') ?? '').poolDev, '254:0');
    assert.equal(parseThinPoolTable(tables.get('smoke-pool') ?? '').dataDev, '7:1');
    assert.equal(parseMultiDevice(recorded('ok-status-none.stdout.txt')).size, 0);
  });

  it('targets from dmsetup targets', () => {
    const lines = recorded('versions.txt').split('\n').filter((l) => /^\S+\s+v\d/.test(l)).join('\n');
    assert.deepEqual(parseTargets(lines).slice(0, 2), ['thin-pool', 'thin']);
  });

  it('the human-readable default info -c output is rejected, not misread', () => {
    rejects(() => parseInfoRows(recorded('info-c-default.txt')), /columns/);
  });
});
