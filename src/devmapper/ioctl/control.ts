import { closeSync, openSync } from 'node:fs';
import type { OpContext } from '../../system/context.ts';
import { step } from '../../system/crashpoint.ts';
import { reportCall } from '../../system/exec.ts';
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
const QUICK = new Set<CmdName>(['VERSION', 'LIST_DEVICES', 'DEV_STATUS', 'LIST_VERSIONS', 'DEV_ARM_POLL']);

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

/**
 * A request in dmsetup's words ("suspend NAME", "message POOL 0 MSG", "table NAME"), for the
 * debug log of what the driver asked the kernel: the same lines the dmsetup path logs.
 */
export function dmsetupWords(cmd: CmdName, req: Request): string[] {
  const name = req.name === undefined ? [] : [req.name];
  const flags = req.flags ?? 0;
  switch (cmd) {
    case 'DEV_SUSPEND': return [flags & Flag.SUSPEND ? 'suspend' : 'resume', ...(flags & Flag.NOFLUSH ? ['--noflush'] : []), ...name];
    case 'TARGET_MSG': return ['message', ...name, '0', req.payload ? req.payload.toString('utf8', 8, req.payload.indexOf(0, 8)) : ''];
    case 'TABLE_STATUS': return [flags & Flag.STATUS_TABLE ? 'table' : 'status', ...name];
    case 'TABLE_LOAD': return ['load', ...name];
    case 'DEV_STATUS': return ['info', ...name];
    case 'DEV_CREATE': return ['create', ...name];
    case 'DEV_REMOVE': return ['remove', ...(flags & Flag.DEFERRED_REMOVE ? ['--deferred'] : []), ...name];
    case 'LIST_DEVICES': return ['ls'];
    case 'LIST_VERSIONS': return ['targets'];
    case 'VERSION': return ['version'];
    case 'DEV_ARM_POLL': return ['wait', '(arm poll)'];
  }
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
  /** A plain descriptor, not a FileHandle: nothing may close it behind a call in flight. */
  #fd: number | undefined;
  /** Calls answered past their deadline that the kernel is still running, with the fd each uses. */
  readonly #inKernel = new Set<{ fd: number }>();

  constructor(path: string, maxMs: number, transport: Transport = FFI) {
    this.#path = path;
    this.#maxMs = maxMs;
    this.#transport = transport;
  }

  get path(): string { return this.#path; }

  #open(): number {
    if (this.#fd !== undefined) return this.#fd;
    try {
      this.#fd = openSync(this.#path, 'r+');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      throw new DmError('unsupported', `cannot open ${this.#path} (${code}): kernel has no device-mapper (or no permission to use it)`, { errno: code, cause: err });
    }
    return this.#fd;
  }

  /**
   * One request; when the kernel says its answer did not fit (DM_BUFFER_FULL_FLAG), the same
   * request again with twice the buffer, as libdevmapper does.
   */
  async call(ctx: OpContext, cmd: CmdName, req: Request = {}): Promise<Answer> {
    const fd = this.#open();
    const what = describe(cmd, req.name);
    for (let size = Math.max(req.size ?? HEADER_SIZE, HEADER_SIZE); ; size *= 2) {
      const buf = encodeRequest(size, req, req.payload);
      const started = performance.now();
      let failed = true;
      try {
        if (QUICK.has(cmd)) await this.#transport.sync(fd, ioctlRequest(Cmd[cmd]), buf, what);
        else await this.#transport.async(ctx, fd, ioctlRequest(Cmd[cmd]), buf, what, this.#maxMs);
        failed = false;
      } catch (err) {
        if (err instanceof SysError && err.settled) this.#stillRunning(err.settled, fd);
        throw classifyIoctlError(err, cmd, what);
      } finally {
        reportCall({ command: 'dm-ioctl', args: dmsetupWords(cmd, req), durationMs: Math.round(performance.now() - started), exitCode: failed ? 1 : 0, failed });
        // A kill right after a request that acted leaves what a kill after the command did.
        if (ACTS.has(cmd)) step(what);
      }
      const header = decodeHeader(buf);
      // Never twice for a request that acted: a message sent again is another message.
      if (!(header.flags & Flag.BUFFER_FULL) || ACTS.has(cmd)) return { header, buf };
      if (size * 2 > MAX_BUFFER) throw new DmError('unknown', `${what}: the kernel's answer does not fit in ${MAX_BUFFER} bytes`);
    }
  }

  #stillRunning(settled: Promise<void>, fd: number): void {
    const call = { fd };
    this.#inKernel.add(call);
    void settled.then(() => {
      this.#inKernel.delete(call);
      // Closed meanwhile: the descriptor was left open for this call, and is closed after it.
      if (this.#fd !== fd && !this.#uses(fd)) closeSync(fd);
    });
  }

  #uses(fd: number): boolean {
    for (const call of this.#inKernel) if (call.fd === fd) return true;
    return false;
  }

  /** Closes the descriptor now, or, while a call the kernel is still running uses it, after that call. */
  async close(): Promise<void> {
    const fd = this.#fd;
    this.#fd = undefined;
    if (fd !== undefined && !this.#uses(fd)) closeSync(fd);
  }
}
