/** --dm-interface: ioctls in process by default, dmsetup on request, anything else refused. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { buildConfig, parseFlags } from '../../../src/cli/config.ts';
import { realDeviceMapper } from '../../../src/devmapper/choose.ts';
import { DmsetupDeviceMapper } from '../../../src/devmapper/dmsetup.ts';
import { IoctlDeviceMapper } from '../../../src/devmapper/ioctl/device-mapper.ts';

describe('--dm-interface', () => {
  it('defaults to ioctls in process', () => {
    const cfg = buildConfig(parseFlags([]), {});
    assert.equal(cfg.dmInterface, 'ioctl');
    assert.ok(realDeviceMapper(cfg.dmInterface) instanceof IoctlDeviceMapper);
  });
  it('keeps dmsetup on request, by flag or environment', () => {
    assert.ok(realDeviceMapper(buildConfig(parseFlags(['--dm-interface', 'dmsetup']), {}).dmInterface) instanceof DmsetupDeviceMapper);
    assert.equal(buildConfig(parseFlags([]), { DMTHIN_DM_INTERFACE: 'dmsetup' }).dmInterface, 'dmsetup');
  });
  it('refuses anything else', () => {
    assert.throws(() => buildConfig(parseFlags(['--dm-interface', 'libdm']), {}), /--dm-interface "libdm" is not ioctl or dmsetup/);
  });
});
