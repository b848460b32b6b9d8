import * as grpc from '@grpc/grpc-js';
import { loadCsi } from '../../src/csi/proto.ts';

/** A range as the service sends it. */
export interface Range { byte_offset: number; size_bytes: number }

/** One response of either SnapshotMetadata RPC. */
export interface MetadataResponse { block_metadata_type: string; volume_capacity_bytes: number; block_metadata: Range[] }

export interface AllocatedArgs { snapshot_id: string; starting_offset?: number; max_results?: number }
export interface DeltaArgs { base_snapshot_id: string; target_snapshot_id: string; starting_offset?: number; max_results?: number }

export interface StreamOptions {
  timeoutMs?: number;
  /** Cancels the call after this many responses (the responses so far are returned, with the cancel's error). */
  cancelAfter?: number;
  /** Waits this long before reading each response: a slow reader. */
  readDelayMs?: number;
  /** Called with the count so far as each response arrives. */
  onResponse?: (count: number) => void;
}

/** What a stream delivered, and how it ended: the error's code name, or 'OK'. */
export interface StreamResult { responses: MetadataResponse[]; code: string; details: string }

type Streaming = (req: object, opts: grpc.CallOptions) => grpc.ClientReadableStream<MetadataResponse>;

/** A client of the csi.v1.SnapshotMetadata service (the role of the external-snapshot-metadata sidecar). */
export class MetadataClient {
  readonly #client: grpc.Client;
  constructor(endpoint: string, creds: grpc.ChannelCredentials = grpc.credentials.createInsecure()) {
    this.#client = new (loadCsi().csi.v1.SnapshotMetadata)(endpoint, creds);
  }

  allocated(args: AllocatedArgs, opts: StreamOptions = {}): Promise<StreamResult> {
    return this.#stream('GetMetadataAllocated', { starting_offset: 0, max_results: 0, ...args }, opts);
  }

  delta(args: DeltaArgs, opts: StreamOptions = {}): Promise<StreamResult> {
    return this.#stream('GetMetadataDelta', { starting_offset: 0, max_results: 0, ...args }, opts);
  }

  close(): void { this.#client.close(); }

  #stream(method: string, req: object, opts: StreamOptions): Promise<StreamResult> {
    const fn = (this.#client as unknown as Record<string, Streaming>)[method]!;
    const call = fn.call(this.#client, req, { deadline: Date.now() + (opts.timeoutMs ?? 120_000) });
    const responses: MetadataResponse[] = [];
    return new Promise((resolve) => {
      let settled = false;
      const done = (code: string, details: string) => { if (!settled) { settled = true; resolve({ responses, code, details }); } };
      call.on('data', (res: MetadataResponse) => {
        responses.push(res);
        opts.onResponse?.(responses.length);
        if (opts.cancelAfter !== undefined && responses.length >= opts.cancelAfter) call.cancel();
        if (opts.readDelayMs) { call.pause(); setTimeout(() => call.resume(), opts.readDelayMs); }
      });
      call.on('error', (err: grpc.ServiceError) => done(grpc.status[err.code] ?? String(err.code), err.details));
      call.on('end', () => done('OK', ''));
    });
  }
}

/** Every range of a stream's responses, in order. */
export const rangesOf = (r: StreamResult): Range[] => r.responses.flatMap((x) => x.block_metadata);

/**
 * Reads a whole stream as a backup tool resuming after each break would: `call` makes one
 * call from an offset (one that cancels itself early, say), and the next resumes at the byte
 * after the last range received.
 */
export async function readResumed(call: (startingOffset: number) => Promise<StreamResult>): Promise<{ ranges: Range[]; calls: number }> {
  const ranges: Range[] = [];
  let offset = 0;
  for (let calls = 1; ; calls++) {
    const r = await call(offset);
    const got = rangesOf(r);
    ranges.push(...got);
    if (r.code === 'OK') return { ranges, calls };
    if (r.code !== 'CANCELLED') throw new Error(`stream failed: ${r.code} ${r.details}`);
    if (got.length > 0) offset = got.at(-1)!.byte_offset + got.at(-1)!.size_bytes;
    if (calls > 100_000) throw new Error('no end to the resumed reads');
  }
}
