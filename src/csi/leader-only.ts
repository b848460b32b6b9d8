import type { ControllerRpcs, GroupControllerRpcs, RpcName } from './rpcs.ts';

/**
 * A controller service answering only while this replica leads (kube/lease.ts LeaderElector's
 * check() throws UNAVAILABLE otherwise), so two replicas never act on one volume. The
 * capabilities stay answerable: the sidecars read them at start, before any lease is won.
 */
export function leaderOnly<T extends ControllerRpcs | GroupControllerRpcs>(target: T, leader: { check(): void }): T {
  const open: ReadonlySet<string> = new Set<RpcName>(['ControllerGetCapabilities', 'GroupControllerGetCapabilities']);
  return new Proxy(target, {
    get(t, prop, receiver) {
      const v = Reflect.get(t, prop, receiver) as unknown;
      if (typeof v !== 'function' || typeof prop !== 'string' || open.has(prop)) return v;
      return (...args: unknown[]) => {
        leader.check();
        return (v as (...a: unknown[]) => unknown).apply(t, args);
      };
    },
  });
}
