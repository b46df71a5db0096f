import net from 'node:net';

/**
 * A TCP relay in front of an origin that cuts a connection the way a real network does: after a
 * given number of bytes towards the client, a reset (RST, a dropped Wi-Fi or a NAT timeout) or a
 * FIN (a middlebox closing cleanly mid-body). TLS passes through untouched, so it cuts HTTPS too.
 */
export class CuttingProxy {
  /** Connections relayed so far. */
  connections = 0;
  /** Cuts for the next connections, in order; a connection with none is relayed whole. */
  private readonly cuts: Array<{ afterBytes: number; how: 'reset' | 'fin'; onCut?: () => void }> = [];
  private readonly sockets = new Set<net.Socket>();
  private server!: net.Server;

  constructor(private readonly upstreamPort: number) {}

  get port(): number {
    return (this.server.address() as net.AddressInfo).port;
  }

  /** `onCut` runs as the cut is made, before the client can see it (and so ask again). */
  cutNext(afterBytes: number, how: 'reset' | 'fin', onCut?: () => void): void {
    this.cuts.push({ afterBytes, how, onCut });
  }

  async start(): Promise<this> {
    this.server = net.createServer((client) => this.relay(client));
    await new Promise<void>((ok) => this.server.listen(0, '127.0.0.1', ok));
    return this;
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise((ok) => this.server.close(ok));
  }

  private relay(client: net.Socket): void {
    this.connections++;
    const cut = this.cuts.shift();
    const upstream = net.connect(this.upstreamPort, '127.0.0.1');
    for (const s of [client, upstream]) {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
      s.on('error', () => {
        client.destroy();
        upstream.destroy();
      });
    }
    client.pipe(upstream);
    let sent = 0;
    upstream.on('data', (chunk: Buffer) => {
      if (!cut || sent + chunk.length < cut.afterBytes) {
        sent += chunk.length;
        if (!client.write(chunk)) upstream.pause();
        return;
      }
      upstream.destroy();
      cut.onCut?.();
      const last = chunk.subarray(0, cut.afterBytes - sent);
      if (cut.how === 'fin') client.end(last);
      else client.write(last, () => client.resetAndDestroy());
    });
    client.on('drain', () => upstream.resume());
    upstream.on('end', () => client.end());
  }
}
