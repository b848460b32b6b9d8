import { type KubeConfig, Watch } from '@kubernetes/client-node';
import type { CustomObjectsApi } from '@kubernetes/client-node';
import type { Logger } from '../observability/log.ts';
import { backoff } from '../system/delay.ts';
import { GROUP, VERSION } from './types.ts';

interface Named { metadata: { name: string; resourceVersion?: string } }

/** The newest version of one object seen since subscribing; `gone` once its deletion was seen. */
export interface Subscription<T> {
  latest: T | undefined;
  gone: boolean;
  /** Resolves true at once if an event came since the last call, else at the next one; false after `ms` (or on abort). */
  next(ms: number, signal?: AbortSignal): Promise<boolean>;
  close(): void;
}

interface Sub { latest: unknown; gone: boolean; unseen: boolean; wake?: () => void }

/**
 * The controller's ears: one watch per resource, started from "now" (no initial list of every
 * object) and holding nothing but the subscriptions of calls waiting on a named object. A call
 * that waits for an agent wakes at the event instead of polling (issue 25: polls were most of a
 * create's requests and of its latency). Events are hints: a waiter still reads on timeout, so
 * a gap in the watch only delays it.
 */
export class ObjectChanges {
  private readonly subs = new Map<string, Set<Sub>>();
  private readonly watches = new Map<string, AbortController>();
  private readonly rv = new Map<string, string>();
  private failures = 0;
  private stopped = false;
  private readonly kc: KubeConfig;
  private readonly api: CustomObjectsApi;
  private readonly plurals: readonly string[];
  private readonly log: Logger;

  constructor(kc: KubeConfig, api: CustomObjectsApi, plurals: readonly string[], log: Logger) {
    this.kc = kc;
    this.api = api;
    this.plurals = plurals;
    this.log = log;
  }

  async start(): Promise<void> {
    await Promise.all(this.plurals.map((p) => this.watch(p)));
  }

  stop(): void {
    this.stopped = true;
    for (const c of this.watches.values()) c.abort();
  }

  /** Subscribe before reading the object: an event that races the read is then not lost. */
  subscribe<T>(name: string): Subscription<T> {
    const sub: Sub = { latest: undefined, gone: false, unseen: false };
    let set = this.subs.get(name);
    if (!set) this.subs.set(name, set = new Set());
    set.add(sub);
    return {
      get latest() { return sub.latest as T | undefined; },
      get gone() { return sub.gone; },
      next: (ms, signal) => new Promise<boolean>((resolve) => {
        if (sub.unseen) {
          sub.unseen = false;
          return resolve(true);
        }
        const done = (woke: boolean) => { clearTimeout(timer); signal?.removeEventListener('abort', abort); sub.wake = undefined; sub.unseen = false; resolve(woke); };
        const abort = () => done(false);
        const timer = setTimeout(() => done(false), ms);
        signal?.addEventListener('abort', abort);
        sub.wake = () => done(true);
      }),
      close: () => {
        set.delete(sub);
        if (set.size === 0 && this.subs.get(name) === set) this.subs.delete(name);
      },
    };
  }

  private deliver(plural: string, type: string, obj: Named): void {
    if (obj?.metadata?.resourceVersion) this.rv.set(plural, obj.metadata.resourceVersion);
    if (type === 'BOOKMARK') return;
    for (const sub of this.subs.get(obj.metadata.name) ?? []) {
      sub.latest = type === 'DELETED' ? undefined : obj;
      sub.gone = type === 'DELETED';
      sub.unseen = true;
      sub.wake?.();
    }
  }

  /** From the collection's current version (a one-item list), or on from the last event seen. */
  private async watch(plural: string): Promise<void> {
    if (this.stopped) return;
    try {
      let rv = this.rv.get(plural);
      if (!rv) {
        const list = await this.api.listClusterCustomObject({ group: GROUP, version: VERSION, plural, limit: 1 }) as { metadata?: { resourceVersion?: string } };
        rv = list.metadata?.resourceVersion;
        if (rv) this.rv.set(plural, rv);
      }
      const path = `/apis/${GROUP}/${VERSION}/${plural}`;
      const ctl = await new Watch(this.kc).watch(path, { resourceVersion: rv, allowWatchBookmarks: true }, (type, obj: Named & { code?: number }) => {
        if (type === 'ERROR') {
          if (obj?.code === 410) this.rv.delete(plural); // too old: start again from now
          return;
        }
        this.failures = 0;
        this.deliver(plural, type, obj);
      }, (err: unknown) => this.again(plural, err));
      this.watches.set(plural, ctl);
    } catch (err) {
      this.again(plural, err);
    }
  }

  private again(plural: string, err: unknown): void {
    if (this.stopped) return;
    const ms = err ? backoff(this.failures++, 200, 10_000) : 0; // a server-side close is routine
    if (err) this.log.debug('controller watch ended; restarting', { resource: plural, error: String(err), in_ms: ms });
    setTimeout(() => void this.watch(plural), ms).unref();
  }
}
