/**
 * Least privilege from the real server's own record: every request the chart's ServiceAccounts
 * made (our processes and the sidecars in their pods), whether the authorizer allowed it, and the
 * RBAC grants no request ever used.
 */
import type { AuditEvent } from './cluster.ts';
import { grantedVerbs, NS, type Obj } from './chart.ts';

export interface AuditSummary {
  requests: number;
  /** "user agent: verb uri -> code" of every request refused (403) or denied by the authorizer. */
  denied: string[];
  /**
   * The same for requests the server itself marks as served before it was ready
   * (`apiserver.k8s.io/startup: early=true`, right after a restart, its RBAC caches not yet synced).
   */
  deniedEarly: string[];
  /** "group/resource verb" used by each ServiceAccount, and by which user agents. */
  used: Map<string, Map<string, Set<string>>>;
  /** Granted to the ServiceAccount but used by none of its clients. */
  unused: Map<string, string[]>;
}

const agentName = (ua: string | undefined) => (ua ?? '?').split('/')[0]!.split(' ')[0]!;

export function summarize(events: AuditEvent[], objs: Obj[], serviceAccounts: string[]): AuditSummary {
  const out: AuditSummary = { requests: 0, denied: [], deniedEarly: [], used: new Map(), unused: new Map() };
  for (const sa of serviceAccounts) {
    const user = `system:serviceaccount:${NS}:${sa}`;
    const used = new Map<string, Set<string>>();
    for (const e of events.filter((x) => x.user.username === user)) {
      out.requests++;
      const decision = e.annotations?.['authorization.k8s.io/decision'];
      if (e.responseStatus?.code === 403 || decision === 'forbid') {
        const early = /early=true/.test(e.annotations?.['apiserver.k8s.io/startup'] ?? '');
        (early ? out.deniedEarly : out.denied).push(`${sa} ${agentName(e.userAgent)}: ${e.verb} ${e.requestURI} -> ${e.responseStatus?.code}`);
      }
      const r = e.objectRef;
      if (!r?.resource) continue; // discovery and other non-resource URLs: allowed to every authenticated user
      const key = `${r.apiGroup || 'core'}/${r.resource}${r.subresource ? `/${r.subresource}` : ''} ${e.verb}`;
      if (!used.has(key)) used.set(key, new Set());
      used.get(key)!.add(agentName(e.userAgent));
    }
    out.used.set(sa, used);
    out.unused.set(sa, [...grantedVerbs(objs, sa)].filter((g) => !used.has(g)).sort());
  }
  return out;
}
