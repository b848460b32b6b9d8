import type { OpContext } from '../system/context.ts';
import { DRIVER_NAME, VERSION } from '../version.ts';
import type { PluginCapability } from './generated/csi/v1/PluginCapability.ts';
import type { IdentityRpcs } from './rpcs.ts';

export interface Readiness { ready(ctx: OpContext): Promise<{ ready: boolean; reason?: string }> }

/** CSI Identity: who we are, what we offer, and whether the pool can serve. */
export class IdentityService implements IdentityRpcs {
  private readonly readiness: Readiness;
  private readonly controller: boolean;
  private readonly groupController: boolean;
  private readonly snapshotMetadata: boolean;
  constructor(readiness: Readiness, controller: boolean, groupController = false, snapshotMetadata = false) {
    this.readiness = readiness;
    this.controller = controller;
    this.groupController = groupController;
    this.snapshotMetadata = snapshotMetadata;
  }

  GetPluginInfo() { return { name: DRIVER_NAME, vendor_version: VERSION, manifest: {} }; }

  GetPluginCapabilities() {
    const caps: PluginCapability[] = [
      { volume_expansion: { type: 'ONLINE' } },
      { volume_expansion: { type: 'OFFLINE' } },
    ];
    if (this.controller) caps.unshift({ service: { type: 'CONTROLLER_SERVICE' } }, { service: { type: 'VOLUME_ACCESSIBILITY_CONSTRAINTS' } });
    if (this.groupController) caps.push({ service: { type: 'GROUP_CONTROLLER_SERVICE' } });
    if (this.snapshotMetadata) caps.push({ service: { type: 'SNAPSHOT_METADATA_SERVICE' } });
    return { capabilities: caps };
  }

  async Probe(ctx: OpContext) {
    const r = await this.readiness.ready(ctx);
    return { ready: { value: r.ready } };
  }
}
