import { randomUUID } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { DurableJson } from '../../shared/durable-store.js';
import { runWorker } from '../../shared/worker-main.js';
import { fetcherRecordSchema, PACKAGES_DIR } from '../../shared/worker-records.js';
import { trustSettings } from '../../shared/trust/package-trust.js';
import { SecurityFloor } from '../../shared/trust/security-floor.js';
import { workers } from '../../shared/workers.js';
import { tuneEngine } from './engine-flags.js';
import { Fetcher } from './fetcher.js';
import { httpAgent } from './http-client.js';
import { AddressPolicy, checkedConnector } from './url-policy.js';

tuneEngine();
await runWorker('fetcher', async ({ config, log, stateDir, recordPath, publisher, notify, superseded }) => {
  const packagesDir = path.join(stateDir, PACKAGES_DIR);
  await fsp.mkdir(packagesDir, { recursive: true, mode: 0o750 });
  // Unreadable, every start counts as a reboot: only checkpointed bytes are trusted (the safe side).
  const bootId = await fsp.readFile(config.TOPE_BOOT_ID_FILE, 'utf8').then(
    (s) => s.trim(),
    (e: Error) => {
      log.warn({ err: e.message }, 'boot id unreadable; resuming from checkpoints only');
      return `unknown-${randomUUID()}`;
    },
  );
  const urlPolicy = new AddressPolicy({
    allowedNets: config.TOPE_ALLOWED_URL_NETS,
    allowPrivate: config.TOPE_ALLOW_PRIVATE_URLS,
  });
  const connect = checkedConnector(urlPolicy, { timeout: config.TOPE_HTTP_TIMEOUT_MS });
  const proxy = { httpsProxy: config.HTTPS_PROXY, httpProxy: config.HTTP_PROXY, noProxy: config.NO_PROXY ?? '' };
  const dispatcher =
    proxy.httpsProxy || proxy.httpProxy
      ? (await import('./proxy.js')).proxiedAgent(proxy, urlPolicy, connect, config.TOPE_HTTP_TIMEOUT_MS, log)
      : httpAgent(connect, config.TOPE_HTTP_TIMEOUT_MS);
  // the security floor is the installer's (it raises it after a probation); the fetcher only reads it
  const floor = new SecurityFloor(workers.installer.stateDir(config));
  const fetcher = new Fetcher({
    config,
    log,
    packagesDir,
    dispatcher,
    notify,
    trust: trustSettings(config, () => floor.current(), log),
    store: new DurableJson(recordPath, fetcherRecordSchema),
    publisher,
    superseded,
    bootId: () => bootId,
  });
  return {
    recover: () => fetcher.recover(),
    stage: () => fetcher.current.status.stage,
    handle: (command) => fetcher.handle(command),
    stop: () => fetcher.stop(), // the download resumes at the next start
    busy: () => fetcher.busy,
    settled: () => fetcher.settled(),
    holdsChildren: () => false,
  };
});
