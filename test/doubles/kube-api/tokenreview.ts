// TokenReview (authentication.k8s.io/v1) of the Kubernetes API server TEST DOUBLE.
// Modelled on kube-apiserver's tokenreview REST storage and its ServiceAccount token authenticator:
// create-only and never stored; an empty token is 400 BadRequest; an unknown or revoked token is
// `authenticated: false` with an error; a token whose audiences miss every requested audience
// is refused likewise; no requested audiences means the server's own (the API audience); the
// answer echoes the spec and lists the audiences the token was accepted for.
import { randomBytes } from 'node:crypto';
import { badRequest } from './errors.ts';

export const TOKENREVIEW_PATH = '/apis/authentication.k8s.io/v1/tokenreviews';
/** The apiserver's own audience (its --service-account-issuer, the default --api-audiences). */
export const API_AUDIENCE = 'https://kubernetes.default.svc.cluster.local';

export interface TokenSubject { username: string; uid?: string; groups?: string[]; audiences?: string[] }

export class TokenAuthority {
  private readonly tokens = new Map<string, Required<TokenSubject>>();

  /** A new token for `subject` (audiences default to the API's, as a legacy or default-projected token). */
  issue(subject: TokenSubject): string {
    const token = `kube-double.${randomBytes(18).toString('base64url')}`;
    this.tokens.set(token, { uid: randomBytes(8).toString('hex'), groups: [], audiences: [API_AUDIENCE], ...subject });
    return token;
  }

  /** A ServiceAccount's token, named as the real authenticator names its user. */
  serviceAccount(namespace: string, name: string, audiences?: string[]): string {
    return this.issue({
      username: `system:serviceaccount:${namespace}:${name}`,
      groups: ['system:serviceaccounts', `system:serviceaccounts:${namespace}`, 'system:authenticated'],
      ...(audiences ? { audiences } : {}),
    });
  }

  /** As if the ServiceAccount or its bound pod were deleted: the token no longer authenticates. */
  revoke(token: string): void { this.tokens.delete(token); }

  review(body: unknown): Record<string, unknown> {
    const spec = (body as { spec?: { token?: unknown; audiences?: unknown } } | undefined)?.spec ?? {};
    const token = typeof spec.token === 'string' ? spec.token : '';
    if (token === '') throw badRequest('token is required for TokenReview in authentication');
    const wanted = Array.isArray(spec.audiences) && spec.audiences.length > 0 ? spec.audiences.map(String) : [API_AUDIENCE];
    const subject = this.tokens.get(token);
    const accepted = subject ? wanted.filter((a) => subject.audiences.includes(a)) : [];
    const echo = { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', metadata: { creationTimestamp: null }, spec: { token, ...(Array.isArray(spec.audiences) ? { audiences: spec.audiences } : {}) } };
    if (!subject) return { ...echo, status: { user: {}, error: '[invalid bearer token, square/go-jose: error in cryptographic primitive]' } };
    if (accepted.length === 0) {
      return { ...echo, status: { user: {}, error: `[invalid bearer token, token audiences ${JSON.stringify(subject.audiences)} is invalid for the target audiences ${JSON.stringify(wanted)}]` } };
    }
    return { ...echo, status: { authenticated: true, user: { username: subject.username, uid: subject.uid, groups: subject.groups }, audiences: accepted } };
  }
}
