import { BlockList, isIP } from 'node:net';
import Dispatcher from 'undici/lib/dispatcher/dispatcher.js';
import EnvHttpProxyAgent from 'undici/lib/dispatcher/env-http-proxy-agent.js';
import Pool from 'undici/lib/dispatcher/pool.js';
import connect from 'undici/lib/api/api-connect.js';
import { withoutPassword } from '../../shared/config.js';
import type { UpdaterError } from '../../shared/errors.js';
import type { Logger } from '../../shared/log.js';
import { httpAgent, screenRequests, type buildConnector, type Dispatcher as DispatcherType } from './http-client.js';
import { literalRefusal, nameRefusal, type AddressPolicy, type Resolve } from './url-policy.js';

// Downloads through the proxy that HTTPS_PROXY, HTTP_PROXY and NO_PROXY name (shared/config.ts):
// undici's EnvHttpProxyAgent, which tunnels an https:// URL through CONNECT and forwards an
// http:// one in absolute form. Run only where a proxy is set (main.ts imports this module then);
// its source is in every fetcher's bundle, less undici's SOCKS agent (scripts/bundle-plugins.ts).

// undici's index.js installs its request API on every dispatcher; the fetcher does not load that
// file (http-client.ts), and ProxyAgent opens its tunnels with `connect`
(Dispatcher.prototype as { connect?: unknown }).connect ??= connect;

export interface ProxySettings {
  httpsProxy: string | undefined;
  httpProxy: string | undefined;
  noProxy: string;
}

/** How long the screen waits for the printer's own resolver before leaving a name to the proxy. */
const SCREEN_LOOKUP_MS = 2000;
const SCREENED_HOSTS_MAX = 64;

/**
 * The fetcher's dispatcher when a proxy is set. A host in NO_PROXY is reached directly through
 * `direct`, the address policy's connector, as without a proxy. Through the proxy, the proxy
 * resolves names and connects, so the policy is applied before each request, as far as the
 * printer can see: an address written in the URL is checked as it is, and a name is resolved by
 * the printer's own resolver: refused when every address it gives is refused (`localhost`, a name
 * pointing at 169.254.169.254), left to the proxy when the printer cannot resolve it (a network
 * where only the proxy reaches the outside), within SCREEN_LOOKUP_MS. Advice, not a guarantee:
 * the proxy resolves the name again, and may get another answer.
 */
export function proxiedAgent(
  proxy: ProxySettings,
  policy: AddressPolicy,
  direct: buildConnector.connector,
  timeoutMs: number,
  log: Logger,
  resolve?: Resolve,
): DispatcherType {
  log.info({ proxy: describeProxy(proxy) }, 'downloads go through a proxy');
  const timeouts = { headersTimeout: timeoutMs, bodyTimeout: timeoutMs };
  const withTimeouts = (origin: string | URL, options: object) => new Pool(origin, { ...timeouts, ...options });
  const { hosts, nets } = splitNoProxy(proxy.noProxy);
  const proxied = new EnvHttpProxyAgent({
    // '' rather than undefined: undici would read process.env itself, and the config is the word
    httpsProxy: proxy.httpsProxy ?? '',
    httpProxy: proxy.httpProxy ?? '',
    noProxy: hosts,
    connect: direct,
    connectTimeout: timeoutMs,
    allowH2: false,
    ...timeouts,
    // the download's timeouts on every pool: toward the origins (tunnelled), toward the proxy for
    // a forwarded http:// URL (factory), and the one its CONNECTs go through (clientFactory),
    // whose answer would otherwise be waited for up to undici's 300 s
    factory: withTimeouts,
    clientFactory: withTimeouts,
  });
  // undici matches NO_PROXY's names only: an address in one of its nets goes the direct way here
  const agent = nets ? proxied.compose(directInNets(nets, httpAgent(direct, timeoutMs))) : proxied;
  // one screen per host and process (a fetcher process lives for a download or two): a resolver
  // that drops queries costs its SCREEN_LOOKUP_MS once, not at every attempt and redirect
  const screened = new Map<string, Promise<UpdaterError | null>>();
  return screenRequests(agent, async (url) => {
    const literal = literalRefusal(policy, url.hostname);
    if (literal) throw literal;
    if (screened.size >= SCREENED_HOSTS_MAX) screened.clear();
    let verdict = screened.get(url.hostname);
    if (!verdict) {
      verdict = nameRefusal(policy, url.hostname, SCREEN_LOOKUP_MS, resolve);
      screened.set(url.hostname, verdict);
    }
    const refusal = await verdict;
    if (refusal) throw refusal;
  });
}

/** NO_PROXY's nets, one list per address family: an address is checked against its own family's only. */
export interface NoProxyNets {
  ipv4: BlockList;
  ipv6: BlockList;
}

/**
 * NO_PROXY split into what undici's EnvHttpProxyAgent matches (names, `.domain`, `*`, with an
 * optional port) and the nets it does not: `10.0.0.0/8`, `fd00::/8`, as curl reads them (since
 * 7.86). A net matches an address written in the URL, not the addresses a name resolves to, and
 * only an address of its own family (node's BlockList would match `[::ffff:10.0.0.1]` against
 * `10.0.0.0/8`; curl does not). An entry that is not a net stays a name, which matches nothing.
 */
export function splitNoProxy(noProxy: string): { hosts: string; nets: NoProxyNets | null } {
  const hosts: string[] = [];
  let nets: NoProxyNets | null = null;
  for (const entry of noProxy.split(/[,\s]/).filter(Boolean)) {
    const cidr = /^\[?([0-9a-fA-F.:]+)\]?\/(\d{1,3})$/.exec(entry);
    const family = cidr ? isIP(cidr[1]) : 0;
    const prefix = Number(cidr?.[2]);
    if (!cidr || !family || prefix > (family === 4 ? 32 : 128)) {
      hosts.push(entry);
      continue;
    }
    nets ??= { ipv4: new BlockList(), ipv6: new BlockList() };
    try {
      if (family === 4) nets.ipv4.addSubnet(cidr[1], prefix, 'ipv4');
      else nets.ipv6.addSubnet(cidr[1], prefix, 'ipv6');
    } catch {
      hosts.push(entry); // not one BlockList takes: a name, as any other entry it cannot read
    }
  }
  return { hosts: hosts.join(','), nets };
}

/** An interceptor sending a request whose URL names an address in `nets` through `direct`. */
export function directInNets(nets: NoProxyNets, direct: DispatcherType): DispatcherType.DispatcherComposeInterceptor {
  return (dispatch) => (options, handler) => {
    const host = new URL(String(options.origin)).hostname.replace(/^\[(.*)\]$/, '$1');
    const family = isIP(host);
    const inNets = family === 4 ? nets.ipv4.check(host, 'ipv4') : family === 6 && nets.ipv6.check(host, 'ipv6');
    return inNets ? direct.dispatch(options, handler) : dispatch(options, handler);
  };
}

/** For the log: which proxy each scheme goes through, without a password. */
function describeProxy(proxy: ProxySettings): Record<string, string> {
  const https = proxy.httpsProxy ?? proxy.httpProxy;
  return {
    ...(https ? { https: withoutPassword(https) } : {}),
    ...(proxy.httpProxy ? { http: withoutPassword(proxy.httpProxy) } : {}),
    ...(proxy.noProxy ? { direct: proxy.noProxy } : {}),
  };
}
