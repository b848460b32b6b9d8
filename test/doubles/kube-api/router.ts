// URL routing and discovery documents of the Kubernetes API server TEST DOUBLE.
import { pathNotFound } from './errors.ts';
import { apiVersionOf } from './registry.ts';
import type { Registry } from './registry.ts';
import type { ResourceDef } from './types.ts';

export interface ResourceRoute {
  readonly kind: 'resource';
  readonly def: ResourceDef;
  /** Undefined for cluster-scoped resources and all-namespace collections. */
  readonly namespace: string | undefined;
  readonly name: string | undefined;
  readonly subresource: 'status' | undefined;
}

export interface DiscoveryRoute {
  readonly kind: 'discovery';
  readonly body: unknown;
  readonly text?: boolean;
}

export type Route = ResourceRoute | DiscoveryRoute;

const VERBS = ['create', 'delete', 'deletecollection', 'get', 'list', 'patch', 'update', 'watch'];

function resourceList(defs: readonly ResourceDef[], groupVersion: string): unknown {
  const resources: unknown[] = [];
  for (const d of defs) {
    resources.push({
      name: d.plural, singularName: d.singular, namespaced: d.namespaced, kind: d.kind, verbs: VERBS,
      ...(d.shortNames.length > 0 ? { shortNames: d.shortNames } : {}),
    });
    if (d.statusSubresource) {
      resources.push({ name: `${d.plural}/status`, singularName: '', namespaced: d.namespaced, kind: d.kind, verbs: ['get', 'patch', 'update'] });
    }
  }
  return { kind: 'APIResourceList', apiVersion: 'v1', groupVersion, resources };
}

function groupDoc(registry: Registry, group: string): unknown {
  const versions = [...new Set(registry.all().filter((d) => d.group === group).map((d) => d.version))]
    .map((version) => ({ groupVersion: `${group}/${version}`, version }));
  return { kind: 'APIGroup', apiVersion: 'v1', name: group, versions, preferredVersion: versions[0] };
}

/** Discovery documents: /api, /apis, /apis/G, /api/v1, /apis/G/V, /version, health checks. */
function discovery(registry: Registry, segs: readonly string[]): DiscoveryRoute | undefined {
  const [root, a, b] = segs;
  const all = registry.all();
  if (segs.length === 1 && (root === 'healthz' || root === 'livez' || root === 'readyz')) {
    return { kind: 'discovery', body: 'ok', text: true };
  }
  if (segs.length === 1 && root === 'version') {
    return { kind: 'discovery', body: { major: '1', minor: '33', gitVersion: 'v1.33.0-kube-double', platform: 'linux/amd64' } };
  }
  if (root === 'api' && segs.length === 1) {
    return { kind: 'discovery', body: { kind: 'APIVersions', versions: ['v1'], serverAddressByClientCIDRs: [] } };
  }
  if (root === 'api' && segs.length === 2 && a === 'v1') {
    return { kind: 'discovery', body: resourceList(all.filter((d) => d.group === ''), 'v1') };
  }
  if (root !== 'apis') return undefined;
  if (segs.length === 1) {
    const groups = [...new Set(all.map((d) => d.group).filter((g) => g !== ''))].map((g) => groupDoc(registry, g));
    return { kind: 'discovery', body: { kind: 'APIGroupList', apiVersion: 'v1', groups } };
  }
  const defs = all.filter((d) => d.group === a && (b === undefined || d.version === b));
  if (defs.length === 0 || segs.length > 3) return undefined;
  if (segs.length === 2) return { kind: 'discovery', body: groupDoc(registry, a ?? '') };
  return { kind: 'discovery', body: resourceList(defs, `${a ?? ''}/${b ?? ''}`) };
}

function resourceRoute(registry: Registry, segs: readonly string[]): ResourceRoute | undefined {
  const core = segs[0] === 'api';
  const group = core ? '' : (segs[1] ?? '');
  const version = (core ? segs[1] : segs[2]) ?? '';
  let rest = segs.slice(core ? 2 : 3);
  let namespace: string | undefined;
  if (rest[0] === 'namespaces' && rest.length >= 3) {
    namespace = rest[1];
    rest = rest.slice(2);
  }
  const def = registry.find(group, version, rest[0] ?? '');
  if (def === undefined || rest.length > 3) return undefined;
  if (!def.namespaced && namespace !== undefined) return undefined;
  if (def.namespaced && namespace === undefined && rest.length > 1) return undefined;
  const sub = rest[2];
  if (sub !== undefined && (sub !== 'status' || !def.statusSubresource)) return undefined;
  return { kind: 'resource', def, namespace, name: rest[1], subresource: sub === 'status' ? 'status' : undefined };
}

/** Maps a URL path to a resource or discovery document; throws 404 for anything else. */
export function route(registry: Registry, pathname: string): Route {
  let segs: string[];
  try {
    segs = pathname.split('/').filter((s) => s !== '').map((s) => decodeURIComponent(s));
  } catch {
    throw pathNotFound();
  }
  const found = discovery(registry, segs) ??
    (segs[0] === 'api' || segs[0] === 'apis' ? resourceRoute(registry, segs) : undefined);
  if (found === undefined) throw pathNotFound();
  return found;
}

export function listKind(def: ResourceDef): { kind: string; apiVersion: string } {
  return { kind: `${def.kind}List`, apiVersion: apiVersionOf(def) };
}
