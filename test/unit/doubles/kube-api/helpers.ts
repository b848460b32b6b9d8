// Helpers shared by the kube test double's own tests.
import assert from 'node:assert/strict';
import { after } from 'node:test';
import { ApiException, CustomObjectsApi, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { startApiDouble } from '../../../doubles/kube-api/index.ts';
import type { ApiDouble } from '../../../doubles/kube-api/index.ts';
import { sleep } from '../../../../src/system/delay.ts';

export const GROUP = 'dmthin.csi.io';
export const VERSION = 'v1alpha1';

/** The driver's custom resources, as registered by the lead's tests. */
export const DMTHIN_RESOURCES = [
  { group: GROUP, version: VERSION, plural: 'thinpools', kind: 'ThinPool', statusSubresource: true },
  { group: GROUP, version: VERSION, plural: 'thinvolumes', kind: 'ThinVolume', statusSubresource: true },
  { group: GROUP, version: VERSION, plural: 'thinsnapshots', kind: 'ThinSnapshot', statusSubresource: true },
] as const;

/**
 * One double serving DMTHIN_RESOURCES for the whole test file that awaits this at its top
 * level, closed after the file's last test, with a CustomObjectsApi client on it.
 */
export async function fileDouble(): Promise<{ d: ApiDouble; api: CustomObjectsApi }> {
  const d = await startApiDouble({ resources: DMTHIN_RESOURCES });
  after(() => d.close());
  return { d, api: d.kubeConfig().makeApiClient(CustomObjectsApi) };
}

export const merge = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);

export const TV = { group: GROUP, version: VERSION, plural: 'thinvolumes' } as const;

export function thinVolume(name: string, labels: Record<string, string> = {}, spec: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    apiVersion: `${GROUP}/${VERSION}`,
    kind: 'ThinVolume',
    metadata: { name, labels },
    spec: { sizeBytes: 1048576, ...spec },
  };
}

export interface StatusBody {
  kind: string;
  apiVersion: string;
  status: string;
  reason: string;
  code: number;
  message: string;
}

/** Awaits a rejection with client-node's ApiException of `code`; returns the parsed Status body. */
export async function rejectsWith(p: Promise<unknown>, code: number): Promise<StatusBody> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof ApiException, `expected ApiException, got ${String(err)}`);
    assert.equal(err.code, code, String(err.body));
    // client-node 2.x: for non-2xx the body is the raw response TEXT, not a parsed object.
    assert.equal(typeof err.body, 'string');
    return JSON.parse(err.body as string) as StatusBody;
  }
  assert.fail(`expected ApiException ${code}`);
}

/** Polls `cond` every 10 ms for at most `ms`; fails with `what` on timeout. */
export async function waitFor(cond: () => boolean, what: string, ms = 5000): Promise<void> {
  const until = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > until) assert.fail(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

/** Thin CRD object as a project would ship it (for registerCrd / create via apiextensions). */
export function thinPoolCrd(): Record<string, unknown> {
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: `thinpools.${GROUP}` },
    spec: {
      group: GROUP,
      scope: 'Cluster',
      names: { plural: 'thinpools', singular: 'thinpool', kind: 'ThinPool', listKind: 'ThinPoolList', shortNames: ['tp'] },
      versions: [{
        name: VERSION, served: true, storage: true,
        subresources: { status: {} },
        schema: { openAPIV3Schema: { type: 'object', 'x-kubernetes-preserve-unknown-fields': true } },
      }],
    },
  };
}
