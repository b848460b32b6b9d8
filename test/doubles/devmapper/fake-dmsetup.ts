import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * A stand-in dmsetup executable for DmsetupDeviceMapper tests: it records each call's argv
 * and the environment variables that matter, then answers from files the test wrote.
 * Call N uses resp.N.* when present, else the default resp.*.
 */
const SCRIPT = `#!/bin/bash
dir="$(dirname "$0")"
n=$(( $(cat "$dir/count" 2>/dev/null || echo 0) + 1 ))
echo "$n" > "$dir/count"
: > "$dir/argv.$n"
for a in "$@"; do printf '%s\\0' "$a" >> "$dir/argv.$n"; done
printf 'LC_ALL=%s\\0DM_DISABLE_UDEV=%s\\0' "\${LC_ALL-<unset>}" "\${DM_DISABLE_UDEV-<unset>}" > "$dir/env.$n"
r="$dir/resp"
if [ -e "$dir/resp.$n.code" ]; then r="$dir/resp.$n"; fi
if [ -e "$r.sleep" ]; then exec sleep "$(cat "$r.sleep")"; fi
if [ -e "$r.out" ]; then cat "$r.out"; fi
if [ -e "$r.err" ]; then cat "$r.err" >&2; fi
exit "$(cat "$r.code" 2>/dev/null || echo 0)"
`;

export interface Response { stdout?: string; stderr?: string; code?: number; sleepSeconds?: number }
export interface Call { argv: string[]; env: Record<string, string> }

export class FakeDmsetup {
  readonly dir: string;
  readonly binary: string;

  constructor() {
    this.dir = mkdtempSync(join(tmpdir(), 'fake-dmsetup-'));
    this.binary = join(this.dir, 'dmsetup');
    writeFileSync(this.binary, SCRIPT);
    chmodSync(this.binary, 0o755);
    this.respond({});
  }

  /** Sets the default answer, or the answer to call number `call` (1-based). */
  respond(r: Response, call?: number): void {
    const base = join(this.dir, call === undefined ? 'resp' : `resp.${call}`);
    for (const ext of ['out', 'err', 'sleep']) rmSync(`${base}.${ext}`, { force: true });
    if (r.stdout !== undefined) writeFileSync(`${base}.out`, r.stdout);
    if (r.stderr !== undefined) writeFileSync(`${base}.err`, r.stderr);
    if (r.sleepSeconds !== undefined) writeFileSync(`${base}.sleep`, String(r.sleepSeconds));
    writeFileSync(`${base}.code`, String(r.code ?? 0));
  }

  calls(): Call[] {
    const countFile = join(this.dir, 'count');
    const n = existsSync(countFile) ? Number(readFileSync(countFile, 'utf8')) : 0;
    const out: Call[] = [];
    for (let i = 1; i <= n; i++) {
      const argv = readFileSync(join(this.dir, `argv.${i}`), 'utf8').split('\0').slice(0, -1);
      const env = Object.fromEntries(readFileSync(join(this.dir, `env.${i}`), 'utf8').split('\0').slice(0, -1)
        .map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]));
      out.push({ argv, env });
    }
    return out;
  }

  lastArgv(): string[] {
    const all = this.calls();
    const last = all[all.length - 1];
    if (!last) throw new Error('dmsetup was never called');
    return last.argv;
  }

  cleanup(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}
