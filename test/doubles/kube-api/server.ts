// HTTP front of the Kubernetes API server TEST DOUBLE (loopback only, plain HTTP, no auth).
import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { KubeConfig } from '@kubernetes/client-node';
import { ApiError, badRequest, methodNotAllowed, reasonForCode, statusObject } from './errors.ts';
import { Registry, BUILTIN_RESOURCES, apiVersionOf } from './registry.ts';
import { listKind, route } from './router.ts';
import type { ResourceRoute, Route } from './router.ts';
import { makeFilter } from './selectors.ts';
import { Store } from './store.ts';
import type { StoreOptions } from './store.ts';
import type { FailRule, KubeObject, RequestRecord, ResourceDef, ResourceInput } from './types.ts';
import { WatchHub } from './watch.ts';
import { TOKENREVIEW_PATH, TokenAuthority } from './tokenreview.ts';
import type { WatchHubOptions } from './watch.ts';

const MAX_BODY_BYTES = 8 * 1024 * 1024;

interface Ctx {
  readonly registry: Registry;
  readonly store: Store;
  readonly hub: WatchHub;
  readonly requests: RequestRecord[];
  readonly failures: FailRule[];
  readonly tokens: TokenAuthority;
}

function send(res: ServerResponse, code: number, body: unknown): void {
  if (res.headersSent) {
    if (!res.writableEnded) res.end();
    return;
  }
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  res.writeHead(code, { 'content-type': typeof body === 'string' ? 'text/plain' : 'application/json' });
  res.end(text);
}

function sendError(res: ServerResponse, err: unknown): void {
  const e = err instanceof ApiError ? err : new ApiError(500, 'InternalError', `Internal error occurred: ${String(err)}`);
  send(res, e.code, statusObject(e));
}

async function readBody(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    const buf = chunk as Buffer;
    size += buf.length;
    if (size > MAX_BODY_BYTES) throw new ApiError(413, 'RequestEntityTooLarge', 'request body too large');
    chunks.push(buf);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  if (text.trim() === '') return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw badRequest('the request body is not valid JSON (the test double accepts JSON bodies only)');
  }
}

function isWatch(q: URLSearchParams): boolean {
  const w = q.get('watch');
  return w === 'true' || w === '1';
}

function verbOf(method: string, r: Route, q: URLSearchParams): string {
  if (r.kind === 'discovery') return 'discovery';
  switch (method) {
    case 'GET': return r.name !== undefined ? 'get' : isWatch(q) ? 'watch' : 'list';
    case 'POST': return 'create';
    case 'PUT': return 'update';
    case 'PATCH': return 'patch';
    case 'DELETE': return r.name !== undefined ? 'delete' : 'deletecollection';
    default: return method.toLowerCase();
  }
}

/** Consumes a matching failNext rule, if any, and returns the error to answer with. */
function injectedFailure(failures: FailRule[], rec: RequestRecord): ApiError | undefined {
  const i = failures.findIndex((f) =>
    (f.verb === undefined || f.verb === rec.verb || f.verb === rec.method) &&
    (f.path === undefined || f.path.test(rec.path)));
  const rule = failures[i];
  if (rule === undefined) return undefined;
  const left = (rule.times ?? 1) - 1;
  if (left <= 0) failures.splice(i, 1);
  else failures[i] = { ...rule, times: left };
  const msg = rule.message ?? `injected ${rule.status} for ${rec.method} ${rec.path} (kube test double)`;
  return new ApiError(rule.status, rule.reason ?? reasonForCode(rule.status), msg);
}

function listBody(def: ResourceDef, items: KubeObject[], resourceVersion: string): unknown {
  // The real server omits apiVersion/kind on items of built-in lists; custom resource lists keep them.
  const shaped = def.custom ? items : items.map(({ apiVersion: _a, kind: _k, ...rest }) => rest);
  return { ...listKind(def), metadata: { resourceVersion }, items: shaped };
}

function successStatus(def: ResourceDef, obj: KubeObject): unknown {
  return {
    kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Success',
    details: { name: obj.metadata?.name, group: def.group, kind: def.plural, uid: obj.metadata?.uid },
  };
}

function handleRead(ctx: Ctx, r: ResourceRoute, q: URLSearchParams, res: ServerResponse): void {
  if (r.name !== undefined) {
    send(res, 200, ctx.store.get(r.def, r.namespace ?? '', r.name));
  } else if (isWatch(q)) {
    ctx.hub.serve(r.def, r.namespace, q, res);
  } else {
    const filter = makeFilter(r.def, {
      namespace: r.namespace, labelSelector: q.get('labelSelector') ?? undefined, fieldSelector: q.get('fieldSelector') ?? undefined,
    });
    const out = ctx.store.list(r.def, filter);
    send(res, 200, listBody(r.def, out.items, out.resourceVersion));
  }
}

