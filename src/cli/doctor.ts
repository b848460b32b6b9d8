import { existsSync, readFileSync, statSync } from 'node:fs';
import { parseTargets, parseThinPoolStatus } from '../devmapper/parse.ts';
import { CommandError } from '../system/exec.ts';
import { versionBelow } from '../system/version.ts';
import { E2FSPROGS_PREZEROED } from '../mount/system.ts';
import { dmMiscMinor, type Runner, systemRunner } from './status.ts';
import { realBackingFs, type BackingFs } from '../pool/backing.ts';
import { checkBacking } from './doctor-backing.ts';

export { dmMiscMinor };
import { type FlagDef, flagLines, Options } from './options.ts';

const DOCTOR_FLAGS: readonly FlagDef[] = [
  { name: 'pool-name', arg: 'NAME', help: ['also check this pool\'s health'], defaultText: 'no pool check' },
];

export const DOCTOR_USAGE = `Usage: dmthin-csi doctor [flags]
  Checks this node, read-only: device-mapper in the kernel, the tools the driver runs and their
  versions, and with --pool-name the pool's health. Says what to fix; exits 1 when a check fails.
${flagLines(DOCTOR_FLAGS)}`;

export type CheckLevel = 'ok' | 'warn' | 'fail';

export interface CheckResult {
  level: CheckLevel;
  name: string;
  detail: string;
  /** What to do about a warn or fail. */
  fix?: string;
}

export interface DoctorDeps {
  runner: Runner;
  exists: (path: string) => boolean;
  /** A file's text; undefined when it cannot be read. */
  readText: (path: string) => string | undefined;
  /** A device node's major and minor; undefined when it is not there or not a device. */
  deviceNumber: (path: string) => { major: number; minor: number } | undefined;
  /** Where tools are looked for when they must not be run ($PATH). */
  path?: string;
  /** The filesystem under a file pool; without it no backing check runs. */
  backing?: BackingFs;
}

