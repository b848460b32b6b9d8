import { open, type FileHandle } from 'node:fs/promises';
import type { OpContext } from '../../system/context.ts';
import { step } from '../../system/crashpoint.ts';
import { ioctlAsync, ioctlSync, SysError } from '../../system/ffi.ts';
import { KIND_BY_ERRNO } from '../errors.ts';
import { DmError, type DmErrorKind } from '../types.ts';
import { Cmd, type CmdName, decodeHeader, encodeRequest, Flag, type Header, type HeaderIn, HEADER_SIZE, ioctlRequest } from './abi.ts';

/** errno → kind, straight from the kernel's answer (the same table dmsetup's errno is read with). */
const KIND: Readonly<Record<string, DmErrorKind>> = { ...KIND_BY_ERRNO, ETIMEDOUT: 'timeout', ECANCELED: 'timeout' };

/** Requests that change something: each one is a step for crash injection. */
const ACTS = new Set<CmdName>(['DEV_CREATE', 'DEV_REMOVE', 'DEV_SUSPEND', 'TABLE_LOAD', 'TARGET_MSG']);

/**
 * Requests answered without waiting on I/O run on the event loop's thread (a few µs); the rest
 * (a suspend that flushes, a remove, a table load that opens devices, a pool message, a status
 * that commits the pool's metadata) on a worker thread within the deadline.
 */
const QUICK = new Set<CmdName>(['VERSION', 'LIST_DEVICES', 'DEV_STATUS', 'LIST_VERSIONS']);

/** Past this the kernel's answer is not going to fit anywhere sensible. */
const MAX_BUFFER = 64 << 20;

export interface Request extends HeaderIn {
  payload?: Buffer;
  /** Initial buffer size (header included) for answers that carry data. */
  size?: number;
}

export interface Answer { header: Header; buf: Buffer }

export function describe(cmd: CmdName, name: string | undefined): string {
  return `DM_${cmd}${name ? ` ${name}` : ''}`;
}

/** Turns an ioctl failure into a DmError; EBUSY at DEV_CREATE is the kernel's word for a taken name. */
export function classifyIoctlError(err: unknown, cmd: CmdName, what: string): DmError {
  if (!(err instanceof SysError)) {
    return new DmError('unknown', `${what}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
  let kind = KIND[err.errno] ?? 'unknown';
  if (cmd === 'DEV_CREATE' && err.errno === 'EBUSY') kind = 'exists';
  return new DmError(kind, err.message, { errno: err.errno, cause: err });
}

/** How a request reaches the kernel; unit tests put a kernel double here. */
export interface Transport {
  sync(fd: number, request: number, buf: Buffer, what: string): Promise<void>;
  async(ctx: OpContext, fd: number, request: number, buf: Buffer, what: string, maxMs: number): Promise<void>;
}

const FFI: Transport = { sync: ioctlSync, async: ioctlAsync };

/** The open /dev/mapper/control and the one way requests reach it. */
export class Control {
  readonly #path: string;
  readonly #maxMs: number;
  readonly #transport: Transport;
  #fd: Promise<FileHandle> | undefined;

  constructor(path: string, maxMs: number, transport: Transport = FFI) {
    this.#path = path;
    this.#maxMs = maxMs;
    this.#transport = transport;
  }

  async #handle(): Promise<FileHandle> {
    this.#fd ??= open(this.#path, 'r+').catch((err: NodeJS.ErrnoException) => {
      this.#fd = undefined;
      throw new DmError('unsupported', `cannot open ${this.#path} (${err.code}): kernel has no device-mapper (or no permission to use it)`, { errno: err.code, cause: err });
    });
    return this.#fd;
  }

  /**
   * One request; when the kernel says its answer did not fit (DM_BUFFER_FULL_FLAG), the same
   * request again with twice the buffer, as libdevmapper does.
   */
  async call(ctx: OpContext, cmd: CmdName, req: Request = {}): Promise<Answer> {
    const fd = (await this.#handle()).fd;
    const what = describe(cmd, req.name);
    for (let size = Math.max(req.size ?? HEADER_SIZE, HEADER_SIZE); ; size *= 2) {
      const buf = encodeRequest(size, req, req.payload);
      try {
        if (QUICK.has(cmd)) await this.#transport.sync(fd, ioctlRequest(Cmd[cmd]), buf, what);
        else await this.#transport.async(ctx, fd, ioctlRequest(Cmd[cmd]), buf, what, this.#maxMs);
      } catch (err) {
        throw classifyIoctlError(err, cmd, what);
      } finally {
        // A kill right after a request that acted leaves what a kill after the command did.
        if (ACTS.has(cmd)) step(what);
      }
      const header = decodeHeader(buf);
      // Never twice for a request that acted: a message sent again is another message.
      if (!(header.flags & Flag.BUFFER_FULL) || ACTS.has(cmd)) return { header, buf };
      if (size * 2 > MAX_BUFFER) throw new DmError('unknown', `${what}: the kernel's answer does not fit in ${MAX_BUFFER} bytes`);
    }
  }

  async close(): Promise<void> {
    const fd = this.#fd;
    this.#fd = undefined;
    if (fd) await (await fd).close().catch(() => undefined);
  }
}
