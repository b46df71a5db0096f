import dns from 'node:dns';
import net from 'node:net';
import { buildConnector } from './http-client.js';
import { UpdaterError } from '../../shared/errors.js';

// Where a package URL may lead. A /download names any URL, and the fetcher runs on the printer:
// without this, a caller could make it fetch from the printer itself (loopback), the LAN, a
// cloud metadata address (link-local), and learn about them from the errors. The check is made
// on the address actually connected to, for every connection, every redirect hop included:
// a name is resolved here and only an allowed address is handed to connect(), so a DNS answer
// that changes after a check (DNS rebinding) cannot lead anywhere else.

export interface UrlPolicy {
  /** Nets allowed whatever their kind ("127.0.0.0/8", "::1/128"). */
  allowedNets: string[];
  /** Private ranges (RFC 1918, CGNAT, IPv6 unique local): refused unless this is set. */
  allowPrivate: boolean;
}

type Kind = 'loopback' | 'link-local' | 'unspecified' | 'multicast' | 'broadcast' | 'private';
type Family = 'ipv4' | 'ipv6';

const ranges: Array<[Kind, string, number, Family]> = [
  ['loopback', '127.0.0.0', 8, 'ipv4'],
  ['loopback', '::1', 128, 'ipv6'],
  ['link-local', '169.254.0.0', 16, 'ipv4'],
  ['link-local', 'fe80::', 10, 'ipv6'],
  ['unspecified', '0.0.0.0', 8, 'ipv4'],
  ['unspecified', '::', 128, 'ipv6'],
  ['multicast', '224.0.0.0', 4, 'ipv4'],
  ['multicast', 'ff00::', 8, 'ipv6'],
  ['broadcast', '255.255.255.255', 32, 'ipv4'],
  ['private', '10.0.0.0', 8, 'ipv4'],
  ['private', '172.16.0.0', 12, 'ipv4'],
  ['private', '192.168.0.0', 16, 'ipv4'],
  ['private', '100.64.0.0', 10, 'ipv4'],
  ['private', 'fc00::', 7, 'ipv6'],
];

const familyOf = (address: string): Family => (net.isIPv6(address) ? 'ipv6' : 'ipv4');
/** "::ffff:127.0.0.1" (or "::ffff:7f00:1", as URL writes it) is 127.0.0.1 to the kernel, so to the policy too. */
function unmapped(address: string): string {
  const dotted = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (dotted) return dotted[1];
  const hex = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/i.exec(address);
  if (!hex) return address;
  const [high, low] = [parseInt(hex[1], 16), parseInt(hex[2], 16)];
  return [high >> 8, high & 255, low >> 8, low & 255].join('.');
}

export class AddressPolicy {
  private readonly kinds = new Map<Kind, net.BlockList>();
  private readonly allowed = new net.BlockList();

  constructor(private readonly policy: UrlPolicy) {
    for (const [kind, address, prefix, family] of ranges) {
      if (!this.kinds.has(kind)) this.kinds.set(kind, new net.BlockList());
      this.kinds.get(kind)!.addSubnet(address, prefix, family);
    }
    for (const cidr of policy.allowedNets) {
      const [address, prefix] = cidr.split('/');
      this.allowed.addSubnet(address, Number(prefix), familyOf(address));
    }
  }

  /** Why this address may not be connected to, or null when it may. */
  refusal(raw: string): string | null {
    const address = unmapped(raw);
    const family = familyOf(address);
    if (this.allowed.check(address, family)) return null;
    for (const [kind, list] of this.kinds) {
      if (!list.check(address, family)) continue;
      if (kind === 'private' && this.policy.allowPrivate) return null;
      return `${address} is a ${kind} address (allowed only by TOPE_ALLOWED_URL_NETS${kind === 'private' ? ' or TOPE_ALLOW_PRIVATE_URLS' : ''})`;
    }
    return null;
  }
}

const refused = (host: string, reason: string) =>
  new UpdaterError('DOWNLOAD_FAILED', `package URL refused: ${host}: ${reason}`);