/** The real host's files, read only. */
export const systemDoctorDeps: DoctorDeps = {
  runner: systemRunner,
  exists: existsSync,
  readText: (p) => {
    try {
      return readFileSync(p, 'utf8');
    } catch {
      return undefined;
    }
  },
  deviceNumber: (p) => {
    try {
      const st = statSync(p);
      if (!st.isCharacterDevice() && !st.isBlockDevice()) return undefined;
      // glibc's encoding of dev_t: major in bits 8-19 and 32+, minor in bits 0-7 and 20+.
      const rdev = BigInt(st.rdev);
      return { major: Number(((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn)), minor: Number((rdev & 0xffn) | ((rdev >> 12n) & ~0xffn)) };
    } catch {
      return undefined;
    }
  },
  path: process.env.PATH,
  backing: realBackingFs,
};

interface Tool {
  command: string; args: string[]; pkg: string; usedFor: string;
  /** A version below this works, with the cost `why` says: a warning, not a failure. */
  wants?: { version: string; why: string };
}

/** Every tool the driver runs, with the argument that makes it print its version. */
export const TOOLS: readonly Tool[] = [
  { command: 'dmsetup', args: ['version'], pkg: 'dmsetup', usedFor: 'all device-mapper operations' },
  {
    command: 'mkfs.ext4', args: ['-V'], pkg: 'e2fsprogs', usedFor: 'ext4 volumes',
    wants: { version: E2FSPROGS_PREZEROED, why: 'an older mke2fs cannot mark a new volume\'s inode tables zeroed (assume_storage_prezeroed), so after the first mount the kernel writes them out, provisioning ~1.6% of every ext4 volume in the pool' },
  },
  { command: 'resize2fs', args: [], pkg: 'e2fsprogs', usedFor: 'growing ext4 volumes' },
  { command: 'mkfs.xfs', args: ['-V'], pkg: 'xfsprogs', usedFor: 'xfs volumes' },
  { command: 'xfs_growfs', args: ['-V'], pkg: 'xfsprogs', usedFor: 'growing xfs volumes' },
  { command: 'blkid', args: ['-V'], pkg: 'util-linux', usedFor: 'recognising what a restored or cloned volume holds when it is not ext4 or xfs' },
  { command: 'losetup', args: ['--version'], pkg: 'mount', usedFor: 'file-backed pools' },
  { command: 'thin_check', args: ['-V'], pkg: 'thin-provisioning-tools', usedFor: 'checking pool metadata' },
  { command: 'thin_ls', args: ['-V'], pkg: 'thin-provisioning-tools', usedFor: 'finding devices deleted or added behind the driver\'s back' },
];

const firstLine = (s: string): string => s.split('\n').map((l) => l.trim()).find((l) => l !== '') ?? '';

/** The version in a tool's output: "mke2fs 1.47.0 (5-Feb-2023)" → "1.47.0". */
export function versionIn(output: string, command = ''): string | undefined {
  const lines = output.split('\n');
  const own = lines.find((l) => command !== '' && l.includes(command) && /\d+\.\d+/.test(l)) ?? lines.find((l) => /\d+\.\d+/.test(l));
  return own ? /(\d+\.\d+(?:\.\d+)?)/.exec(own)?.[1] : undefined;
}

/** dmsetup version prints the library and the kernel driver versions. */
function dmsetupVersion(out: string): string | undefined {
  const lib = /Library version:\s*(\S+)/.exec(out)?.[1];
  const drv = /Driver version:\s*(\S+)/.exec(out)?.[1];
  return lib ? `library ${lib}${drv ? `, kernel driver ${drv}` : ''}` : undefined;
}

export async function checkTool(runner: Runner, tool: Tool): Promise<CheckResult> {
  let output: string;
  try {
    const r = await runner(tool.command, tool.args);
    output = `${r.stdout}\n${r.stderr}`;
  } catch (err) {
    if (err instanceof CommandError && err.exitCode !== undefined) {
      output = `${err.stdout}\n${err.stderr}`; // some tools exit non-zero after printing their version
    } else {
      return {
        level: 'fail', name: tool.command, detail: `not found (needed for ${tool.usedFor})`,
        fix: `install the ${tool.pkg} package (apt-get install ${tool.pkg}); the container image has it`,
      };
    }
  }
  const version = (tool.command === 'dmsetup' ? dmsetupVersion(output) : undefined) ?? versionIn(output, tool.command);
  const detail = version ? `version ${version}` : `present (${firstLine(output) || 'no version printed'})`;
  if (tool.wants && version && versionBelow(version, tool.wants.version)) {
    return { level: 'warn', name: tool.command, detail: `${detail}: ${tool.wants.why}`, fix: `install ${tool.pkg} ${tool.wants.version} or later` };
  }
  return { level: 'ok', name: tool.command, detail };
}

const MISC_MAJOR = 10;
const DM_MISSING_FIX = 'load it on the host (modprobe dm-mod); in a container, mount the host /dev and run privileged';

/**
 * Whether dmsetup may run at all: libdevmapper makes /dev/mapper/control itself when it is
 * missing (with or without --noudevsync), so a doctor that ran it on a kernel without
 * device-mapper would leave a node behind and report it present the next time. It runs only
 * when the node is there with the number /proc/misc gives.
 */
export function checkControl(deps: DoctorDeps): { result: CheckResult; usable: boolean } {
  const name = '/dev/mapper/control';
  const misc = deps.readText('/proc/misc');
  const minor = misc === undefined ? undefined : dmMiscMinor(misc);
  if (misc !== undefined && minor === undefined) {
    return { usable: false, result: { level: 'fail', name, detail: 'device-mapper is not in this kernel (/proc/misc has no device-mapper)', fix: DM_MISSING_FIX } };
  }
  const dev = deps.deviceNumber(name);
  if (!dev) {
    const known = minor === undefined ? '' : ` although the kernel has device-mapper (misc ${MISC_MAJOR}:${minor})`;
    return { usable: false, result: { level: 'fail', name, detail: `missing${known}: device-mapper is not usable here`, fix: DM_MISSING_FIX } };
  }
  if (minor !== undefined && (dev.major !== MISC_MAJOR || dev.minor !== minor)) {
    return {
      usable: false,
      result: { level: 'fail', name, detail: `is ${dev.major}:${dev.minor}, the kernel's device-mapper is ${MISC_MAJOR}:${minor}`, fix: 'remove it and run `dmsetup mknodes` on the host' },
    };
  }
  return { usable: true, result: { level: 'ok', name, detail: `present (${dev.major}:${dev.minor})` } };
}

export async function checkKernel(deps: DoctorDeps): Promise<CheckResult[]> {
  const control = checkControl(deps);
  const out: CheckResult[] = [control.result];
  if (!control.usable) {
    out.push({ level: 'fail', name: 'dm-thin targets', detail: 'not checked: device-mapper is not usable (see above)' });
    return out;
  }
  try {
    const targets = parseTargets((await deps.runner('dmsetup', ['targets'])).stdout);
    const missing = ['thin-pool', 'thin'].filter((t) => !targets.includes(t));
    out.push(missing.length === 0
      ? { level: 'ok', name: 'dm-thin targets', detail: 'thin-pool and thin are loaded' }
      : {
        level: 'fail', name: 'dm-thin targets', detail: `${missing.join(' and ')} not loaded (have: ${targets.join(', ') || 'none'})`,
        fix: 'run `modprobe dm-thin-pool` on the host (kernel option CONFIG_DM_THIN_PROVISIONING)',
      });
  } catch (err) {
    out.push({
      level: 'fail', name: 'dm-thin targets', detail: `dmsetup targets failed: ${firstLine((err as Error).message)}`,
      fix: 'make dmsetup and /dev/mapper/control available (see above)',
    });
  }
  return out;
}

/** A tool found on PATH without running it. */
function onPath(deps: DoctorDeps, command: string): boolean {
  return (deps.path ?? '').split(':').some((dir) => dir !== '' && deps.exists(`${dir}/${command}`));
}

const HIGH_USE = 0.9;

export async function checkPool(runner: Runner, name: string): Promise<CheckResult[]> {
  const label = `pool ${name}`;
  let text: string;
  try {
    text = (await runner('dmsetup', ['status', name])).stdout;
  } catch (err) {
    return [{
      level: 'fail', name: label, detail: `cannot read: ${firstLine((err as Error).message)}`,
      fix: 'start the node plugin (it creates or adopts the pool), or check --pool-name',
    }];
  }
  let s;
  try {
    s = parseThinPoolStatus(text);
  } catch (err) {
    return [{ level: 'fail', name: label, detail: firstLine((err as Error).message), fix: `\`dmsetup table ${name}\` should show a thin-pool target` }];
  }
  const out: CheckResult[] = [];
  if (s.mode === 'fail') {
    out.push({ level: 'fail', name: label, detail: 'failed: the kernel allows no I/O', fix: `stop the driver, deactivate the pool and run thin_check (then thin_repair) on its metadata device` });
  } else if (s.mode === 'ro') {
    out.push({ level: 'fail', name: label, detail: 'read-only (metadata full or a metadata error)', fix: 'grow the metadata device, or stop the driver and run thin_check on the metadata' });
  } else if (s.mode === 'out_of_data_space') {
    out.push({ level: 'fail', name: label, detail: 'out of data space: writes queue or fail', fix: 'grow the pool data device or delete volumes and snapshots' });
  } else {
    out.push({ level: 'ok', name: label, detail: `mode rw, transaction ${s.transactionId}` });
  }
  if (s.needsCheck) out.push({ level: 'fail', name: `${label} metadata`, detail: 'needs_check is set', fix: 'stop the driver, deactivate the pool and run thin_check / thin_repair on the metadata device' });
  if (s.mode !== 'fail') {
    const use = (u: number, t: number) => (t > 0 ? u / t : 0);
    for (const [what, u, t] of [['data', s.usedDataBlocks, s.totalDataBlocks], ['metadata', s.usedMetadataBlocks, s.totalMetadataBlocks]] as const) {
      const f = use(u, t);
      const detail = `${(f * 100).toFixed(1)}% used (${u}/${t} blocks)`;
      out.push(f >= HIGH_USE
        ? { level: 'warn', name: `${label} ${what}`, detail, fix: `grow the pool's ${what} device before it fills` }
        : { level: 'ok', name: `${label} ${what}`, detail });
    }
  }
  return out;
}

export async function runChecks(deps: DoctorDeps, poolName?: string): Promise<CheckResult[]> {
  const results = await checkKernel(deps);
  const dmUsable = results[0]?.level === 'ok';
  for (const tool of TOOLS) {
    if (tool.command === 'dmsetup' && !dmUsable) {
      results.push(onPath(deps, tool.command)
        ? { level: 'ok', name: tool.command, detail: 'present (not run: without device-mapper it would create /dev/mapper/control)' }
        : { level: 'fail', name: tool.command, detail: `not found (needed for ${tool.usedFor})`, fix: `install the ${tool.pkg} package (apt-get install ${tool.pkg})` });
      continue;
    }
    results.push(await checkTool(deps.runner, tool));
  }
  if (poolName && !dmUsable) {
    results.push({ level: 'fail', name: `pool ${poolName}`, detail: 'not checked: device-mapper is not usable (see above)' });
  } else if (poolName) {
    results.push(...await checkPool(deps.runner, poolName));
    if (deps.backing) results.push(...await checkBacking(deps.runner, deps.backing, poolName));
  }
  return results;
}

const TAG: Record<CheckLevel, string> = { ok: '[ OK ]', warn: '[WARN]', fail: '[FAIL]' };

export function formatChecks(results: readonly CheckResult[]): string {
  const width = Math.max(...results.map((r) => r.name.length));
  const lines = results.flatMap((r) => [
    `${TAG[r.level]} ${r.name.padEnd(width)}  ${r.detail}`,
    ...(r.fix && r.level !== 'ok' ? [`       fix: ${r.fix}`] : []),
  ]);
  const failed = results.filter((r) => r.level === 'fail').length;
  const warned = results.filter((r) => r.level === 'warn').length;
  lines.push('', failed > 0 ? `${failed} check(s) failed${warned ? `, ${warned} warning(s)` : ''}.` : `All checks passed${warned ? ` (${warned} warning(s))` : ''}.`);
  return `${lines.join('\n')}\n`;
}

export async function runDoctor(argv: string[], deps: DoctorDeps = systemDoctorDeps): Promise<number> {
  const o = Options.parse(argv, DOCTOR_FLAGS, DOCTOR_USAGE, {});
  if (o.help) {
    process.stdout.write(`${DOCTOR_USAGE}\n`);
    return 0;
  }
  const results = await runChecks(deps, o.string('pool-name'));
  process.stdout.write(formatChecks(results));
  return results.some((r) => r.level === 'fail') ? 1 : 0;
}
