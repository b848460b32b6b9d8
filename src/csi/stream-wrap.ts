import type * as grpc from '@grpc/grpc-js';
import { Code, CsiError, deadlineExceeded } from '../errors.ts';
import { redact } from '../observability/log.ts';
import { codeName, toStatus } from '../status.ts';
import type { OpContext } from '../system/context.ts';
import type { StreamRpc } from './stream-rpcs.ts';
import type { WrapDeps } from './wrap.ts';

type Call = grpc.ServerWritableStream<unknown, unknown>;

/**
 * The context of a streaming call: its signal aborts when the client cancels, the transport
 * closes, or the deadline passes (a unary handler returns by then anyway; a stream would go on
 * producing into a call nobody reads).
 */
function streamContext(call: Call): { ctx: OpContext; done: () => void } {
  const deadline = call.getDeadline();
  const ms = deadline instanceof Date ? deadline.getTime() : Number(deadline);
  const abort = new AbortController();
  const onCancel = () => abort.abort(new CsiError(Code.CANCELLED, 'the client cancelled the call'));
  call.on('cancelled', onCancel);
  const timer = Number.isFinite(ms) ? setTimeout(() => abort.abort(deadlineExceeded('the call\'s deadline passed')), Math.max(0, ms - Date.now())) : undefined;
  timer?.unref();
  return {
    ctx: { deadline: Number.isFinite(ms) ? ms : undefined, signal: abort.signal },
    done: () => { clearTimeout(timer); call.removeListener('cancelled', onCancel); },
  };
}

/**
 * send() for a call: resolves once the transport can take more ('drain'), so the producer runs
 * at the reader's pace; rejects once the call is aborted, so a producer blocked on a slow or
 * gone reader stops.
 */
function sender(call: Call, signal: AbortSignal): (res: unknown) => Promise<void> {
  return async (res) => {
    signal.throwIfAborted();
    if (call.write(res)) return;
    await new Promise<void>((resolve, reject) => {
      const onAbort = () => { call.removeListener('drain', onDrain); reject(signal.reason); };
      const onDrain = () => { signal.removeEventListener('abort', onAbort); resolve(); };
      call.once('drain', onDrain);
      signal.addEventListener('abort', onAbort, { once: true });
    });
  };
}

/**
 * The server-streaming counterpart of wrap(): codes through status.ts, a log line and a latency
 * sample per call, cancellation and the deadline in ctx.signal, backpressure in send(). No
 * per-volume lock: a stream reads a metadata snapshot, and holding a volume for the length of
 * a backup's read would stall its deletes and snapshots behind it.
 */
export function wrapStream(method: string, handler: StreamRpc<never, never>, deps: Omit<WrapDeps, 'locks'>): grpc.handleServerStreamingCall<unknown, unknown> {
  return (call) => {
    const started = process.hrtime.bigint();
    const req = (call.request ?? {}) as never;
    const { ctx, done } = streamContext(call);
    let sent = 0;
    const send = sender(call, ctx.signal!);
    if (deps.log.isDebugEnabled()) deps.log.debug('rpc request', { rpc: method, request: redact(req) });
    Promise.resolve()
      .then(() => handler(ctx, req, (res) => { sent++; return send(res); }))
      .then(() => finish(undefined), (err: unknown) => finish(err));

    function finish(err: unknown) {
      done();
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      // A cancelled call's handler fails with the abort's reason: the cancel is what happened.
      const e = err === undefined ? undefined : toStatus(ctx.signal!.aborted ? ctx.signal!.reason : err);
      const code = e ? e.code : Code.OK;
      const name = codeName(code);
      deps.metrics.rpcDuration.observe({ method, code: name }, seconds);
      const fields = { rpc: method, responses: sent, duration_ms: Math.round(seconds * 1000), code: name };
      if (e && (code === Code.INTERNAL || code === Code.UNKNOWN)) deps.log.error('rpc failed', { ...fields, error: e.message, cause: String(e.cause ?? '') });
      else if (e) deps.log.info('rpc refused', { ...fields, error: e.message });
      else deps.log.info('rpc', fields);
      if (call.cancelled) return;
      if (e) call.emit('error', { code: e.code, details: e.message });
      else call.end();
    }
  };
}
