import assert from 'node:assert/strict';
import http from 'node:http';
import type net from 'node:net';
import { after, before, test } from 'node:test';
import { createCommandServer, type Command } from '../shared/protocol.js';
import { Chromium, findChromium } from './helpers/chromium.js';
import { TestDevice } from './helpers/device.js';
import { freePort } from './helpers/services.js';
import { waitFor } from './helpers/wait.js';

// A real headless browser (Debian's Chromium) opens a page from another origin that tries every
// shape of request a page can make to the API. None may reach a worker: both are recording
// stand-ins on their sockets, and the gateway's own log shows each attempt arrived and was refused.

const chromium = findChromium();
const skip = chromium
  ? false
  : 'Chromium is not installed (scripts/ensure-tools.sh installs it as root: apt-get install chromium)';
const device = new TestDevice();
const commands: Command[] = [];
const standIns: net.Server[] = [];
let results: Array<{ via: string; outcome: string }> | null = null;
let pageServer: http.Server;
let pagePort = 0;

/** Each attempt names itself in the query (?via=...), so the gateway's log tells which arrived. */
const attackPage = (api: string) => `<!doctype html><meta charset="utf-8"><title>attacker</title>
<iframe name="sink" style="display:none"></iframe>
<script>
const api = ${JSON.stringify(api)};
const job = JSON.stringify({ version: '6.6.6', package_url: 'http://127.0.0.1:9/evil.zip', package_name: 'evil.zip', package_size: 10, package_md5: 'a'.repeat(32) });
const results = [];
const attempt = async (via, run) => {
  try { results.push({ via, outcome: String(await run(api + (via.startsWith('update') ? '/api/v1.0/update' : '/api/v1.0/download') + '?via=' + via)) }); }
  catch (e) { results.push({ via, outcome: 'threw ' + e.name }); }
};
const form = (via, enctype, name, value) => new Promise((done) => {
  const f = document.createElement('form');
  f.method = 'POST'; f.enctype = enctype; f.target = 'sink'; f.action = api + '/api/v1.0/download?via=' + via;
  const i = document.createElement('input'); i.name = name; i.value = value; f.appendChild(i);
  document.body.appendChild(f);
  document.querySelector('iframe').onload = () => done('submitted'); f.submit();
  setTimeout(() => done('no load event'), 3000);
});
const load = (tag, via) => new Promise((done) => {
  const el = document.createElement(tag);
  el.onload = () => done('loaded'); el.onerror = () => done('error');
  el.src = api + '/api/v1.0/progress?via=' + via;
  document.body.appendChild(el);
});
(async () => {
  await attempt('fetch-cors-text-plain', (u) => fetch(u, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: job }).then((r) => r.status));
  await attempt('fetch-no-cors-text-plain', (u) => fetch(u, { method: 'POST', mode: 'no-cors', headers: { 'content-type': 'text/plain' }, body: job }).then((r) => r.type));
  await attempt('fetch-no-cors-string-body', (u) => fetch(u, { method: 'POST', mode: 'no-cors', body: job }).then((r) => r.type));
  await attempt('fetch-json-preflight', (u) => fetch(u, { method: 'POST', headers: { 'content-type': 'application/json' }, body: job }).then((r) => r.status));
  await attempt('xhr-text-plain', (u) => new Promise((done) => {
    const x = new XMLHttpRequest(); x.open('POST', u); x.setRequestHeader('content-type', 'text/plain');
    x.onload = () => done('status ' + x.status); x.onerror = () => done('network error'); x.send(job);
  }));
  await attempt('update-no-cors', (u) => fetch(u, { method: 'POST', mode: 'no-cors', body: JSON.stringify({ version: '6.6.6' }) }).then((r) => r.type));
  await attempt('beacon-text-plain', (u) => navigator.sendBeacon(u, job));
  await attempt('beacon-json-blob', (u) => navigator.sendBeacon(u, new Blob([job], { type: 'application/json' })));
  results.push({ via: 'form-text-plain', outcome: await form('form-text-plain', 'text/plain', job.slice(0, -1) + ',"pad":"', '"}') });
  results.push({ via: 'form-urlencoded', outcome: await form('form-urlencoded', 'application/x-www-form-urlencoded', 'json', job) });
  results.push({ via: 'img', outcome: await load('img', 'img') });
  results.push({ via: 'script', outcome: await load('script', 'script') });
  await attempt('fetch-get-progress', (u) => fetch(u.replace(/\\/api\\/v1\\.0\\/download/, '/api/v1.0/progress')).then((r) => r.status));
  await fetch('/results', { method: 'POST', body: JSON.stringify(results) });
})();
</script>`;

