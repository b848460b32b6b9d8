/** A FIFO async mutex: work queued behind it runs one at a time, in order. */
export class Mutex {
  private tail: Promise<void> = Promise.resolve();
  private held = 0;

  get locked(): boolean { return this.held > 0; }

  async run<T>(fn: () => Promise<T>): Promise<T> {
    const previous = this.tail;
    let release!: () => void;
    this.tail = new Promise<void>((resolve) => { release = resolve; });
    this.held++;
    try {
      await previous;
      return await fn();
    } finally {
      this.held--;
      release();
    }
  }
}

/**
 * One mutex per key, pruned as soon as a key has no queued work, so a long-lived
 * process does not accumulate an entry for every volume it ever saw.
 */
export class KeyedMutex {
  private readonly locks = new Map<string, Mutex>();

  get size(): number { return this.locks.size; }

  async run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    let lock = this.locks.get(key);
    if (!lock) {
      lock = new Mutex();
      this.locks.set(key, lock);
    }
    try {
      return await lock.run(fn);
    } finally {
      if (!lock.locked && this.locks.get(key) === lock) this.locks.delete(key);
    }
  }

  /** Runs fn holding the key if nobody holds it now; resolves false, without running fn, if someone does. */
  async tryRun(key: string, fn: () => Promise<void>): Promise<boolean> {
    if (this.locks.get(key)?.locked) return false;
    await this.run(key, fn);
    return true;
  }

  /** Runs fn holding every key (sorted, so two callers cannot deadlock). */
  async runAll<T>(keys: readonly string[], fn: () => Promise<T>): Promise<T> {
    const sorted = [...new Set(keys)].sort();
    const step = (i: number): Promise<T> => (i === sorted.length ? fn() : this.run(sorted[i]!, () => step(i + 1)));
    return step(0);
  }

  /** Resolves once no key has queued work, including work queued while waiting. */
  async idle(): Promise<void> {
    while (this.locks.size > 0) {
      await Promise.all([...this.locks.keys()].map((k) => this.run(k, async () => undefined)));
    }
  }
}

/** At most `limit` holders at once; the rest wait, first come first served. */
export class Semaphore {
  private readonly limit: number;
  private active = 0;
  private readonly waiters: Array<() => void> = [];

  constructor(limit: number) {
    this.limit = Math.max(1, limit);
  }

  get inFlight(): number { return this.active; }
  get waiting(): number { return this.waiters.length; }

  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.active < this.limit) this.active++;
    else await new Promise<void>((resolve) => this.waiters.push(resolve)); // the releaser hands its slot over
    try {
      return await fn();
    } finally {
      const next = this.waiters.shift();
      if (next) next();
      else this.active--;
    }
  }
}
