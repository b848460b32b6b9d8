/**
 * The channel's settings, from the environment the chart sets (only when
 * snapshotMetadata.enabled): environment rather than flags while the CLI's flags are being
 * reworked elsewhere, and nothing here is a knob an operator turns by hand.
 */
import { UsageError } from './flags.ts';

/** Where the controller's projected token (audience CHANNEL_AUDIENCE) is mounted by the chart. */
export const DEFAULT_TOKEN_FILE = '/var/run/secrets/dmthin.csi.io/channel/token';

export interface NodeChannelSettings {
  /** Address bound (all of the pod's by default). */
  bindHost: string;
  port: number;
  /** host:port published in the ThinPool status; the host is the pod's IP. */
  publishHost: string;
  /** `system:serviceaccount:<namespace>:<name>` of the controller, the only caller admitted. */
  allowedUser: string;
}

const SA_USER = /^system:serviceaccount:[a-z0-9]([-a-z0-9]*[a-z0-9])?:[a-z0-9]([-.a-z0-9]*[a-z0-9])?$/;

/** DMTHIN_CHANNEL_PORT set: the agent serves the channel; undefined: it does not. */
export function nodeChannelSettings(env: NodeJS.ProcessEnv): NodeChannelSettings | undefined {
  const text = env.DMTHIN_CHANNEL_PORT;
  if (text === undefined || text === '') return undefined;
  const port = Number(text);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new UsageError(`DMTHIN_CHANNEL_PORT "${text}" is not a port`);
  const publishHost = env.DMTHIN_CHANNEL_ADDRESS || env.POD_IP;
  if (!publishHost) throw new UsageError('the node channel needs DMTHIN_CHANNEL_ADDRESS or POD_IP (the address the controller dials)');
  const allowedUser = env.DMTHIN_CHANNEL_CLIENT ?? '';
  if (!SA_USER.test(allowedUser)) throw new UsageError(`DMTHIN_CHANNEL_CLIENT "${allowedUser}" must be system:serviceaccount:<namespace>:<name> (the controller's)`);
  return { bindHost: env.DMTHIN_CHANNEL_BIND || '0.0.0.0', port, publishHost, allowedUser };
}

export interface ControllerChannelSettings { tokenFile: string }

/** DMTHIN_SNAPSHOT_METADATA=true: the controller serves SnapshotMetadata by forwarding to the nodes. */
export function controllerChannelSettings(env: NodeJS.ProcessEnv): ControllerChannelSettings | undefined {
  if (env.DMTHIN_SNAPSHOT_METADATA !== 'true') return undefined;
  return { tokenFile: env.DMTHIN_CHANNEL_TOKEN_FILE || DEFAULT_TOKEN_FILE };
}
