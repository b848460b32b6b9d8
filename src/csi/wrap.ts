import type * as grpc from '@grpc/grpc-js';
import { groupIdFor, idFor, memberIdFor } from '../volume/ids.ts';
import { Code } from '../errors.ts';
import { redact, type Logger } from '../observability/log.ts';
import type { Metrics } from '../observability/metrics.ts';
import { codeName, toStatus } from '../status.ts';
import type { OpContext } from '../system/context.ts';
import type { KeyedMutex } from '../system/lock.ts';
import type { CreateSnapshotRequest__Output } from './generated/csi/v1/CreateSnapshotRequest.ts';
import type { CreateVolumeGroupSnapshotRequest__Output } from './generated/csi/v1/CreateVolumeGroupSnapshotRequest.ts';
import type { CreateVolumeRequest__Output } from './generated/csi/v1/CreateVolumeRequest.ts';
import type { DeleteSnapshotRequest__Output } from './generated/csi/v1/DeleteSnapshotRequest.ts';
import type { DeleteVolumeRequest__Output } from './generated/csi/v1/DeleteVolumeRequest.ts';
import type { GetVolumeGroupSnapshotRequest__Output } from './generated/csi/v1/GetVolumeGroupSnapshotRequest.ts';
import type { RequestOf, RpcName } from './rpcs.ts';

/** Any CSI request, as grpc-js decodes it. */
export type CsiRequest = RequestOf<RpcName>;

/** A CSI method as the semantic layers implement it (src/csi/rpcs.ts types each by its own request). */
export type Handler = (ctx: OpContext, req: CsiRequest) => unknown;

/**
 * The fields that name what a request works on, from the requests that carry them: any
 * request has some or none of them (each decoded to '' or [] when the CO left it out).
 */
export type LockFields = Partial<CreateVolumeRequest__Output & CreateSnapshotRequest__Output & DeleteVolumeRequest__Output
  & DeleteSnapshotRequest__Output & CreateVolumeGroupSnapshotRequest__Output & GetVolumeGroupSnapshotRequest__Output>;

export interface WrapDeps { log: Logger; metrics: Metrics; locks: KeyedMutex }

const str = (v: unknown) => (typeof v === 'string' && v !== '' ? v : undefined);

/**
 * The volumes (and snapshots) a request works on. Work on the same id is serialised, and
 * creating from a source also holds the source, so a snapshot never races a delete of its origin.
 */
export function lockKeys(method: string, req: LockFields): string[] {
  const keys: Array<string | undefined> = [str(req.volume_id), str(req.snapshot_id)];
  const name = str(req.name);
  if (method === 'CreateVolume' && name) {
    keys.push(idFor('vol', name));
    const src = req.volume_content_source;
    keys.push(str(src?.snapshot?.snapshot_id), str(src?.volume?.volume_id));
  }
  if (method === 'CreateSnapshot' && name) keys.push(idFor('snap', name), str(req.source_volume_id));
  keys.push(...groupKeys(method, req));
  return [...new Set(keys.filter((k): k is string => k !== undefined))];
}

/**
 * A group snapshot holds its group, every source and every member (sorted with the rest by
 * runAll, so a group never deadlocks with a single snapshot, an expand or a stage of a member).
 */
function groupKeys(method: string, req: LockFields): string[] {
  const list = (v: unknown) => (Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string' && x !== '') : []);
  const name = str(req.name);
  if (method === 'CreateVolumeGroupSnapshot' && name) {
    const sources = list(req.source_volume_ids);
    return [groupIdFor(name), ...sources, ...sources.map((s) => memberIdFor(name, s))];
  }
  if (method === 'GetVolumeGroupSnapshot' || method === 'DeleteVolumeGroupSnapshot') {
    const id = str(req.group_snapshot_id);
    return [...(id ? [id] : []), ...list(req.snapshot_ids)];
  }
  return [];
}

function contextOf(call: grpc.ServerUnaryCall<unknown, unknown>): { ctx: OpContext; done: () => void } {
  const deadline = call.getDeadline();
  const ms = deadline instanceof Date ? deadline.getTime() : Number(deadline);
  const abort = new AbortController();
  const onCancel = () => abort.abort();
  call.on('cancelled', onCancel);
  return {
    ctx: { deadline: Number.isFinite(ms) ? ms : undefined, signal: abort.signal },
    done: () => call.removeListener('cancelled', onCancel),
  };
}

/** One wrapper around every RPC: deadline, per-volume serialisation, codes, a log line, a latency sample. */
export function wrap(method: string, handler: Handler, deps: WrapDeps): grpc.handleUnaryCall<unknown, unknown> {
  return (call, callback) => {
    const started = process.hrtime.bigint();
    const req = (call.request ?? {}) as CsiRequest;
    const { ctx, done } = contextOf(call);
    const keys = lockKeys(method, req as LockFields);
    // The copy redact() makes is the request's size again: only when it will be written.
    if (deps.log.isDebugEnabled()) deps.log.debug('rpc request', { rpc: method, request: redact(req) });
    deps.locks.runAll(keys, async () => handler(ctx, req))
      .then((res) => finish(undefined, res))
      .catch((err: unknown) => finish(err, undefined));

    function finish(err: unknown, res: unknown) {
      done();
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      const e = err === undefined ? undefined : toStatus(err);
      const code = e ? e.code : Code.OK;
      const name = codeName(code);
      deps.metrics.rpcDuration.observe({ method, code: name }, seconds);
      const fields = { rpc: method, volume_id: keys[0], duration_ms: Math.round(seconds * 1000), code: name };
      if (e && (code === Code.INTERNAL || code === Code.UNKNOWN)) deps.log.error('rpc failed', { ...fields, error: e.message, cause: String(e.cause ?? '') });
      else if (e) deps.log.info('rpc refused', { ...fields, error: e.message });
      else deps.log.info('rpc', fields);
      if (e) callback({ code: e.code, details: e.message });
      else callback(null, res ?? {});
    }
  };
}
