import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parseDeltaLine, parseDumpLine, ThinTools, type BlockRun, type DeltaRun } from '../../../src/devmapper/thin-tools.ts';
import { isDmError } from '../../../src/devmapper/types.ts';
import { background } from '../../../src/system/context.ts';
import { run } from '../../../src/system/exec.ts';
import { runLines } from '../../../src/system/exec-lines.ts';

/** A small deterministic generator, so a failing map can be reproduced from its seed. */
function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => { x ^= x << 13; x >>>= 0; x ^= x >> 17; x ^= x << 5; x >>>= 0; return x / 2 ** 32; };
}

type Map_ = Map<number, number>;

/** Two thin devices as a snapshot and its origin after random overwrites, discards and new writes. */
function randomPair(seed: number, size: number): [Map_, Map_] {
  const r = rng(seed);
  const base: Map_ = new Map();
  let phys = 0;
  for (let b = 0; b < size; b++) if (r() < 0.5) base.set(b, phys++);
  const target: Map_ = new Map(base);
  for (let b = 0; b < size; b++) {
    const x = r();
    if (x < 0.15) target.set(b, phys++);
    else if (x < 0.25) target.delete(b);
  }
  return [base, target];
}

function xml(devs: Map_[]): string {
  const lines = devs.map((m, i) => {
    const maps = [...m].sort((a, b) => a[0] - b[0]).map(([o, d]) => `    <single_mapping origin_block="${o}" data_block="${d}" time="0"/>`);
    return `  <device dev_id="${i + 1}" mapped_blocks="${m.size}" transaction="0" creation_time="0" snap_time="0">\n${maps.join('\n')}\n  </device>`;
  });
  return `<superblock uuid="" time="0" transaction="1" flags="0" version="2" data_block_size="128" nr_data_blocks="100000">\n${lines.join('\n')}\n</superblock>\n`;
}

/** Expands runs to a block → kind map, checking they ascend without overlap. */
function expand<T extends BlockRun>(runs: T[], kind: (r: T) => string): Map<number, string> {
  const out = new Map<number, string>();
  let end = -1;
  for (const r of runs) {
    assert.ok(r.begin >= end && r.length > 0, `run ${JSON.stringify(r)} after block ${end}`);
    for (let b = r.begin; b < r.begin + r.length; b++) out.set(b, kind(r));
    end = r.begin + r.length;
  }
  return out;
}

function expectedDelta(a: Map_, b: Map_): Map<number, string> {
  const out = new Map<number, string>();
  for (const k of [...new Set([...a.keys(), ...b.keys()])].sort((x, y) => x - y)) {
    const x = a.get(k);
    const y = b.get(k);
    out.set(k, x === undefined ? 'right_only' : y === undefined ? 'left_only' : x === y ? 'same' : 'different');
  }
  return out;
}

async function collect<L, T>(lines: AsyncIterable<L>, parse: (l: L) => T | undefined): Promise<T[]> {
  const out: T[] = [];
  for await (const l of lines) { const r = parse(l); if (r !== undefined) out.push(r); }
  return out;
}

describe('thin-provisioning-tools 0.9.0 output, on metadata made by thin_restore', () => {
  let dir: string;
  before(async () => { dir = await mkdtemp(join(tmpdir(), 'thin-tools-')); });
  after(() => rm(dir, { recursive: true, force: true }));

  const restore = async (devs: Map_[]) => {
    const meta = join(dir, `meta-${Math.random()}`);
    await writeFile(join(dir, 'in.xml'), xml(devs));
    await writeFile(meta, Buffer.alloc(0));
    await run(background, 'truncate', ['-s', '16M', meta]);
    await run(background, 'thin_restore', ['-i', join(dir, 'in.xml'), '-o', meta]);
    return meta;
  };

  // The live metadata, not -m: a metadata snapshot needs the kernel (the real-kernel suite reads one).
  for (const seed of [1, 2, 3, 4, 5]) {
    it(`thin_delta and thin_dump agree with the maps, block for block (seed ${seed})`, async () => {
      const [a, b] = randomPair(seed, 3000);
      const meta = await restore([a, b]);
      const delta = await collect(runLines(background, 'thin_delta', ['--snap1', '1', '--snap2', '2', meta]), parseDeltaLine);
      assert.deepEqual(expand(delta, (r: DeltaRun) => r.kind), expectedDelta(a, b));
      const dump = await collect(runLines(background, 'thin_dump', ['--dev-id', '2', meta]), (l) => { const r = parseDumpLine(l); return r === 'device' ? undefined : r; });
      assert.deepEqual([...expand(dump, () => 'mapped').keys()], [...b.keys()].sort((x, y) => x - y));
    });
  }

  it('an id the metadata lacks: thin_delta fails naming it; -m with no snapshot held fails as no_data', async () => {
    const meta = await restore([new Map([[0, 0]])]);
    const tools = new ThinTools();
    const src = { pool: 'p', metadataDev: meta };
    await assert.rejects(collect(tools.delta(background, src, 1, 9), (x) => x), (e) => isDmError(e, 'no_data'));
    await assert.rejects(collect(tools.mappings(background, src, 1), (x) => x), (e) => isDmError(e, 'no_data'));
    await assert.rejects(collect(runLines(background, 'thin_delta', ['--snap1', '1', '--snap2', '9', meta]), (x) => x), /Unable to find mapping tree/);
    const missing = new ThinTools({ dump: '/nonexistent/thin_dump', delta: '/nonexistent/thin_delta' });
    await assert.rejects(collect(missing.mappings(background, src, 1), (x) => x), (e) => isDmError(e, 'unsupported') && /install thin-provisioning-tools/.test(e.message));
  });

  it('parses both elements of a dump and refuses a delta line it does not know', () => {
    assert.deepEqual(parseDumpLine('    <range_mapping origin_begin="2" data_begin="20" length="2" time="1"/>'), { begin: 2, length: 2 });
    assert.deepEqual(parseDumpLine('    <single_mapping origin_block="5" data_block="21" time="1"/>'), { begin: 5, length: 1 });
    assert.equal(parseDumpLine('  <device dev_id="2" mapped_blocks="6" transaction="0" creation_time="1" snap_time="1">'), 'device');
    assert.deepEqual(parseDeltaLine('    <left_only begin="4" length="1"/>'), { kind: 'left_only', begin: 4, length: 1 });
    assert.equal(parseDeltaLine('  <diff left="1" right="2">'), undefined);
    assert.throws(() => parseDeltaLine('    <range begin="0" data_begin="0" length="2"/>'), /thin_delta output/);
  });

  it('a consumer that stops early ends the command', async () => {
    let n = 0;
    for await (const _ of runLines(background, 'yes', [])) if (++n === 1000) break;
    assert.equal(n, 1000); // and the loop ended: yes(1) would otherwise run forever
  });
});
