import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { REPORT_PATH } from '../../shared/device-api.js';
import type { Status } from '../../shared/status.js';

/** A real device-api stand-in on loopback that records every report; it can be made to hang. */
export class DeviceApi {
  readonly reports: Status[] = [];
  hang = false;
  private server!: http.Server;
  private readonly held: http.ServerResponse[] = [];

  get url(): string {
    const { port } = this.server.address() as AddressInfo;
    return `http://127.0.0.1:${port}`;
  }

  async start(): Promise<this> {
    this.server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        if (req.method === 'POST' && req.url === REPORT_PATH)
          this.reports.push(JSON.parse(Buffer.concat(chunks).toString()));
        if (this.hang) return void this.held.push(res);
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify({ code: 200, msg: 'success', data: null }));
      });
    });
    await new Promise<void>((ok) => this.server.listen(0, '127.0.0.1', ok));
    return this;
  }

  stages(): string[] {
    return this.reports.map((r) => r.stage);
  }

  async stop(): Promise<void> {
    for (const r of this.held) r.destroy();
    this.server.closeAllConnections();
    await new Promise<void>((ok) => this.server.close(() => ok()));
  }
}
