/**
 * A remote server-streaming call run as a StreamRpc (src/csi/stream-rpcs.ts): the calling half
 * of what csi/stream-wrap.ts serves. Generic over the messages, so every service on the channel
 * uses it.
 *
 * Backpressure end to end: the serving side's `send` resolves only once grpc-js has taken the
 * message (its write buffer drains as HTTP/2 flow control lets frames out), and this side reads
 * the next message only after its own `send` resolved, so a slow consumer at the far end stalls
 * the producer behind every hop instead of filling a buffer in any of them.
 */
import * as grpc from '@grpc/grpc-js';
import { Code, CsiError } from '../../errors.ts';
import type { OpContext } from '../../system/context.ts';

const cancelled = () => new CsiError(Code.CANCELLED, 'the call was cancelled');

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
