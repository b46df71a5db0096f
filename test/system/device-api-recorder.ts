// Runs inside the systemd sandbox and the power-cut VM as a unit: device-api's stand-in on
// 127.0.0.1:RECORD_PORT, appending each request it gets as a JSON line ({ method, path, body })
// to RECORD_FILE, fsynced before it answers: a report acknowledged is a report kept, across a
// power cut too, as device-api's own would be. A cut mid-append may leave a torn last line, of a
// request never acknowledged. It is copied alone into those machines, so it knows no product
// constant: the checkers pick the reports out by the product's REPORT_PATH (recordedReports), and
// the port comes from the unit, which the test writes from the product's default device-api URL.
import { closeSync, fsyncSync, openSync, writeSync } from 'node:fs';
import http from 'node:http';

const file = process.env.RECORD_FILE ?? '/var/lib/tope-test/reports.jsonl';
const port = Number(process.env.RECORD_PORT);
if (!Number.isInteger(port) || port <= 0) throw new Error(`RECORD_PORT must be a port, not ${process.env.RECORD_PORT}`);
http
  .createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const entry = { method: req.method, path: req.url, body: Buffer.concat(chunks).toString() };
      const fd = openSync(file, 'a');
      try {
        writeSync(fd, `${JSON.stringify(entry)}\n`);
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
      res.setHeader('content-type', 'application/json');
      res.end('{"code":200,"msg":"success","data":null}');
    });
  })
  .listen(port, '127.0.0.1');