async function handleWrite(ctx: Ctx, r: ResourceRoute, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const method = req.method ?? 'GET';
  const body = await readBody(req);
  const q = new URL(req.url ?? '/', 'http://localhost').searchParams;
  if (q.has('dryRun')) throw badRequest('dryRun is not supported by the kube test double');
  const ns = r.namespace ?? '';
  const { def, name } = r;
  if (method === 'POST' && name === undefined && (r.namespace !== undefined || !def.namespaced)) {
    send(res, 201, ctx.store.create(def, ns, body));
  } else if (method === 'PUT' && name !== undefined) {
    send(res, 200, r.subresource === 'status' ? ctx.store.updateStatus(def, ns, name, body) : ctx.store.update(def, ns, name, body));
  } else if (method === 'PATCH' && name !== undefined) {
    const type = req.headers['content-type'] ?? '';
    if (type.startsWith('application/apply-patch') && !q.get('fieldManager')) {
      throw new ApiError(422, 'Invalid', 'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is required for apply patch');
    }
    send(res, 200, ctx.store.patch(def, ns, name, type, body, r.subresource === 'status'));
  } else if (method === 'DELETE' && name !== undefined && r.subresource === undefined) {
    const out = ctx.store.delete(def, ns, name, body);
    send(res, 200, out.finished ? successStatus(def, out.object) : out.object);
  } else if (method === 'DELETE' && name === undefined) {
    const filter = makeFilter(def, {
      namespace: r.namespace, labelSelector: q.get('labelSelector') ?? undefined, fieldSelector: q.get('fieldSelector') ?? undefined,
    });
    send(res, 200, listBody(def, ctx.store.deleteCollection(def, filter), String(ctx.store.resourceVersion)));
  } else {
    throw methodNotAllowed(method);
  }
}

async function handle(ctx: Ctx, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const method = req.method ?? 'GET';
  const url = new URL(req.url ?? '/', 'http://localhost');
  const rec: RequestRecord = { method, path: url.pathname, query: Object.fromEntries(url.searchParams), verb: 'unknown' };
  ctx.requests.push(rec);
  try {
    let r: Route | undefined;
    try {
      r = url.pathname === TOKENREVIEW_PATH ? { kind: 'discovery', body: undefined } : route(ctx.registry, url.pathname);
      rec.verb = url.pathname === TOKENREVIEW_PATH ? 'create' : verbOf(method, r, url.searchParams);
    } finally {
      const injected = injectedFailure(ctx.failures, rec);
      if (injected !== undefined) throw injected;
    }
    if (url.pathname === TOKENREVIEW_PATH) {
      // Create-only: nothing is stored, so nothing can be read, listed or watched.
      if (method !== 'POST') throw methodNotAllowed(method);
      send(res, 201, ctx.tokens.review(await readBody(req)));
    } else if (r.kind === 'discovery') {
      if (method !== 'GET') throw methodNotAllowed(method);
      send(res, 200, r.body);
    } else if (method === 'GET') {
      handleRead(ctx, r, url.searchParams, res);
    } else {
      await handleWrite(ctx, r, req, res);
    }
  } catch (err) {
    sendError(res, err);
  } finally {
    rec.status = res.statusCode;
  }
}

export interface ApiDoubleOptions extends StoreOptions, WatchHubOptions {
  /** Extra resources to serve (custom by default), registered after the built-ins. */
  resources?: readonly ResourceInput[];
  /** CustomResourceDefinition objects (parsed YAML/JSON) to serve. */
  crds?: readonly unknown[];
}

