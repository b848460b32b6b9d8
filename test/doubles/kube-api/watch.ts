// Watch streams of the Kubernetes API server TEST DOUBLE: newline-delimited JSON
// `{type, object}` events over a chunked 200 response, resumable from a resourceVersion.
import type { ServerResponse } from 'node:http';
import { ApiError, badRequest, statusObject } from './errors.ts';
import { apiVersionOf, storageKey } from './registry.ts';
import { makeFilter } from './selectors.ts';
import type { ObjectFilter } from './selectors.ts';
import type { Store } from './store.ts';
import type { KubeObject, ResourceDef, StoredEvent } from './types.ts';

export interface WatchHubOptions {
  /** Periodic BOOKMARK events for watches with allowWatchBookmarks=true; 0 disables. */
  bookmarkIntervalMs?: number;
}

interface Conn {
  readonly def: ResourceDef;
  readonly res: ServerResponse;
  readonly bookmarks: boolean;
  cleanup(): void;
}

type Send = (type: string, object: unknown) => void;

interface Start {
  initial: KubeObject[];
  backlog: readonly StoredEvent[];
  expired?: ApiError;
}

export class WatchHub {
  readonly #store: Store;
  readonly #bookmarkIntervalMs: number;
  readonly #conns = new Set<Conn>();

  constructor(store: Store, opts: WatchHubOptions = {}) {
    this.#store = store;
    this.#bookmarkIntervalMs = opts.bookmarkIntervalMs ?? 0;
  }

  /** Open watch connections. */
  get count(): number {
    return this.#conns.size;
  }

  /**
   * Serves `?watch=true` on a collection. Selector / resourceVersion errors throw
   * (before any byte is sent); a too-old resourceVersion is an ERROR event (410 Expired).
   */
  serve(def: ResourceDef, namespace: string | undefined, query: URLSearchParams, res: ServerResponse): void {
    const filter = makeFilter(def, {
      namespace, labelSelector: query.get('labelSelector') ?? undefined, fieldSelector: query.get('fieldSelector') ?? undefined,
    });
    const bookmarks = query.get('allowWatchBookmarks') === 'true';
    const start = this.#start(def, filter, query);
    res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-cache, private' });
    res.flushHeaders();
    const send: Send = (type, object) => {
      if (!res.destroyed && !res.writableEnded) res.write(`${JSON.stringify({ type, object })}\n`);
    };
    if (start.expired !== undefined) {
      send('ERROR', statusObject(start.expired));
      res.end();
      return;
    }
    for (const o of start.initial) send('ADDED', o);
    if (bookmarks && query.get('sendInitialEvents') === 'true') {
      send('BOOKMARK', this.#bookmarkObject(def, { 'k8s.io/initial-events-end': 'true' }));
    }
    const deliver = (ev: StoredEvent): void => this.#deliver(def, filter, ev, send);
    for (const ev of start.backlog) deliver(ev);
    this.#track(def, res, bookmarks, deliver, query);
  }

  /** Ends every open watch: gracefully (server closes the stream) or abruptly (socket destroyed). */
  dropAll(abrupt = false): number {
    const conns = [...this.#conns];
    for (const c of conns) {
      c.cleanup();
      if (abrupt) c.res.destroy();
      else c.res.end();
    }
    return conns.length;
  }

  /** Sends a BOOKMARK (current resourceVersion) to every watch that allowed bookmarks. */
  bookmarkAll(): void {
    for (const c of this.#conns) {
      if (c.bookmarks && !c.res.writableEnded) {
        c.res.write(`${JSON.stringify({ type: 'BOOKMARK', object: this.#bookmarkObject(c.def) })}\n`);
      }
    }
  }

  #start(def: ResourceDef, filter: ObjectFilter, query: URLSearchParams): Start {
    const rv = query.get('resourceVersion') ?? '';
    if (rv === '' || rv === '0' || query.get('sendInitialEvents') === 'true') {
      return { initial: this.#store.list(def, filter).items, backlog: [] };
    }
    if (!/^\d+$/.test(rv)) throw badRequest(`resourceVersion: Invalid value: "${rv}": must be a non-negative integer`);
    try {
      return { initial: [], backlog: this.#store.eventsSince(Number(rv)) };
    } catch (err) {
      if (err instanceof ApiError && err.code === 410) return { initial: [], backlog: [], expired: err };
      throw err;
    }
  }

  /** Like the real watch cache: an object moving into / out of the selection is ADDED / DELETED. */
  #deliver(def: ResourceDef, filter: ObjectFilter, ev: StoredEvent, send: Send): void {
    if (ev.resource !== storageKey(def)) return;
    const now = filter(ev.object);
    const before = ev.prev !== undefined && filter(ev.prev);
    const out = (o: KubeObject): KubeObject => this.#store.output(def, o);
    if (ev.type === 'ADDED') {
      if (now) send('ADDED', out(ev.object));
    } else if (ev.type === 'DELETED') {
      if (now || before) send('DELETED', out(ev.object));
    } else if (now) {
      send(before ? 'MODIFIED' : 'ADDED', out(ev.object));
    } else if (before && ev.prev !== undefined) {
      const prev = out(ev.prev);
      send('DELETED', { ...prev, metadata: { ...prev.metadata, resourceVersion: String(ev.rv) } });
    }
  }

  #track(def: ResourceDef, res: ServerResponse, bookmarks: boolean,
    deliver: (ev: StoredEvent) => void, query: URLSearchParams): void {
    const unsubscribe = this.#store.subscribe(deliver);
    const timers: NodeJS.Timeout[] = [];
    const conn: Conn = {
      def, res, bookmarks,
      cleanup: () => {
        unsubscribe();
        for (const t of timers) clearTimeout(t);
        this.#conns.delete(conn);
      },
    };
    this.#conns.add(conn);
    const timeout = Number(query.get('timeoutSeconds') ?? '0');
    if (Number.isFinite(timeout) && timeout > 0) {
      timers.push(setTimeout(() => { conn.cleanup(); res.end(); }, timeout * 1000).unref());
    }
    if (bookmarks && this.#bookmarkIntervalMs > 0) {
      const send = (): void => {
        if (!res.writableEnded) res.write(`${JSON.stringify({ type: 'BOOKMARK', object: this.#bookmarkObject(def) })}\n`);
      };
      timers.push(setInterval(send, this.#bookmarkIntervalMs).unref());
    }
    // Not req 'close': that fires once the request body is consumed, not on disconnect.
    res.on('close', conn.cleanup);
  }

  #bookmarkObject(def: ResourceDef, annotations?: Record<string, string>): KubeObject {
    const metadata = annotations === undefined
      ? { resourceVersion: String(this.#store.resourceVersion) }
      : { resourceVersion: String(this.#store.resourceVersion), annotations };
    return { kind: def.kind, apiVersion: apiVersionOf(def), metadata };
  }
}
