import { ArmedFaults } from '../armed.ts';
import type { DeviceMapper } from '../../../src/devmapper/types.ts';

export type FakeDmOp = Exclude<keyof DeviceMapper, 'devicePath'> | 'write';

/** One recorded call: the method and its string arguments (options rendered as dmsetup flags). */
export interface DmCall { op: FakeDmOp; args: string[] }

export interface DmFault {
  op: FakeDmOp;
  /** Tested against the call's args joined by spaces, e.g. /create_snap/ or /^pool create_thin 7$/. */
  match?: RegExp;
  /** 'after': the operation takes effect and then the error is thrown (a crash after the ioctl). */
  when?: 'before' | 'after';
  error: Error;
  /** How many matching calls fail; default 1. */
  times?: number;
}

/** Failures a test has asked for, each taken by the next matching call(s). */
export class FaultPlan {
  readonly #armed = new ArmedFaults<DmFault>();

  inject(fault: DmFault): void { this.#armed.arm(fault); }

  clear(): void { this.#armed.clear(); }

  take(op: FakeDmOp, args: string[]): DmFault | undefined {
    const joined = args.join(' ');
    return this.#armed.take((f) => f.op === op && (f.match === undefined || f.match.test(joined)));
  }
}
