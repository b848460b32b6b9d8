import { createServer, type Server } from 'node:http';
import type { Logger } from './log.ts';
import type { Metrics } from './metrics.ts';

/** /metrics for Prometheus and /healthz for a plain HTTP liveness check. */
export async function serveMetrics(address: string, metrics: Metrics, log: Logger, healthy: () => Promise<boolean>): Promise<Server> {
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
