/**
 * Faults a test has armed on a fake, each disarming itself after `times` matching calls
 * (default 1; Infinity for always). The fakes decide what matches and what a fault does.
 */
export class ArmedFaults<F extends { times?: number }> {
  readonly #armed: Array<{ fault: F; left: number }> = [];

  arm(fault: F): void {
    this.#armed.push({ fault, left: fault.times ?? 1 });
  }

  /** The first armed fault `matches` accepts, counted as used once; undefined when none does. */
  take(matches: (fault: F) => boolean): F | undefined {
    const i = this.#armed.findIndex((a) => matches(a.fault));
    if (i < 0) return undefined;
    const armed = this.#armed[i]!;
    if (--armed.left <= 0) this.#armed.splice(i, 1);
    return armed.fault;
  }

  clear(): void { this.#armed.length = 0; }
}
