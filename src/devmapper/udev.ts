import { access } from 'node:fs/promises';

/** true/false forces the answer; 'auto' looks on every call, since udev may start or stop under a running driver. */
export type UdevSetting = boolean | 'auto';

export const UDEV_CONTROL = '/run/udev/control';

/**
 * Whether udev manages /dev/mapper nodes. 'auto': unless DM_DISABLE_UDEV is set (the variable
 * libdevmapper itself honours), when udev's control socket exists.
 */
export async function udevManagesNodes(setting: UdevSetting, controlPath = UDEV_CONTROL, env: NodeJS.ProcessEnv = process.env): Promise<boolean> {
  if (setting !== 'auto') return setting;
  if (env.DM_DISABLE_UDEV) return false;
  return access(controlPath).then(() => true, () => false);
}
