/**
 * Who may call a node agent's channel: only the controller's ServiceAccount. The caller sends a
 * ServiceAccount token bound to the channel's audience (a projected token: the apiserver itself
 * refuses it, so a node that saw it cannot replay it against the API); the agent asks the
 * apiserver whether it is valid (TokenReview) and compares the user it names.
 */
import { createHash } from 'node:crypto';
import type { AuthenticationV1Api } from '@kubernetes/client-node';
import { apiStatus } from '../../status.ts';
import { Code, CsiError } from '../../errors.ts';

/** The audience the controller's projected token is issued for and the agent reviews it against. */
export const CHANNEL_AUDIENCE = 'dmthin.csi.io/channel';

export interface TokenVerdict { authenticated: boolean; username?: string; error?: string }

/** The TokenReview API, behind the interface the tests give a double of. */
export interface TokenReviewer { review(token: string, audiences: string[]): Promise<TokenVerdict> }

export class KubeTokenReviewer implements TokenReviewer {
  private readonly api: AuthenticationV1Api;
  constructor(api: AuthenticationV1Api) { this.api = api; }

  async review(token: string, audiences: string[]): Promise<TokenVerdict> {
    const r = await this.api.createTokenReview({ body: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token, audiences } } });
    const s = r.status ?? {};
    // An authenticated token whose audiences miss ours was issued for something else.
    const audienceOk = !s.audiences || audiences.every((a) => s.audiences!.includes(a));
    return { authenticated: s.authenticated === true && audienceOk, username: s.user?.username, error: s.error };
  }
}

export interface ChannelAuthOptions {
  /** `system:serviceaccount:<namespace>:<name>` of the controller. */
  allowedUser: string;
  audiences?: string[];
  /** How long a verdict is reused; short, so a deleted ServiceAccount or token is refused soon. */
  ttlMs?: number;
  maxEntries?: number;
  now?: () => number;
}

interface Entry { until: number; verdict: Promise<TokenVerdict> }

/**
 * The verdict on a bearer token, each token reviewed at most once per `ttlMs` (tokens are
 * keyed by their SHA-256, never kept): a streaming call per backup chunk must not cost an
 * apiserver round trip each. Refusals are cached too, so a caller retrying a bad token does
 * not become a load on the apiserver; a failed review is not cached.
 */
export class ChannelAuth {
  private readonly reviewer: TokenReviewer;
  private readonly o: Required<ChannelAuthOptions>;
  private readonly cache = new Map<string, Entry>();

  constructor(reviewer: TokenReviewer, o: ChannelAuthOptions) {
    this.reviewer = reviewer;
    this.o = { audiences: [CHANNEL_AUDIENCE], ttlMs: 30_000, maxEntries: 256, now: Date.now, ...o };
  }

  /** Resolves for the allowed caller; otherwise UNAUTHENTICATED, PERMISSION_DENIED, or UNAVAILABLE when the review fails. */
  async check(authorization: string | undefined): Promise<void> {
    const token = /^Bearer (\S+)$/.exec(authorization ?? '')?.[1];
    if (!token) throw new CsiError(Code.UNAUTHENTICATED, 'the channel needs a bearer token (the controller\'s ServiceAccount token)');
    const v = await this.verdict(token);
    if (!v.authenticated) throw new CsiError(Code.UNAUTHENTICATED, `token refused by the apiserver${v.error ? `: ${v.error}` : ''}`);
    if (v.username !== this.o.allowedUser) throw new CsiError(Code.PERMISSION_DENIED, `${v.username ?? 'an unnamed user'} may not use the channel (only ${this.o.allowedUser})`);
  }

  private verdict(token: string): Promise<TokenVerdict> {
    const key = createHash('sha256').update(token).digest('base64');
    const now = this.o.now();
    const hit = this.cache.get(key);
    if (hit && hit.until > now) return hit.verdict;
    if (this.cache.size >= this.o.maxEntries) this.evict(now);
    const verdict = this.reviewer.review(token, this.o.audiences).catch((err: unknown) => {
      this.cache.delete(key);
      throw apiStatus(err, 'cannot review the caller\'s token');
    });
    this.cache.set(key, { until: now + this.o.ttlMs, verdict });
    return verdict;
  }

  private evict(now: number): void {
    for (const [k, e] of this.cache) if (e.until <= now) this.cache.delete(k);
    while (this.cache.size >= this.o.maxEntries) this.cache.delete(this.cache.keys().next().value!);
  }
}
