/** Delay before retry number `attempt` (1-based): base, 2*base, 4*base, ... with +-20 % jitter. */
export function backoffDelay(attempt: number, baseMs: number, random: () => number = Math.random): number {
  const nominal = baseMs * 2 ** (attempt - 1);
  return Math.round(nominal * (0.8 + 0.4 * random()));
}

/** Resolves after `ms`, or rejects with the signal's reason when it aborts first. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
