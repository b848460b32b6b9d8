// The channel's settings as the chart's environment gives them, and refusals of bad ones.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { controllerChannelSettings, DEFAULT_TOKEN_FILE, nodeChannelSettings } from '../../../src/cli/channel-config.ts';
import { UsageError } from '../../../src/cli/flags.ts';

const CLIENT = 'system:serviceaccount:kube-system:dmthin-csi-controller';

test('node: no port, no channel; a port needs the address to publish and the one client', () => {
  assert.equal(nodeChannelSettings({}), undefined);
  assert.deepEqual(nodeChannelSettings({ DMTHIN_CHANNEL_PORT: '9810', POD_IP: '10.1.2.3', DMTHIN_CHANNEL_CLIENT: CLIENT }),
    { bindHost: '0.0.0.0', port: 9810, publishHost: '10.1.2.3', allowedUser: CLIENT });
  assert.equal(nodeChannelSettings({ DMTHIN_CHANNEL_PORT: '0', DMTHIN_CHANNEL_ADDRESS: '127.0.0.1', POD_IP: '10.1.2.3', DMTHIN_CHANNEL_CLIENT: CLIENT })?.publishHost, '127.0.0.1');
  for (const env of [
    { DMTHIN_CHANNEL_PORT: '70000', POD_IP: '10.1.2.3', DMTHIN_CHANNEL_CLIENT: CLIENT },
    { DMTHIN_CHANNEL_PORT: '9810', DMTHIN_CHANNEL_CLIENT: CLIENT },
    { DMTHIN_CHANNEL_PORT: '9810', POD_IP: '10.1.2.3', DMTHIN_CHANNEL_CLIENT: 'admin' },
    { DMTHIN_CHANNEL_PORT: '9810', POD_IP: '10.1.2.3' },
  ]) assert.throws(() => nodeChannelSettings(env), UsageError, JSON.stringify(env));
});

test('controller: forwarding only when asked, with the chart\'s token path by default', () => {
  assert.equal(controllerChannelSettings({}), undefined);
  assert.equal(controllerChannelSettings({ DMTHIN_SNAPSHOT_METADATA: 'yes' }), undefined);
  assert.deepEqual(controllerChannelSettings({ DMTHIN_SNAPSHOT_METADATA: 'true' }), { tokenFile: DEFAULT_TOKEN_FILE });
  assert.deepEqual(controllerChannelSettings({ DMTHIN_SNAPSHOT_METADATA: 'true', DMTHIN_CHANNEL_TOKEN_FILE: '/t' }), { tokenFile: '/t' });
});
