// Kubernetes API server TEST DOUBLE — entry point. Test-only: never import from src/.
export { startApiDouble } from './server.ts';
export type { ApiDouble, ApiDoubleOptions } from './server.ts';
export { ApiError } from './errors.ts';
export { API_AUDIENCE, TokenAuthority } from './tokenreview.ts';
export type { TokenSubject } from './tokenreview.ts';
export { Registry, BUILTIN_RESOURCES, apiVersionOf, crdResources, storageKey } from './registry.ts';
export { Store, PATCH_TYPES } from './store.ts';
export type { DeleteResult, ListResult, StoreOptions } from './store.ts';
export { parseLabelSelector, matchLabels, parseFieldSelector, makeFilter } from './selectors.ts';
export { mergePatch, jsonPatch } from './patch.ts';
export type {
  FailRule, KubeObject, ObjectMeta, RequestRecord, ResourceDef, ResourceInput, StoredEvent, StoredEventType,
} from './types.ts';
