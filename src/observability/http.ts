import { createServer, type Server } from 'node:http';
import type { Logger } from './log.ts';
import type { Metrics } from './metrics.ts';

/** Where the devices gauge counts from: every record's kind and state (a node's store). */
export interface DeviceRecords {
  listDevices(): Promise<readonly { kind: string; state: string }[]>;
}

/** How often the devices gauge is counted again while serving. */
export const DEVICE_GAUGE_MS = 15_000;

/** Volumes and snapshots by state, for the devices gauge. */
export async function refreshDeviceGauge(store: DeviceRecords, metrics: Metrics): Promise<void> {
  const counts = new Map<string, number>();
  for (const r of await store.listDevices()) counts.set(`${r.kind}|${r.state}`, (counts.get(`${r.kind}|${r.state}`) ?? 0) + 1);
  metrics.devices.reset();
  for (const [k, n] of counts) {
    const [kind, state] = k.split('|') as [string, string];
    metrics.devices.set({ kind, state }, n);
  }
}

export interface MetricsOptions {
  /** HOST:PORT (`--metrics-address`); none: no HTTP server. */
  address: string | undefined;
  metrics: Metrics;
  log: Logger;
  /** /healthz's answer. */
  healthy: () => Promise<boolean>;
  /** The records the devices gauge counts every DEVICE_GAUGE_MS; none (the controller): no gauge. */
  devices?: DeviceRecords;
}

export interface MetricsEndpoint {
  /** Present when an address was given. */
  server?: Server;
  /** Ends the gauge's refreshes and closes the server. */
  stop(): void;
}

/** A mode's metrics: /metrics and /healthz over HTTP, and the devices gauge kept current. */
export async function serveMetrics(o: MetricsOptions): Promise<MetricsEndpoint> {
  const server = o.address ? await listen(o.address, o.metrics, o.log, o.healthy) : undefined;
  const devices = o.devices;
  const gauge = devices ? setInterval(() => { void refreshDeviceGauge(devices, o.metrics).catch(() => undefined); }, DEVICE_GAUGE_MS) : undefined;
  gauge?.unref();
  return {
    ...(server ? { server } : {}),
    stop: () => { clearInterval(gauge); server?.close(); },
  };
}

/** /metrics for Prometheus and /healthz for a plain HTTP liveness check. */
async function listen(address: string, metrics: Metrics, log: Logger, healthy: () => Promise<boolean>): Promise<Server> {
  const m = /^(.*):(\d+)$/.exec(address);
  if (!m) throw new Error(`metrics address "${address}" must be HOST:PORT`);
  const server = createServer((req, res) => {
    const reply = (code: number, type: string, body: string) => { res.writeHead(code, { 'content-type': type }); res.end(body); };
    if (req.url === '/metrics') {
      metrics.registry.metrics().then((body) => reply(200, metrics.registry.contentType, body), (e: unknown) => reply(500, 'text/plain', String(e)));
    } else if (req.url === '/healthz') {
      healthy().then((ok) => reply(ok ? 200 : 503, 'text/plain', ok ? 'ok\n' : 'unhealthy\n'), () => reply(503, 'text/plain', 'unhealthy\n'));
    } else {
      reply(404, 'text/plain', 'not found\n');
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(Number(m[2]), m[1] || '0.0.0.0', () => resolve());
  });
  log.info('serving metrics', { address });
  return server;
}
