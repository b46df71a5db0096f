// Runs inside the systemd sandbox and the power-cut VM as a unit: device-api's report endpoint
// on 127.0.0.1:9080, appending each report as a JSON line to RECORD_FILE, fsynced before it
// answers: a report acknowledged is a report kept, across a power cut too, as device-api's own
// would be. A cut mid-append may leave a torn last line, of a report never acknowledged.
import { closeSync, fsyncSync, openSync, writeSync } from 'node:fs';
import http from 'node:http';

const file = process.env.RECORD_FILE ?? '/var/lib/tope-test/reports.jsonl';
http
  .createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (req.url === '/api/v1.0/ota/report') {
        const fd = openSync(file, 'a');
        try {
          writeSync(fd, `${Buffer.concat(chunks).toString()}\n`);
          fsyncSync(fd);
        } finally {
          closeSync(fd);
        }
      }
      res.setHeader('content-type', 'application/json');
      res.end('{"code":200,"msg":"success","data":null}');
    });
  })
  .listen(9080, '127.0.0.1');
