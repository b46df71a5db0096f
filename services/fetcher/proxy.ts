import Dispatcher from 'undici/lib/dispatcher/dispatcher.js';
import EnvHttpProxyAgent from 'undici/lib/dispatcher/env-http-proxy-agent.js';
import Pool from 'undici/lib/dispatcher/pool.js';
import connect from 'undici/lib/api/api-connect.js';
import { withoutPassword } from '../../shared/config.js';
import type { Logger } from '../../shared/log.js';
import type { buildConnector, Dispatcher as DispatcherType } from './http-client.js';
import { literalRefusal, type AddressPolicy } from './url-policy.js';

// Downloads through the proxy that HTTPS_PROXY, HTTP_PROXY and NO_PROXY name (shared/config.ts),
// as the Python updater's httpx made them: undici's EnvHttpProxyAgent, which tunnels an https://
// URL through CONNECT and forwards an http:// one in absolute form. Loaded only where a proxy is
// set (main.ts imports this module then): its code stays out of every other fetcher's memory.

// undici's index.js installs its request API on every dispatcher; the fetcher does not load that
// file (http-client.ts), and ProxyAgent opens its tunnels with `connect`
(Dispatcher.prototype as { connect?: unknown }).connect ??= connect;

export interface ProxySettings {
  httpsProxy: string | undefined;
  httpProxy: string | undefined;
  noProxy: string;
}

/**
 * The fetcher's dispatcher when a proxy is set. A host in NO_PROXY is reached directly through
 * `connect`, the address policy's connector, as without a proxy. Through the proxy, the proxy
 * resolves names and connects: the policy can check only an address written in the URL, which it
 * does before anything is sent (a URL naming 169.254.169.254 is refused with or without a proxy).
 */
export function proxiedAgent(
  proxy: ProxySettings,
  policy: AddressPolicy,
  direct: buildConnector.connector,
  timeoutMs: number,
  log: Logger,
): DispatcherType {
  log.info({ proxy: describeProxy(proxy) }, 'downloads go through a proxy');
  const timeouts = { headersTimeout: timeoutMs, bodyTimeout: timeoutMs };
  const agent = new EnvHttpProxyAgent({
    // '' rather than undefined: undici would read process.env itself, and the config is the word
    httpsProxy: proxy.httpsProxy ?? '',
    httpProxy: proxy.httpProxy ?? '',
    noProxy: proxy.noProxy,
    connect: direct,
    connectTimeout: timeoutMs,
    allowH2: false,
    ...timeouts,
    // the pools toward the proxy (an http:// URL forwarded) get the download's timeouts too
    factory: (origin: string | URL, options: object) => new Pool(origin, { ...timeouts, ...options }),
  });
  const dispatch = agent.dispatch.bind(agent);
  agent.dispatch = (options, handler) => {
    const refusal = literalRefusal(policy, new URL(String(options.origin)).hostname);
    if (refusal) throw refusal;
    return dispatch(options, handler);
  };
  return agent;
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
