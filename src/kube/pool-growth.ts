import type { GrowOutcome, PoolGrower } from '../pool/grow.ts';
import type { EventRecorder } from './events.ts';
import { GROW_TO_ANNOTATION, KIND, type ThinPoolCr } from './types.ts';

const UNITS: Readonly<Record<string, number>> = { '': 1, k: 1e3, m: 1e6, g: 1e9, t: 1e12, ki: 2 ** 10, mi: 2 ** 20, gi: 2 ** 30, ti: 2 ** 40 };

/** A Kubernetes quantity of bytes ("300Gi", "1T", "5368709120"); undefined when it is not one. */
export function quantityBytes(text: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)([kKMGT]i?)?$/.exec(text.trim());
  const unit = m ? UNITS[(m[2] ?? '').toLowerCase()] : undefined;
  if (!m || unit === undefined) return undefined;
  const n = Math.floor(Number(m[1]) * unit);
  return Number.isSafeInteger(n) && n > 0 ? n : undefined;
}

/**
 * The ThinPool side of growth: the grow-to annotation asks for a size (the node agent reads
 * it at each reconcile), each outcome becomes an Event on the ThinPool, and a growth has the
 * ThinPool's status written again.
 */
export function wireGrowth(grower: PoolGrower, events: EventRecorder, node: string, poolChanged: () => void): (cr: ThinPoolCr) => void {
  const who = { kind: KIND.pool, name: node };
  let badValue: string | undefined;
  grower.onOutcome = (o: GrowOutcome) => {
    if (o.kind === 'grown') {
      events.normal(who, 'PoolGrown', `pool ${grower.pool} grew from ${o.fromBytes} to ${o.toBytes} bytes (${o.reason.replace('_', ' ')})`);
      poolChanged();
    } else if (o.kind === 'refused') {
      events.warning(who, 'PoolGrowthRefused', `pool ${grower.pool} not grown to ${o.wantedBytes} bytes: ${o.message}`);
    } else {
      events.warning(who, 'PoolGrowthFailed', `pool ${grower.pool}: ${o.message}`);
    }
  };
  return (cr) => {
    const text = cr.metadata.annotations?.[GROW_TO_ANNOTATION];
    const bytes = text === undefined ? undefined : quantityBytes(text);
    if (text !== undefined && bytes === undefined && badValue !== text) {
      events.warning(who, 'PoolGrowthRefused', `annotation ${GROW_TO_ANNOTATION}="${text}" is not a size (examples: 300Gi, 1Ti)`);
    }
    badValue = bytes === undefined ? text : undefined;
    grower.request(bytes);
  };
}
