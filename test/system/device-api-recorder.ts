// Runs inside the systemd sandbox as a unit: device-api's report endpoint on 127.0.0.1:9080,
// appending each report as a JSON line to RECORD_FILE.
import { appendFileSync } from 'node:fs';
import http from 'node:http';

const file = process.env.RECORD_FILE ?? '/var/lib/tope-test/reports.jsonl';
http.createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    if (req.url === '/api/v1.0/ota/report') appendFileSync(file, `${Buffer.concat(chunks).toString()}\n`);
    res.setHeader('content-type', 'application/json');
    res.end('{"code":200,"msg":"success","data":null}');
  });
}).listen(9080, '127.0.0.1');
