import type { DmInterface } from '../cli/config.ts';
import { DmsetupDeviceMapper } from './dmsetup.ts';
import { IoctlDeviceMapper } from './ioctl/device-mapper.ts';
import type { DeviceMapper } from './types.ts';

/**
 * The real DeviceMapper the driver runs on: ioctls in process by default; dmsetup, one run
 * per step, where the FFI cannot load (a platform koffi has no binary for) or to compare.
 */
export function realDeviceMapper(kind: DmInterface = 'ioctl'): DeviceMapper {
  return kind === 'dmsetup' ? new DmsetupDeviceMapper({ udev: 'auto' }) : new IoctlDeviceMapper({ udev: 'auto' });
}