export interface ApiDouble {
  /** `http://127.0.0.1:PORT` */
  readonly url: string;
  readonly registry: Registry;
  readonly store: Store;
  /** Every request received, in order (live array; truncate it freely). */
  readonly requests: RequestRecord[];
  /** A client-node KubeConfig pointing at the double (plain HTTP, no credentials, namespace "default"). */
  kubeConfig(): KubeConfig;
  register(resource: ResourceInput): ResourceDef;
  registerCrd(crd: unknown): ResourceDef[];
  /** Stored objects of a resource (`plural` or `plural.group`), sorted by namespace/name. */
  objects(resource: string, namespace?: string): KubeObject[];
  /** One stored object, or undefined. */
  object(resource: string, name: string, namespace?: string): KubeObject | undefined;
  /** Server-side create (same rules as POST); namespace from metadata.namespace or "default". */
  seed(resource: string, obj: KubeObject): KubeObject;
  /** Server-side write by "another actor": no preconditions; status/finalizers editable. */
  mutate(resource: string, name: string, fn: (obj: KubeObject) => KubeObject | void, namespace?: string): KubeObject;
  /** Server-side delete (same rules as DELETE: finalizers respected). */
  remove(resource: string, name: string, namespace?: string): KubeObject;
  /** Ends every open watch (default: clean end of stream; `abrupt`: socket destroyed). Returns how many. */
  dropWatches(opts?: { abrupt?: boolean }): number;
  /** Open watch connections. */
  watchCount(): number;
  /** Sends a BOOKMARK to watches that allowed bookmarks. */
  bookmark(): void;
  /** Forgets history: watches resuming from an older resourceVersion get ERROR 410 Expired. */
  compact(): void;
  /** Answers the next matching request(s) with an error Status instead of serving them. */
  failNext(rule: FailRule): void;
  /** Latest resourceVersion, as a string. */
  resourceVersion(): string;
  /** The tokens TokenReview knows (issue, serviceAccount, revoke). */
  readonly tokens: TokenAuthority;
  close(): Promise<void>;
}

function listen(server: Server): Promise<string> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const addr = server.address() as AddressInfo;
      resolve(`http://127.0.0.1:${addr.port}`);
    });
  });
}

function makeKubeConfig(url: string): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromOptions({
    // client-node 2.x refuses http:// servers unless skipTLSVerify is true.
    clusters: [{ name: 'kube-double', server: url, skipTLSVerify: true }],
    users: [{ name: 'kube-double' }],
    contexts: [{ name: 'kube-double', cluster: 'kube-double', user: 'kube-double', namespace: 'default' }],
    currentContext: 'kube-double',
  });
  return kc;
}

/** Starts the Kubernetes API server test double on 127.0.0.1 (random port). */
export async function startApiDouble(opts: ApiDoubleOptions = {}): Promise<ApiDouble> {
  const registry = new Registry(BUILTIN_RESOURCES);
  for (const r of opts.resources ?? []) registry.register(r);
  for (const c of opts.crds ?? []) registry.registerCrd(c);
  const store = new Store(registry, opts);
  const hub = new WatchHub(store, opts);
  const ctx: Ctx = { registry, store, hub, requests: [], failures: [], tokens: new TokenAuthority() };
  const server = createServer((req, res) => {
    void handle(ctx, req, res);
  });
  const url = await listen(server);
  return makeDouble(ctx, server, url);
}

function makeDouble(ctx: Ctx, server: Server, url: string): ApiDouble {
  const { registry, store, hub } = ctx;
  const nsOf = (def: ResourceDef, ns: string | undefined): string => (def.namespaced ? (ns ?? 'default') : '');
  let closing: Promise<void> | undefined;
  return {
    url, registry, store, requests: ctx.requests, tokens: ctx.tokens,
    kubeConfig: () => makeKubeConfig(url),
    register: (r) => registry.register(r),
    registerCrd: (crd) => registry.registerCrd(crd),
    objects: (resource, namespace) => {
      const def = registry.resolve(resource);
      return store.list(def, (o) => namespace === undefined || o.metadata?.namespace === namespace).items;
    },
    object: (resource, name, namespace) => {
      const def = registry.resolve(resource);
      return store.list(def, (o) => o.metadata?.name === name && (o.metadata.namespace ?? '') === nsOf(def, namespace)).items[0];
    },
    seed: (resource, obj) => {
      const def = registry.resolve(resource);
      const body = { apiVersion: apiVersionOf(def), kind: def.kind, ...obj };
      return store.create(def, nsOf(def, obj.metadata?.namespace), body);
    },
    mutate: (resource, name, fn, namespace) => {
      const def = registry.resolve(resource);
      return store.mutate(def, nsOf(def, namespace), name, fn);
    },
    remove: (resource, name, namespace) => {
      const def = registry.resolve(resource);
      return store.delete(def, nsOf(def, namespace), name).object;
    },
    dropWatches: (o) => hub.dropAll(o?.abrupt ?? false),
    watchCount: () => hub.count,
    bookmark: () => hub.bookmarkAll(),
    compact: () => store.compact(),
    failNext: (rule) => { ctx.failures.push({ ...rule }); },
    resourceVersion: () => String(store.resourceVersion),
    close: () => {
      closing ??= new Promise<void>((resolve) => {
        hub.dropAll(true);
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closing;
    },
  };
}
