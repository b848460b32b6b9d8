// Where a batch of the scale phase spent its time: the CPU of the driver, of this client and of the
// whole guest, and the driver's own view (RPC and pool-message means). A concurrency that does not
// raise the rate is either waiting on something serialised (the message, with the CPUs idle) or
// out of CPU (the guest busy); these figures tell which.
import { readFileSync } from 'node:fs';
import { histDelta, parseHistogram, type Histogram } from './lib.ts';

/** Clock ticks per second of /proc's CPU times: USER_HZ, 100 on every Linux this bench meets. */
const HZ = 100;

interface Sample {
  at: number;
  driverMs: number;
  clientMs: number;
  guestBusyMs: number;
  guestAllMs: number;
  rpc: Histogram;
  msg: Histogram;
}

export interface BatchCpu {
  /** The driver process's CPU (user + system) per operation, ms. */
  driverCpuMs: number;
  /** This orchestrator's CPU per operation (its gRPC client), ms. */
  clientCpuMs: number;
  /** Share of all the guest's CPUs busy over the batch, 0-1 (1: every vCPU busy all along). */
  guestBusy: number;
  /** The driver's own mean of the RPC (its histogram), ms: the server's share of a call. */
  serverMs: number;
  /** The driver's mean pool message (create_thin, create_snap), ms: the part its lock serialises. */
  messageMs: number;
  /** Pool messages (stamps included) per operation. */
  messagesPerOp: number;
}

function procTicks(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(f[11]) + Number(f[12]); // utime, stime (fields 14 and 15)
}

function guestTicks(): { busy: number; all: number } {
  const cpu = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  const all = cpu.slice(0, 8).reduce((a, b) => a + b, 0); // user..steal; guest time is inside user
  return { busy: all - cpu[3]! - cpu[4]!, all }; // less idle and iowait
}

/** Sums every series of a histogram whose lines carry `label`. */
function summed(text: string, name: string, label: string): Histogram {
  const h = { buckets: [] as Array<[number, number]>, sum: 0, count: 0 };
  for (const line of text.split('\n')) {
    if (!line.includes(label)) continue;
    if (line.startsWith(`${name}_sum`)) h.sum += Number(line.split(/\s+/).pop());
    else if (line.startsWith(`${name}_count`)) h.count += Number(line.split(/\s+/).pop());
  }
  return h;
}

/** Samples before and after a batch; `method` is the RPC the batch makes. */
export class CpuMeter {
  private readonly pid: number;
  private readonly scrape: () => Promise<string>;
  constructor(pid: number, scrape: () => Promise<string>) {
    this.pid = pid;
    this.scrape = scrape;
  }

  async sample(method: string): Promise<Sample> {
    const text = await this.scrape();
    const c = process.cpuUsage();
    const g = guestTicks();
    return {
      at: performance.now(), driverMs: (procTicks(this.pid) * 1000) / HZ, clientMs: (c.user + c.system) / 1000,
      guestBusyMs: (g.busy * 1000) / HZ, guestAllMs: (g.all * 1000) / HZ,
      rpc: parseHistogram(text, 'dmthin_csi_rpc_duration_seconds', `method="${method}"`),
      msg: ['create_thin', 'create_snap', 'set_transaction_id'].map((op) => summed(text, 'dmthin_csi_dm_command_duration_seconds', `op="${op}"`))
        .reduce((a, b) => ({ buckets: [], sum: a.sum + b.sum, count: a.count + b.count })),
    };
  }

  static between(a: Sample, b: Sample, ops: number): BatchCpu {
    const rpc = histDelta(a.rpc, b.rpc);
    const msg = { sum: b.msg.sum - a.msg.sum, count: b.msg.count - a.msg.count };
    return {
      driverCpuMs: (b.driverMs - a.driverMs) / ops,
      clientCpuMs: (b.clientMs - a.clientMs) / ops,
      guestBusy: (b.guestBusyMs - a.guestBusyMs) / Math.max(1, b.guestAllMs - a.guestAllMs),
      serverMs: rpc.count > 0 ? (rpc.sum / rpc.count) * 1000 : NaN,
      messageMs: msg.count > 0 ? (msg.sum / msg.count) * 1000 : NaN,
      messagesPerOp: msg.count / ops,
    };
  }
}