/** A URL's host as an address or name: "[::1]" (as URL writes an IPv6 address) is ::1. */
const unbracketed = (hostname: string) => hostname.replace(/^\[(.*)\]$/, '$1');

/** An address written as a URL's host that the policy refuses: its error, else null. */
export function literalRefusal(policy: AddressPolicy, hostname: string): UpdaterError | null {
  const host = unbracketed(hostname);
  const reason = net.isIP(host) ? policy.refusal(host) : null;
  return reason ? refused(host, reason) : null;
}

type LookupAddress = { address: string; family: number };
export type Resolve = (hostname: string) => Promise<LookupAddress[]>;
const systemResolve: Resolve = (hostname) => dns.promises.lookup(hostname, { all: true, verbatim: true });

const LOCALHOST = /(^|\.)localhost$/i;
const LOOPBACK: LookupAddress[] = [
  { address: '127.0.0.1', family: 4 },
  { address: '::1', family: 6 },
];

/** `resolve(host)`'s answer, or null when it fails or takes longer than `withinMs`. */
async function lookupWithin(resolve: Resolve, host: string, withinMs: number): Promise<LookupAddress[] | null> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<null>((ok) => (timer = setTimeout(ok, withinMs, null)));
  return Promise.race([resolve(host).catch(() => null), late]).finally(() => clearTimeout(timer));
}

/**
 * A name the printer's resolver answers for, with no address the policy allows: its error. Null
 * when the name is allowed, is an address, or cannot be resolved within `withinMs` (the proxy's
 * resolver may know what the printer's does not). For a request the proxy connects for.
 */
export async function nameRefusal(
  policy: AddressPolicy,
  hostname: string,
  withinMs: number,
  resolve: Resolve = systemResolve,
): Promise<UpdaterError | null> {
  const host = unbracketed(hostname).replace(/(.)\.$/, '$1');
  if (net.isIP(host)) return null;
  // localhost and its subdomains are loopback whatever a resolver says (RFC 6761), and a proxy's
  // own resolver would take them to the proxy's loopback
  const addresses = LOCALHOST.test(host) ? LOOPBACK : await lookupWithin(resolve, host, withinMs);
  if (!addresses?.length || addresses.some((a) => !policy.refusal(a.address))) return null;
  return refused(host, policy.refusal(addresses[0].address)!);
}

/**
 * net.connect's `lookup`: resolves the name once, keeps only the allowed addresses, and fails
 * with the policy's reason when none is left. `resolve` is the system's resolver in production.
 */
export function checkedLookup(policy: AddressPolicy, resolve: Resolve = systemResolve) {
  return (hostname: string, options: { all?: boolean }, callback: (...args: unknown[]) => void): void => {
    resolve(hostname).then(
      (addresses) => {
        const allowed = addresses.filter((a) => !policy.refusal(a.address));
        if (allowed.length === 0) {
          const first = addresses[0];
          return callback(
            first ? refused(hostname, policy.refusal(first.address)!) : new Error(`${hostname} has no address`),
          );
        }
        if (options.all) callback(null, allowed);
        else callback(null, allowed[0].address, allowed[0].family);
      },
      (e: unknown) => callback(e),
    );
  };
}

/**
 * undici's `connect` for the fetcher's Agent: an address written in the URL is checked as it
 * is (connect() does no lookup for one), a name through checkedLookup.
 */
export function checkedConnector(
  policy: AddressPolicy,
  options: { timeout: number },
  resolve?: Resolve,
): buildConnector.connector {
  // allowH2: false, ALPN offers http/1.1 only (the fetcher's client carries no HTTP/2: http-client.ts)
  const connect = buildConnector({
    ...options,
    allowH2: false,
    lookup: checkedLookup(policy, resolve),
  } as buildConnector.BuildOptions);
  return (opts, callback) => {
    const refusal = literalRefusal(policy, opts.hostname);
    if (refusal) return callback(refusal, null);
    return connect(opts, callback);
  };
}
