/** --mount-interface: mount(2) in process by default, the mount/umount commands on request, anything else refused. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { buildConfig, parseFlags, USAGE } from '../../../src/cli/config.ts';
import { realMounter } from '../../../src/mount/choose.ts';
import { KernelMounter } from '../../../src/mount/kernel.ts';
import { SystemMounter } from '../../../src/mount/system.ts';

describe('--mount-interface', () => {
  it('defaults to syscalls in process', () => {
    const cfg = buildConfig(parseFlags([]), {});
    assert.equal(cfg.mountInterface, 'syscall');
    assert.ok(realMounter(cfg.mountInterface) instanceof KernelMounter);
  });
  it('keeps the commands on request, by flag or environment', () => {
    const byFlag = realMounter(buildConfig(parseFlags(['--mount-interface', 'commands']), {}).mountInterface);
    assert.ok(byFlag instanceof SystemMounter && !(byFlag instanceof KernelMounter));
    assert.equal(buildConfig(parseFlags([]), { DMTHIN_MOUNT_INTERFACE: 'commands' }).mountInterface, 'commands');
    assert.equal(buildConfig(parseFlags(['--mount-interface', 'syscall']), { DMTHIN_MOUNT_INTERFACE: 'commands' }).mountInterface, 'syscall', 'the flag wins');
  });
  it('refuses anything else, and the help names it', () => {
    assert.throws(() => buildConfig(parseFlags(['--mount-interface', 'fsmount']), {}), /--mount-interface "fsmount" is not syscall or commands/);
    assert.match(USAGE, /--mount-interface syscall\|commands/);
  });
});
