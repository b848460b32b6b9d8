import { backoff } from '../system/delay.ts';

export interface QueueOptions {
  retryBaseMs: number;
  retryMaxMs: number;
  onError: (key: string, err: unknown, attempt: number) => void;
}

/**
 * Per-object work queue with one worker: a key already waiting is not added twice (repeated
 * watch events collapse), a key that changes while it is being handled is queued again (one
 * worker, so never concurrently), and a failed key comes back after capped exponential backoff.
 */
export class WorkQueue {
  private readonly handler: (key: string) => Promise<void>;
  private readonly opts: QueueOptions;
  private readonly waiting: string[] = [];
  private readonly queued = new Set<string>();
  private readonly failures = new Map<string, number>();
  private readonly timers = new Map<string, NodeJS.Timeout>();
  private running = false;
  private stopped = false;
  private paused = false;
  private idleWaiters: Array<() => void> = [];

  constructor(handler: (key: string) => Promise<void>, opts: QueueOptions) {
    this.handler = handler;
    this.opts = opts;
  }

  add(key: string): void {
    if (this.stopped) return;
    if (this.queued.has(key)) return;
    const t = this.timers.get(key);
    if (t) { clearTimeout(t); this.timers.delete(key); }
    this.queued.add(key);
    this.waiting.push(key);
    void this.drain();
  }

  /** Keys are still collected, but none runs until resume(). */
  pause(): void { this.paused = true; }

  resume(): void {
    this.paused = false;
    void this.drain();
  }

  private async drain(): Promise<void> {
    if (this.running || this.paused) return;
    this.running = true;
    try {
      while (!this.stopped && !this.paused && this.waiting.length > 0) {
        const key = this.waiting.shift()!;
        this.queued.delete(key);
        await this.runOne(key);
      }
    } finally {
      this.running = false;
      if (this.waiting.length === 0) for (const w of this.idleWaiters.splice(0)) w();
    }
  }

  private async runOne(key: string): Promise<void> {
    try {
      await this.handler(key);
      this.failures.delete(key);
    } catch (err) {
      const attempt = (this.failures.get(key) ?? 0) + 1;
      this.failures.set(key, attempt);
      this.opts.onError(key, err, attempt);
      if (this.stopped) return;
      const t = setTimeout(() => { this.timers.delete(key); this.add(key); }, backoff(attempt - 1, this.opts.retryBaseMs, this.opts.retryMaxMs));
      t.unref();
      this.timers.set(key, t);
    }
  }

  /** Keys waiting for a retry after a failure. */
  get retrying(): string[] { return [...this.timers.keys()]; }

  /** Resolves when nothing is waiting or running (retries scheduled for later do not count). */
  idle(): Promise<void> {
    if (!this.running && this.waiting.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** Takes no more work; resolves once the key being handled (if any) is done. */
  async stop(): Promise<void> {
    this.stopped = true;
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
    this.waiting.length = 0;
    this.queued.clear();
    if (this.running) await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
  }
}
