// Runs in place of a unit's ExecStart (a drop-in keeps every other directive) and tries what
// the unit's sandbox should forbid. Prints one JSON object: for each attempt, "ok" or the error
// code it met. The same probe run outside any unit is the baseline that shows each attempt can
// succeed, so a directive that silently stopped working turns into a test failure.
import { existsSync, readFileSync, readdirSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';

const stateDir = process.env.PROBE_STATE_DIR ?? '/var/lib/tope-updater';
const targets = (process.env.PROBE_CONNECT ?? '').split(',').filter(Boolean);

function attempt(fn: () => unknown): string {
  try {
    fn();
    return 'ok';
  } catch (err) {
    // os.setPriority wraps its errno: ERR_SYSTEM_ERROR with the errno in info.code
    const e = err as NodeJS.ErrnoException & { info?: { code?: string } };
    return e.info?.code ?? e.code ?? String(err);
  }
}

function write(file: string): string {
  return attempt(() => {
    writeFileSync(file, 'probe');
    rmSync(file);
  });
}

function connect(target: string): Promise<string> {
  const [host, port] = target.split(':');
  return new Promise((resolve) => {
    let socket: net.Socket;
    try {
      socket = net.connect({ host, port: Number(port) });
    } catch (err) {
      resolve((err as NodeJS.ErrnoException).code ?? String(err));
      return;
    }
    // An IP firewall drops packets rather than refusing them: a SYN that never leaves ends in a timeout.
    socket.setTimeout(1500, () => {
      socket.destroy();
      resolve('TIMEOUT');
    });
    socket.on('connect', () => {
      socket.destroy();
      resolve('ok');
    });
    socket.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? String(err)));
  });
}

/**
 * Whether this Node's event loops set up io_uring (libuv opens one per loop: an
 * anon_inode:[io_uring] descriptor), or fell back to plain epoll because io_uring_setup failed
 * (a system-call filter, or kernel.io_uring_disabled).
 */
function ioUring(): string {
  const rings = readdirSync('/proc/self/fd').filter((fd) => {
    try {
      return readlinkSync(`/proc/self/fd/${fd}`) === 'anon_inode:[io_uring]';
    } catch {
      return false; // the directory's own descriptor, closed by now
    }
  });
  return rings.length > 0 ? 'set up' : 'none';
}

const status = readFileSync('/proc/self/status', 'utf8');
const field = (name: string) => new RegExp(`^${name}:\\s*(\\S+)`, 'm').exec(status)?.[1] ?? 'absent';

const result: Record<string, string> = {
  noNewPrivs: field('NoNewPrivs'),
  capEff: field('CapEff'),
  capBnd: field('CapBnd'),
  writeUsr: write('/usr/lib/tope-probe'),
  writeEtc: write('/etc/tope-probe'),
  writeOwnState: write(`${stateDir}/tope-probe`),
  seeHostTmp: existsSync('/tmp/tope-probe-host-marker') ? 'visible' : 'hidden',
  seeHome: attempt(() => readdirSync('/home')),
  seeTunDevice: existsSync('/dev/net/tun') ? 'visible' : 'hidden',
  seePid1: existsSync('/proc/1/cmdline') ? 'visible' : 'hidden',
  seeMeminfo: existsSync('/proc/meminfo') ? 'visible' : 'hidden',
  // os.setPriority is setpriority(2), in @resources; process.setuid to oneself is setuid(2), in @privileged.
  syscallResources: attempt(() => os.setPriority(0, 19)),
  syscallPrivileged: attempt(() => process.setuid!(process.getuid!())),
  ioUring: ioUring(),
};
for (const target of targets) result[`connect ${target}`] = await connect(target);
process.stdout.write(`${JSON.stringify(result)}\n`);
