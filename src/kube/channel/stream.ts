/**
 * Server-streaming calls over grpc-js as StreamRpcs (src/csi/stream-rpcs.ts), in both
 * directions: a handler that serves a StreamRpc, and a call that runs a remote one. Generic over
 * the messages, so every service on the channel uses them.
 *
 * Backpressure end to end: `send` resolves only once grpc-js has taken the message (its write
 * buffer drains as HTTP/2 flow control lets frames out), and the calling side reads the next
 * message only after its own `send` resolved, so a slow consumer at the far end stalls the
 * producer behind every hop instead of filling a buffer in any of them.
 */
import * as grpc from '@grpc/grpc-js';
import { Code, CsiError } from '../../errors.ts';
import type { StreamRpc } from '../../csi/stream-rpcs.ts';
import type { Logger } from '../../observability/log.ts';
import { codeName, toStatus } from '../../status.ts';
import type { OpContext } from '../../system/context.ts';

const cancelled = () => new CsiError(Code.CANCELLED, 'the call was cancelled');

function deadlineOf(call: { getDeadline(): grpc.Deadline }): number | undefined {
  const d = call.getDeadline();
  const ms = d instanceof Date ? d.getTime() : Number(d);
  return Number.isFinite(ms) ? ms : undefined;
}

/** A send that resolves when the stream can take more, and rejects once the call is gone. */
function sender<Res>(call: grpc.ServerWritableStream<unknown, Res>, signal: AbortSignal): (res: Res) => Promise<void> {
  return (res) => new Promise<void>((resolve, reject) => {
    if (signal.aborted) { reject(cancelled()); return; }
    if (call.write(res)) { resolve(); return; }
    const done = (err?: CsiError) => {
      call.removeListener('drain', onDrain);
      signal.removeEventListener('abort', onAbort);
      if (err) reject(err); else resolve();
    };
    const onDrain = () => done();
    const onAbort = () => done(cancelled());
    call.once('drain', onDrain);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

/** The grpc-js handler of a StreamRpc: cancel and deadline into ctx, the promise's end into the call's status. */
export function serveStream<Req, Res>(method: string, rpc: StreamRpc<Req, Res>, log: Logger): grpc.handleServerStreamingCall<Req, Res> {
  return (call) => {
    const started = Date.now();
    const abort = new AbortController();
    const onCancel = () => abort.abort();
    call.on('cancelled', onCancel);
    const deadline = deadlineOf(call);
    const timer = deadline === undefined ? undefined : setTimeout(onCancel, Math.max(0, deadline - Date.now()));
    const ctx: OpContext = { deadline, signal: abort.signal };
    let sent = 0;
    const send = sender(call, abort.signal);
    rpc(ctx, call.request, (res) => { sent++; return send(res); })
      .then(() => undefined, (err: unknown) => toStatus(err))
      .then((e) => {
        clearTimeout(timer);
        call.removeListener('cancelled', onCancel);
        const fields = { rpc: method, messages: sent, duration_ms: Date.now() - started, code: codeName(e?.code ?? Code.OK) };
        if (e && (e.code === Code.INTERNAL || e.code === Code.UNKNOWN)) log.error('stream failed', { ...fields, error: e.message });
        else log.info(e ? 'stream refused' : 'stream', { ...fields, ...(e ? { error: e.message } : {}) });
        if (call.cancelled) return;
        if (e) call.emit('error', { code: e.code, details: e.details });
        else call.end();
      });
  };
}

export interface RemoteCall {
  client: grpc.Client;
  method: grpc.MethodDefinition<unknown, unknown>;
  metadata?: grpc.Metadata;
}

/**
 * Runs a remote server-streaming method as a StreamRpc: `ctx.signal` cancels the remote call,
 * `ctx.deadline` becomes its deadline, each message is passed to `send` before the next is read,
 * and the remote status comes back unchanged (a CsiError of the same code and message).
 */
export async function callStream<Req, Res>(r: RemoteCall, ctx: OpContext, req: Req, send: (res: Res) => Promise<void>): Promise<void> {
  if (ctx.signal?.aborted) throw cancelled();
  const m = r.method;
  const stream = r.client.makeServerStreamRequest(m.path, m.requestSerialize, m.responseDeserialize, req, r.metadata ?? new grpc.Metadata(),
    ctx.deadline === undefined ? {} : { deadline: ctx.deadline }) as grpc.ClientReadableStream<Res>;
  const onAbort = () => stream.cancel();
  ctx.signal?.addEventListener('abort', onAbort, { once: true });
  let finished = false;
  try {
    for await (const res of stream) await send(res as Res);
    finished = true;
  } catch (err) {
    if (err instanceof CsiError) throw err; // our own send failed: the caller's status, not the remote's
    const e = err as Partial<grpc.ServiceError>;
    if (typeof e.code === 'number' && e.code !== Code.OK) throw new CsiError(e.code, e.details ?? String(e.message), { cause: err });
    throw err;
  } finally {
    ctx.signal?.removeEventListener('abort', onAbort);
    if (!finished) stream.cancel(); // a failed send stops the remote producer too
  }
}
