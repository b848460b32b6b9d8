import { closeSync, openSync } from 'node:fs';
import type { OpContext } from '../../system/context.ts';
import { ioctlSync, pollAsync, SysError } from '../../system/ffi.ts';
import { DmError } from '../types.ts';
import { Cmd, type CmdName, decodeHeader, encodeRequest, HEADER_SIZE, ioctlRequest } from './abi.ts';
import { classifyIoctlError, describe } from './control.ts';

const POLLIN = 0x001;
/** A request the kernel answers at once, on the calling thread; its failure as a DmError. */
async function quick(fd: number, cmd: CmdName, buf: Buffer, name?: string): Promise<void> {
  const what = describe(cmd, name);
  await ioctlSync(fd, ioctlRequest(Cmd[cmd]), buf, what).catch((err: unknown) => { throw classifyIoctlError(err, cmd, what); });
}

/** One poll's length: the longest a wait that was given up holds its worker thread (and a stop). */
const SLICE_MS = 1_000;

/**
 * DM_DEV_WAIT's answer without its flaw: DM_DEV_WAIT sleeps in the kernel until the device's
 * next event, with no timeout, and a worker thread stuck in it holds the process at exit (Node
 * joins libuv's threads, and an ioctl cannot be taken back). The control device's poll (armed
 * by DM_DEV_ARM_POLL, dm ioctl 4.37, Linux 4.13) wakes on any device's event instead, in
 * slices of a second: each wake, and each slice's end, reads NAME's event number again. Arming
 * before the read means no event between the read and the poll is missed.
 */
export async function waitEvent(ctx: OpContext, controlPath: string, name: string, eventNr: number): Promise<number> {
  let fd: number;
  try {
    fd = openSync(controlPath, 'r+');
  } catch (err) {
    throw new DmError('unsupported', `cannot open ${controlPath}: ${(err as Error).message}`, { cause: err });
  }
  let inFlight: Promise<void> | undefined;
  try {
    for (;;) {
      await quick(fd, 'DEV_ARM_POLL', encodeRequest(HEADER_SIZE, {}));
      // On this descriptor, not through Control: a read each second is not a step to log or to crash at.
      const status = encodeRequest(HEADER_SIZE, { name });
      await quick(fd, 'DEV_STATUS', status, name);
      const now = decodeHeader(status).eventNr;
      if (now !== eventNr) return now;
      const left = ctx.deadline === undefined ? SLICE_MS : ctx.deadline - Date.now();
      if (ctx.signal?.aborted || left <= 0) throw new DmError('timeout', `waiting for an event on ${name}: ${ctx.signal?.aborted ? 'cancelled' : 'deadline passed'}`);
      try {
        await pollAsync(ctx, fd, POLLIN, Math.min(SLICE_MS, left), `poll ${controlPath}`);
      } catch (err) {
        if (err instanceof SysError && err.settled) inFlight = err.settled; // cancelled: the poll ends within its slice
        else if (!(err instanceof SysError && err.errno === 'EINTR')) throw classifyIoctlError(err, 'DEV_ARM_POLL', `poll ${controlPath}`);
      }
    }
  } finally {
    // The descriptor outlives a poll still running, or its number could be reused under it.
    if (inFlight) void inFlight.then(() => closeSync(fd));
    else closeSync(fd);
  }
}
