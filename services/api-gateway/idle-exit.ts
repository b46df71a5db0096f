import type { Server } from 'node:http';

/**
 * Under socket activation the gateway need not stay up: after `idleMs` with no request in
 * flight or arriving, and no work running, it closes. systemd keeps the socket and starts it
 * again on the next connection; the state lives in the workers' files, so nothing is lost.
 */
export function exitWhenIdle(server: Server, idleMs: number, workRunning: () => Promise<boolean>, onIdle: () => void): void {
  if (idleMs <= 0) return;
  let inFlight = 0;
  let timer: NodeJS.Timeout | null = null;
  const arm = () => {
    if (timer) clearTimeout(timer);
    timer = setTimeout(check, idleMs);
  };
  const check = async () => {
    timer = null;
    if (inFlight > 0) return;
    if (await workRunning().catch(() => true)) return arm();
    if (inFlight === 0 && !timer) onIdle();
  };
  server.on('request', (_req, res) => {
    inFlight++;
    if (timer) clearTimeout(timer);
    timer = null;
    res.on('close', () => {
      if (--inFlight === 0) arm();
    });
  });
  arm();
}