before(async () => {
  if (skip) return;
  for (const socket of [device.env.TOPE_FETCHER_SOCKET, device.env.TOPE_INSTALLER_SOCKET]) {
    const s = createCommandServer(
      async (c) => {
        commands.push(c);
        return { ok: true };
      },
      () => undefined,
    );
    await new Promise<void>((ok) => s.listen(socket, ok));
    standIns.push(s);
  }
  await device.start('api-gateway');
  pagePort = await freePort();
  pageServer = http.createServer((req, res) => {
    if (req.method === 'POST' && req.url === '/results') {
      let body = '';
      req
        .setEncoding('utf8')
        .on('data', (c: string) => {
          body += c;
        })
        .on('end', () => {
          results = JSON.parse(body);
          res.end('ok');
        });
      return;
    }
    res.setHeader('content-type', 'text/html; charset=utf-8');
    res.end(attackPage(device.base));
  });
  await new Promise<void>((ok) => pageServer.listen(pagePort, '127.0.0.1', ok));
});
after(async () => {
  if (skip) return;
  await device.stop();
  for (const s of standIns) s.close();
  pageServer.close();
});

const refusedVia = () =>
  new Map(
    device.running[0].lines
      .filter((l) => l.msg === 'request refused')
      .map((l) => [
        new URL(String(l.url), 'http://x').searchParams.get('via'),
        `${String(l.method)} ${String(l.code)}`,
      ]),
  );

test(
  '[worker stand-ins] a page from another origin in a real Chromium: every shape of request is refused, none reaches a worker',
  { skip, timeout: 120_000 },
  async () => {
    const browser = new Chromium(chromium!);
    try {
      // another origin: localhost:<page port> against the API at 127.0.0.1:<gateway port>
      browser.open(`http://localhost:${pagePort}/`);
      const done = await waitFor('the page to post its results', () => results, 60_000).catch((e: Error) => {
        throw new Error(`${e.message}; chromium said: ${browser.stderr}`);
      });
      const mustArrive: Record<string, RegExp> = {
        'fetch-cors-text-plain': /^POST CROSS_ORIGIN_REFUSED$/,
        'fetch-no-cors-text-plain': /^POST CROSS_ORIGIN_REFUSED$/,
        'fetch-no-cors-string-body': /^POST CROSS_ORIGIN_REFUSED$/,
        'fetch-json-preflight': /^OPTIONS CROSS_ORIGIN_REFUSED$/, // the preflight, and no POST after it
        'xhr-text-plain': /^POST CROSS_ORIGIN_REFUSED$/,
        'update-no-cors': /^POST CROSS_ORIGIN_REFUSED$/,
        'beacon-text-plain': /^POST CROSS_ORIGIN_REFUSED$/,
        'form-text-plain': /^POST CROSS_ORIGIN_REFUSED$/,
        'form-urlencoded': /^POST CROSS_ORIGIN_REFUSED$/,
        img: /^GET CROSS_ORIGIN_REFUSED$/,
        script: /^GET CROSS_ORIGIN_REFUSED$/,
        'fetch-get-progress': /^GET CROSS_ORIGIN_REFUSED$/,
      };
      // the page has sent them all; a beacon may still be on its way
      const seen = await waitFor(
        'every attempt to reach the gateway',
        () => {
          const m = refusedVia();
          return Object.keys(mustArrive).every((via) => m.has(via)) ? m : null;
        },
        20_000,
      ).catch(() => refusedVia());
      assert.deepEqual(
        commands.map((c) => c.type),
        [],
        'no command reached a worker',
      );
      assert.ok(
        !device.running[0].lines.some((l) => l.msg === 'download requested' || l.msg === 'update requested'),
        'no command was decided on',
      );
      for (const [via, expected] of Object.entries(mustArrive))
        assert.match(seen.get(via) ?? 'never arrived', expected, via);
      const byVia = Object.fromEntries(done.map((r) => [r.via, r.outcome]));
      assert.equal(byVia['fetch-cors-text-plain'], 'threw TypeError', 'the page cannot read an answer');
      assert.equal(byVia['fetch-json-preflight'], 'threw TypeError', 'the preflight is never granted');
      const progress = (await fetch(`${device.base}/api/v1.0/progress`).then((r) => r.json())) as {
        data: { stage: string };
      };
      assert.equal(progress.data.stage, 'idle', 'the state did not change');
    } finally {
      await browser.close();
    }
  },
);

test(
  'DNS rebinding in a real Chromium: a name that resolves to the printer is still not the printer',
  { skip, timeout: 120_000 },
  async () => {
    // the attacker's name now resolves to 127.0.0.1 (what a rebinding DNS server does, here by the browser's own rule)
    const browser = new Chromium(chromium!, ['--host-resolver-rules=MAP rebind.attacker.test 127.0.0.1']);
    try {
      const port = new URL(device.base).port;
      const dom = browser.dumpDom(`http://rebind.attacker.test:${port}/api/v1.0/progress`);
      assert.match(
        dom,
        /HOST_NOT_ALLOWED: Host \\"rebind\.attacker\.test:\d+\\" does not name this gateway/,
        dom.slice(0, 500),
      );
      assert.doesNotMatch(dom, /"stage"/, 'no status was shown to the page');
    } finally {
      await browser.close();
    }
  },
);
