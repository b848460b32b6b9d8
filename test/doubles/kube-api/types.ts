// Shared types of the Kubernetes API server TEST DOUBLE.
// Test-only code: never import anything under test/ from src/.
import type { ObjectMeta as DriverObjectMeta } from '../../../src/kube/types.ts';

/**
 * ObjectMeta as the test double sees it: the driver's (src/kube/types.ts), every field optional
 * since clients may send less, plus what only the server interprets; other keys pass through.
 */
export interface ObjectMeta extends Partial<DriverObjectMeta> {
  generateName?: string;
  namespace?: string;
  deletionGracePeriodSeconds?: number;
  [key: string]: unknown;
}

/** Any Kubernetes object as JSON. */
export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata?: ObjectMeta;
  [key: string]: unknown;
}

/** A resource the test double serves. */
export interface ResourceDef {
  /** API group; '' for the core group. */
  readonly group: string;
  readonly version: string;
  readonly plural: string;
  readonly singular: string;
  readonly kind: string;
  readonly namespaced: boolean;
  readonly statusSubresource: boolean;
  /**
   * Custom resource semantics (as the real apiextensions server): status dropped on
   * create when a status subresource exists, PUT requires metadata.resourceVersion,
   * strategic-merge-patch refused with 415, List items carry apiVersion/kind.
   */
  readonly custom: boolean;
  /** Field selector labels accepted besides metadata.name / metadata.namespace. */
  readonly fieldSelectors: readonly string[];
  readonly shortNames: readonly string[];
  /**
   * Dotted paths of metav1.MicroTime fields. The real server only parses them with exactly
   * six fractional digits (a JS `Date#toISOString()` value is refused with 400).
   */
  readonly microTimeFields: readonly string[];
  /** CRD validation rules (x-kubernetes-validations) of top-level properties, enforced on writes. */
  readonly rules: readonly PropertyRule[];
}

/** One x-kubernetes-validations rule on a top-level property (e.g. `spec`) of a custom resource. */
export interface PropertyRule {
  property: string;
  rule: string;
  message?: string;
}

/** What `register()` accepts; missing fields get defaults. */
export interface ResourceInput {
  group: string;
  version: string;
  plural: string;
  kind: string;
  namespaced?: boolean;
  statusSubresource?: boolean;
  singular?: string;
  custom?: boolean;
  fieldSelectors?: readonly string[];
  shortNames?: readonly string[];
  microTimeFields?: readonly string[];
  rules?: readonly PropertyRule[];
}

export type StoredEventType = 'ADDED' | 'MODIFIED' | 'DELETED';

/** One change in the store's history, as a watch replays it. */
export interface StoredEvent {
  readonly rv: number;
  readonly type: StoredEventType;
  /** Storage key of the resource (see storageKey()). */
  readonly resource: string;
  readonly object: KubeObject;
  /** Object state before this change (MODIFIED and DELETED). */
  readonly prev?: KubeObject;
}

/** One entry of the request log. */
export interface RequestRecord {
  method: string;
  path: string;
  query: Record<string, string>;
  /** Kubernetes verb: get, list, watch, create, update, patch, delete, deletecollection, discovery. */
  verb: string;
  /** HTTP status sent (set when the response starts). */
  status?: number;
}

/** A failure to inject into the next matching request(s). */
export interface FailRule {
  /** Kubernetes verb (get, list, watch, create, update, patch, delete) or HTTP method (GET, PUT…). */
  verb?: string;
  /** Tested against the URL path (no query). */
  path?: RegExp;
  status: number;
  /** How many matching requests fail; default 1. */
  times?: number;
  reason?: string;
  message?: string;
}
