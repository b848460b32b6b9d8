import type { DeviceRecord, DeviceState, StateStore } from '../state/types.ts';
import { errorMessage } from '../errors.ts';

export interface TransitionSpec {
  trying: DeviceState;
  success: DeviceState;
  /** State recorded when the operation fails; default: the state before the attempt. */
  failure?: DeviceState;
  /** Extra fields written together with the success state. */
  onSuccess?: (r: DeviceRecord) => void;
}

/**
 * A state change as containerd's devmapper snapshotter makes it (PoolDevice.transition in
 * github.com/containerd/containerd/snapshots/devmapper): record the trying state before
 * touching the kernel, then the outcome. A crash in between leaves the trying state behind,
 * which is exactly what reconcile needs to see. Errors from the operation are re-thrown unchanged.
 */
export async function transition<T>(store: StateStore, id: string, spec: TransitionSpec, op: () => Promise<T>): Promise<T> {
  let before: DeviceState = 'Unknown';
  await store.updateDevice(id, (r) => {
    before = r.state;
    r.state = spec.trying;
    r.updatedAt = new Date().toISOString();
  });
  let result: T;
  try {
    result = await op();
  } catch (err) {
    await store.updateDevice(id, (r) => {
      r.state = spec.failure ?? before;
      r.error = `${spec.trying}: ${errorMessage(err)}`;
      r.updatedAt = new Date().toISOString();
    }).catch(() => undefined);
    throw err;
  }
  await store.updateDevice(id, (r) => {
    r.state = spec.success;
    delete r.error;
    delete r.faultyFrom;
    r.updatedAt = new Date().toISOString();
    spec.onSuccess?.(r);
  });
  return result;
}

/** States from which the device exists in the pool and may be used. */
export const USABLE: ReadonlySet<DeviceState> = new Set<DeviceState>(['Created', 'Activated', 'Resumed', 'Deactivated', 'Suspended']);
/** States a crash can leave behind mid-operation. */
export const TRANSITIONAL: ReadonlySet<DeviceState> = new Set<DeviceState>(['Unknown', 'Creating', 'Activating', 'Suspending', 'Resuming', 'Deactivating', 'Removing']);
