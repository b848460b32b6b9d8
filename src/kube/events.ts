import { randomBytes } from 'node:crypto';
import type { CoreV1Api } from '@kubernetes/client-node';
import type { Logger } from '../observability/log.ts';
import { API_VERSION, EVENT_NAMESPACE } from './types.ts';

export interface Involved { kind: string; name: string; uid?: string }

/**
 * Events on our custom resources, so `kubectl describe thinvolume X` says what failed and
 * what was repaired. Best effort: an Event that cannot be written is logged, never fatal.
 */
export class EventRecorder {
  private readonly core: CoreV1Api | undefined;
  private readonly component: string;
  private readonly host: string;
  private readonly log: Logger;
  /** What was emitted, newest last (bounded): tests and debugging read it. */
  readonly recent: Array<{ type: string; reason: string; name: string; message: string }> = [];

  constructor(core: CoreV1Api | undefined, component: string, host: string, log: Logger) {
    this.core = core;
    this.component = component;
    this.host = host;
    this.log = log;
  }

  normal(obj: Involved, reason: string, message: string): void { this.emit('Normal', obj, reason, message); }
  warning(obj: Involved, reason: string, message: string): void { this.emit('Warning', obj, reason, message); }

  private emit(type: 'Normal' | 'Warning', obj: Involved, reason: string, message: string): void {
    this.recent.push({ type, reason, name: obj.name, message });
    if (this.recent.length > 200) this.recent.shift();
    if (!this.core) return;
    const now = new Date();
    const body = {
      metadata: { name: `${obj.name}.${now.getTime().toString(16)}${randomBytes(3).toString('hex')}`, namespace: EVENT_NAMESPACE },
      involvedObject: { apiVersion: API_VERSION, kind: obj.kind, name: obj.name, uid: obj.uid },
      reason, message: message.slice(0, 1024), type,
      source: { component: this.component, host: this.host },
      reportingComponent: this.component, reportingInstance: this.host,
      firstTimestamp: now, lastTimestamp: now, count: 1,
    };
    this.core.createNamespacedEvent({ namespace: EVENT_NAMESPACE, body }).catch((err: unknown) => {
      this.log.warn('could not record event', { reason, object: obj.name, error: String(err) });
    });
  }
}
