import { workers, type WorkerName } from '../../shared/workers.js';
import { DeviceApi } from '../../test/helpers/device-api.js';
import { mainOf, Service, socketActivation, unitEnvironment, unitNice } from '../../test/helpers/services.js';
import { BenchDevice } from './bench-device.js';
import { UNIT_PREFIX } from './packages.js';

// Ours as a printer runs it, for the benches that measure it so (the budget's deployed sum, the
// peers' "as deployed" column): the gateway up, a device-api answering the reports (a worker
// ends only once its last report is answered), and each worker behind its command socket as its
// .socket unit starts it.

type Command = { file: string; args: string[] };

/** A device with the gateway up and a device-api of its own; `stop` ends both. */
export async function deployedDevice(): Promise<{ device: BenchDevice; stop: () => Promise<void> }> {
  const deviceApi = await new DeviceApi().start();
  const device = new BenchDevice({ TOPE_DEVICE_API_URL: deviceApi.url });
  const stop = async () => {
    await device.dispose();
    await deviceApi.stop();
  };
  try {
    await device.start('api-gateway');
    await device.unitsRunning(1, UNIT_PREFIX);
  } catch (e) {
    await stop();
    throw e;
  }
  return { device, stop };
}

/**
 * `worker` as its .socket unit starts it: systemd-socket-activate holds its command socket and
 * execs it (at its unit's Nice= and Environment=) at the first connection; once it ends, nothing
 * starts it again, which a whole update does not need. `wrap`: a command to run the activator
 * under (the peers' reap.py).
 */
export function activatedWorker(
  worker: WorkerName,
  env: Record<string, string>,
  wrap: (activator: Command) => Command = (activator) => activator,
): Service {
  const socket = env[workers[worker].socketSetting]!;
  const activator = socketActivation(socket, { ...env, ...unitEnvironment(worker) }, [
    process.execPath,
    mainOf(worker),
  ]);
  return new Service(worker, {}, wrap(activator), unitNice(worker));
}
