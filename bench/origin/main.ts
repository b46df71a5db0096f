import { FileOrigin } from './file-origin.js';

// The package server as its own process, so that pushing a gigabyte over loopback never holds
// up the bench's clock, its latency probes or its samplers. Driven over the IPC channel.

export type OriginRequest = { type: 'stats' } | { type: 'reset' };
export interface OriginStats {
  type: 'stats';
  bytesServed: number;
  requests: FileOrigin['requests'];
}

const [root, cap] = process.argv.slice(2);
const origin = new FileOrigin({ root, capBytesPerSecond: cap && cap !== 'none' ? Number(cap) : null });
const port = await origin.listen();
process.send!({ type: 'ready', port });
process.on('message', (m: OriginRequest) => {
  if (m.type === 'reset') origin.reset();
  const stats: OriginStats = { type: 'stats', bytesServed: origin.bytesServed, requests: origin.requests };
  process.send!(stats);
});
process.on('disconnect', () => process.exit(0));
