import { promises as fsp } from 'node:fs';
import type net from 'node:net';
import path from 'node:path';

const SD_LISTEN_FDS_START = 3;

/** True when systemd (or systemd-socket-activate) handed this process its listening socket. */
export const hasInheritedSocket = (env = process.env): boolean =>
  env.LISTEN_PID === String(process.pid) && Number(env.LISTEN_FDS) >= 1;

type Fallback = { host: string; port: number } | { socketPath: string; mode: number };

/** Listens on the inherited fd 3 under socket activation, otherwise on the fallback address. */
export async function listen(server: net.Server, fallback: Fallback): Promise<string> {
  if (hasInheritedSocket()) {
    await new Promise<void>((ok, fail) => server.once('error', fail).listen({ fd: SD_LISTEN_FDS_START }, ok));
    return `inherited fd ${SD_LISTEN_FDS_START}`;
  }
  if ('socketPath' in fallback) {
    await fsp.mkdir(path.dirname(fallback.socketPath), { recursive: true });
    await fsp.rm(fallback.socketPath, { force: true }); // a stale socket from a killed process
    await new Promise<void>((ok, fail) => server.once('error', fail).listen(fallback.socketPath, ok));
    await fsp.chmod(fallback.socketPath, fallback.mode);
    return fallback.socketPath;
  }
  await new Promise<void>((ok, fail) => server.once('error', fail).listen(fallback.port, fallback.host, ok));
  return `${fallback.host}:${fallback.port}`;
}
