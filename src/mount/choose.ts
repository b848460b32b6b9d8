import type { MountInterface } from '../cli/config.ts';
import { KernelMounter } from './kernel.ts';
import { SystemMounter } from './system.ts';
import type { Mounter } from './types.ts';

/**
 * The real Mounter the driver runs on: mount(2)/umount2(2) in process by default; the `mount`
 * and `umount` commands, one run per call, where the FFI cannot load (a platform koffi has no
 * binary for) or to compare.
 */
export function realMounter(kind: MountInterface = 'syscall'): Mounter {
  return kind === 'commands' ? new SystemMounter() : new KernelMounter();
}
