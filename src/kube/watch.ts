import { type CustomObjectsApi, type KubeConfig, type KubernetesObject, makeInformer } from '@kubernetes/client-node';
import type { Logger } from '../observability/log.ts';
import { GROUP, VERSION } from './types.ts';
import { backoff } from '../system/delay.ts';

export interface WatchOptions {
  kc: KubeConfig;
  api: CustomObjectsApi;
  plural: string;
  labelSelector: string;
  log: Logger;
  /** An object was added or changed (deletions of the object itself are not passed on). */
  onChange: (obj: KubernetesObject) => void;
  restartBaseMs?: number;
  restartMaxMs?: number;
}

/**
 * A list+watch of one custom resource that never stays down: client-node's ListWatch relists
 * by itself after a 410 Gone, but stops for good on any other error, so this restarts it
 * with capped backoff. Events only name the object: the handler reads it fresh.
 */
export class CrWatch {
  private readonly o: WatchOptions & { restartBaseMs: number; restartMaxMs: number };
  private readonly informer;
  private failures = 0;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(opts: WatchOptions) {
    // `?? ` rather than spread defaults: the agent passes its option through, undefined when unset, and a
    // spread undefined replaced the default (NaN backoff: restarts 1 ms apart against a down API server).
    this.o = { ...opts, restartBaseMs: opts.restartBaseMs ?? 200, restartMaxMs: opts.restartMaxMs ?? 30_000 };
    const { api, plural, labelSelector } = this.o;
    // resourceVersion 0: served from the apiserver's watch cache, as client-go's reflectors list.
    // Without it every (re)list, which follows each 410 of a quiet watch, read every object of
    // the cluster from etcd to keep one node's (issue 25). Events from the list's version on
    // make up for a cache a little behind.
    const list = async () => await api.listClusterCustomObject({ group: GROUP, version: VERSION, plural, labelSelector, resourceVersion: '0' }) as { items: KubernetesObject[] };
    this.informer = makeInformer(this.o.kc, `/apis/${GROUP}/${VERSION}/${plural}`, list, labelSelector);
    const changed = (obj: KubernetesObject) => {
      this.failures = 0; // events flow again: the next failure starts from a short delay
      if (obj.metadata?.name) this.o.onChange(obj);
    };
    this.informer.on('add', changed);
    this.informer.on('update', changed);
    // Gone for good: our finalizer means its deletion was seen (and acted on) before this.
    this.informer.on('delete', () => { this.failures = 0; });
    this.informer.on('error', (err: unknown) => this.restartLater(err));
  }

  async start(): Promise<void> {
    this.stopped = false;
    try {
      await this.informer.start();
    } catch (err) {
      this.restartLater(err);
    }
  }

  private restartLater(err: unknown): void {
    if (this.stopped || this.timer) return;
    const ms = backoff(this.failures++, this.o.restartBaseMs, this.o.restartMaxMs);
    this.o.log.warn('watch failed; restarting', { resource: this.o.plural, error: String(err), in_ms: ms });
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.start();
    }, ms);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    await this.informer.stop();
  }
}
