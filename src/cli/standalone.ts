import { join } from 'node:path';
import { realDeviceMapper } from '../devmapper/choose.ts';
import { type DeviceMapper, isDmError } from '../devmapper/types.ts';
import { loadCsi } from '../csi/proto.ts';
import { createDriver, serveDriver } from '../driver.ts';
import { LosetupLoopDevices } from '../mount/loop.ts';
import { realMounter } from '../mount/choose.ts';
import { createLogger, logCommands } from '../observability/log.ts';
import { Metrics } from '../observability/metrics.ts';
import { FileStore } from '../state/file.ts';
import { background } from '../system/context.ts';
import type { DriverConfig } from './config.ts';
import { warnDeprecated } from './options.ts';

export class FatalError extends Error {}

const NO_DM_HELP = `device-mapper with the thin-pool target is not available on this kernel.
  - On a normal Linux host: modprobe dm-thin-pool (package: the kernel's own modules), then start again.
  - On a machine whose kernel has no device-mapper at all (such as this project's CI hosts), run the
    driver inside the test VM, which boots a Debian kernel that has it:
      test/vm/run-in-vm.sh -- npm start`;

/** Fails early, and says how to fix it, when the kernel cannot run the driver. */
export async function checkKernel(dm: DeviceMapper): Promise<void> {
  try {
    // One call: it fails as 'unsupported' when the kernel has no device-mapper at all.
    const targets = await dm.targets(background);
    if (!targets.includes('thin-pool')) throw new FatalError(`the dm-thin-pool target is not loaded.\n${NO_DM_HELP}`);
  } catch (err) {
    if (err instanceof FatalError) throw err;
    if (isDmError(err, 'unsupported')) throw new FatalError(`${err.message}\n${NO_DM_HELP}`);
    throw err;
  }
}

/** Controller and node in one process, records in an embedded store, a loop-file pool by default. */
export async function runStandalone(cfg: DriverConfig): Promise<() => Promise<void>> {
  const log = createLogger({ level: cfg.logLevel });
  warnDeprecated(log, cfg.deprecations ?? []);
  logCommands(log);
  const metrics = new Metrics({ processMetrics: true });
  const dm = realDeviceMapper(cfg.dmInterface);
  await checkKernel(dm);
  const store = await FileStore.open(join(cfg.stateDir, 'store'));
  const parts = { dm, mounter: realMounter(cfg.mountInterface), loops: new LosetupLoopDevices(), store, groups: store, log, metrics };
  const starting = createDriver(background, cfg, parts);
  loadCsi(); // builds the CSI codecs while the start's commands run, not after them
  const driver = await starting;
  const running = await serveDriver(cfg, driver, log);
  return async () => {
    await new Promise<void>((resolve) => running.grpc.tryShutdown(() => resolve()));
    await running.stopChecks(); // a check in progress is bounded by its commands' own timeouts
    await running.driver.pool.settled(); // the last changes' transaction stamp, so a start finds the ids equal
    running.http.stop();
    await store.close();
    log.info('stopped');
  };
}
