// herald-client in a real headless Chromium (Debian's /usr/bin/chromium, driven by
// playwright-core; no browser is downloaded), against real Herald servers hosted by
// this process through the Node binding. Figures go to test-artifacts/ and the
// test's diagnostics.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { build } from 'esbuild';
import { chromium } from 'playwright-core';
import WebSocket from 'ws';
import { REPO, ROOT, eventually, sleep, startServer, wsUrl } from './helpers.mjs';

const CHROMIUM = process.env.HERALD_CHROMIUM || '/usr/bin/chromium';
const ARTIFACTS = join(ROOT, 'test-artifacts');
const FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

let context;
let profile;
let pageServer;
let pageUrl;
const figures = {};

before(async () => {
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: apt-get install -y chromium (run-tests.sh does)`);
  mkdirSync(ARTIFACTS, { recursive: true });
  const bundle = await build({
    entryPoints: [join(ROOT, 'test', 'browser', 'page.jsx')],
    bundle: true,
    format: 'iife',
    jsx: 'automatic',
    target: 'es2020',
    define: { 'process.env.NODE_ENV': '"development"' },
    write: false,
    logLevel: 'error',
  });
  const script = bundle.outputFiles[0].contents;
  const html = '<!doctype html><meta charset="utf-8"><link rel="icon" href="data:,"><div id="root"></div><script src="/page.js"></script>';
  pageServer = http.createServer((req, res) => {
    if (req.url === '/page.js') {
      res.writeHead(200, { 'content-type': 'text/javascript' }).end(script);
    } else {
      res.writeHead(200, { 'content-type': 'text/html' }).end(html);
    }
  });
  await new Promise((resolve) => pageServer.listen(0, '127.0.0.1', resolve));
  pageUrl = `http://127.0.0.1:${pageServer.address().port}/`;
  // A fresh profile each run (Playwright takes the user data dir as its own argument).
  profile = mkdtempSync(join(tmpdir(), 'herald-chromium-'));
  context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: FLAGS,
    viewport: { width: 1200, height: 800 },
  });
});

after(async () => {
  await context?.close();
  pageServer?.close();
  if (profile) rmSync(profile, { recursive: true, force: true });
  writeFileSync(join(ARTIFACTS, 'browser-figures.json'), `${JSON.stringify(figures, null, 2)}\n`);
});

async function newPage() {
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(pageUrl);
  return { page, errors };
}

const reportOf = (page) => page.evaluate(() => window.report);

/** Every publication exactly once, in order: n = 1 … total. */
function assertExactlyOnce(seen, total) {
  const ns = seen.map((s) => s.n);
  assert.equal(ns.length, total, `received ${ns.length} of ${total}`);
  assert.deepEqual(ns, Array.from({ length: total }, (_, i) => i + 1));
}

test('over 20+ server-forced closes (evictions, 1013) during a stream, every publication is processed exactly once, in order', async (t) => {
  // A tiny per-client queue: a burst evicts the client, as a slow client would be.
  const server = await startServer({ client_queue_size: 8 });
  const subscribed = new Promise((resolve) => server.on('subscribe', (e) => e.channel === 'stream' && resolve()));
  const { page, errors } = await newPage();
  await page.evaluate((url) => window.startStream(url, 'stream'), wsUrl(server));
  await subscribed;

  const started = Date.now();
  const pad = 'x'.repeat(200);
  let published = 0;
  let forced = 0;
  // Bursts of 40 until the page has been closed by the server at least 20 times (bounded).
  while (forced < 20 && Date.now() - started < 60_000) {
    for (let i = 0; i < 40; i++) server.publish('stream', { type: 'tick', n: ++published, pad });
    await sleep(120);
    forced = (await reportOf(page)).closes.filter((c) => c === 1013).length;
  }
  for (let i = 0; i < 10; i++) server.publish('stream', { type: 'tick', n: ++published, pad });
  await eventually(async () => (await reportOf(page)).seen.length >= published, `all ${published} publications in the page`, 30_000);
  await sleep(100);
  const report = await reportOf(page);
  const stats = server.getStats();
  forced = report.closes.filter((c) => c === 1013).length;
  await page.close();
  await server.close();

  Object.assign(figures, {
    forcedCloses: forced,
    serverEvictions: stats.evictions,
    reconnects: report.connects - 1,
    recoveries: stats.recoveries,
    recoveriesFailed: stats.recoveriesFailed,
    publications: published,
    processed: report.seen.length,
    gaps: report.gaps.length,
    streamMs: Date.now() - started,
  });
  t.diagnostic(`forced closes ${forced}, evictions ${stats.evictions}, reconnects ${report.connects - 1}, recoveries ${stats.recoveries}, publications ${published}, processed ${report.seen.length}`);
  assert.ok(forced >= 20, `at least 20 forced closes, got ${forced}`);
  assert.ok(report.connects > forced, 'reconnected after each');
  assert.deepEqual(report.gaps, []);
  assert.equal(stats.recoveriesFailed, 0);
  assertExactlyOnce(report.seen, published);
  assert.deepEqual(errors, []);
});

test('the host stops and restarts on the same port: the page reconnects, reports the lost history once per restart, and misses nothing published', async (t) => {
  let server = await startServer();
  const port = server.port;
  const subscribedOn = (s) => new Promise((resolve) => s.on('subscribe', (e) => e.channel === 'restart' && resolve()));
  let subscribed = subscribedOn(server);
  const { page, errors } = await newPage();
  await page.evaluate((url) => window.startStream(url, 'restart'), wsUrl(server));
  await subscribed;

  const restarts = 3;
  let published = 0;
  for (let round = 0; round <= restarts; round++) {
    for (let i = 0; i < 50; i++) server.publish('restart', { type: 'tick', n: ++published });
    await eventually(async () => (await reportOf(page)).seen.length === published, `${published} publications`);
    if (round === restarts) break;
    await server.close();
    server = await startServer({ port });
    // Publish again once the page is back (what a host restarting misses is its own history).
    subscribed = subscribedOn(server);
    await subscribed;
  }
  const report = await reportOf(page);
  await page.close();
  await server.close();

  figures.restarts = { restarts, publications: published, gapsReported: report.gaps.length, closes: report.closes };
  t.diagnostic(`restarts ${restarts}, publications ${published}, gaps reported ${report.gaps.length}`);
  assertExactlyOnce(report.seen, published);
  assert.equal(report.gaps.length, restarts, 'one gap (new epoch) per restart');
  assert.ok(report.gaps.every((g) => g.from.epoch !== g.to.epoch));
  assert.equal(report.closes.filter((c) => c === 1001).length, restarts, 'each stop closed the page with 1001');
  assert.deepEqual(errors, []);
});

test('React hooks under StrictMode: one connection, one subscription each, every publication once, nothing left after unmount', async () => {
  const server = await startServer();
  const { page, errors } = await newPage();
  await page.evaluate((url) => window.mountReact(url), wsUrl(server));
  const text = (id) => page.locator(`#${id}`).textContent();
  await eventually(async () => (await text('react-state')) === 'connected' && (await text('react-subscribed')) === 'true', 'the hooks to connect');
  await eventually(() => server.getStats().subscriptions === 2, 'two subscriptions (channel and job session)');
  assert.equal(server.getStats().activeConnections, 1, 'StrictMode left one connection');

  for (let n = 1; n <= 20; n++) server.publish('react-chan', { n });
  await eventually(async () => (await text('react-last')) === '20', 'the last publication rendered');
  assert.deepEqual((await reportOf(page)).react.received, Array.from({ length: 20 }, (_, i) => i + 1), 'each publication handled once');

  server.notifyAIStart('react-job', { prompt: 'p' });
  server.notifyAIProgress('react-job', { percent: 50 });
  await eventually(async () => (await text('job-status')) === 'running' && (await text('job-percent')) === '50', 'the running job');
  server.notifyAIComplete('react-job', { output: 'done' });
  await eventually(async () => (await text('job-result')) === 'done', 'the completed job');

  // Unmount the hooks' component: its client and subscriptions go away.
  await page.evaluate(() => window.hideProbe());
  await eventually(() => server.getStats().activeConnections === 0 && server.getStats().subscriptions === 0, 'nothing left on the server');
  // Mount again: the job comes back from history.
  await page.evaluate(() => window.showProbe());
  await eventually(async () => (await text('job-result')) === 'done', 'the job restored from history');
  assert.equal(server.getStats().subscriptions, 2);
  await page.evaluate(() => window.unmountReact());
  await eventually(() => server.getStats().activeConnections === 0, 'no connection after unmount');
  assert.equal(server.getStats().subscriptions, 0);
  await page.close();
  await server.close();
  assert.deepEqual(errors, []);
});

test('useJob: a reload in the middle of a token stream shows the text so far and continues with no gap or duplicate; Stop reaches the host', async () => {
  const server = await startServer();
  const cancels = [];
  server.on('cancel', (e) => cancels.push(e));
  let { page, errors } = await newPage();
  await page.evaluate(([url, session]) => window.mountJob(url, session), [wsUrl(server), 'stream-job']);
  const text = (id) => page.locator(`#${id}`).textContent();
  await eventually(() => server.getStats().subscriptions === 1, 'the job subscription');

  // A token stream at about 100 deltas a second; the page is reloaded in the middle.
  const tokens = Array.from({ length: 300 }, (_, n) => `t${n} `);
  server.notifyAIStart('stream-job', { jobId: 'answer', prompt: 'p' });
  let sent = '';
  const stream = (async () => {
    for (const token of tokens) {
      server.notifyAIDelta('stream-job', { jobId: 'answer', text: token });
      sent += token;
      await sleep(10);
    }
  })();
  await eventually(async () => (await text('stream-text')).length > 200, 'some text before the reload');
  await page.reload();
  const reloadedAt = sent.length;
  await page.evaluate(([url, session]) => window.mountJob(url, session), [wsUrl(server), 'stream-job']);
  // Right after the reload, before the stream is over, the page shows the text so far.
  await eventually(async () => (await text('stream-status')) === 'running' && (await text('stream-text')).length >= reloadedAt, 'the text so far after the reload');
  const shownAfterReload = (await text('stream-text')).length;
  await stream;
  await eventually(async () => (await text('stream-text')) === sent, 'the whole text');
  assert.equal(await text('stream-text'), tokens.join(''), 'final text = what the host sent: no gap, no duplicate');
  figures.reloadMidStream = { tokens: tokens.length, charsSentAtReload: reloadedAt, charsShownAfterReload: shownAfterReload, totalChars: sent.length };

  // Stop: the page's cancel reaches the host, which ends the job.
  await page.click('#stream-stop');
  await eventually(() => cancels.length === 1, "the host's 'cancel' event");
  assert.equal(cancels[0].sessionId, 'stream-job');
  assert.equal(cancels[0].jobId, 'answer');
  server.notifyAICancelled('stream-job', { jobId: 'answer', reason: 'stopped by the user' });
  await eventually(async () => (await text('stream-status')) === 'cancelled', 'the cancelled job');
  assert.equal(await text('stream-text'), tokens.join(''), 'the text stays');
  await page.close();
  await server.close();
  assert.deepEqual(errors, []);
});

test('usePresence in two tabs: each sees the other join, change its status and leave; a plain WebSocket client too', async () => {
  const server = await startServer();
  const members = (page) =>
    page.evaluate(() =>
      [...document.querySelectorAll('#presence li')].map((li) => ({ user: li.dataset.user, status: li.dataset.status })),
    );
  const byUser = (list) => Object.fromEntries(list.map((m) => [m.user, m.status]));
  const a = await newPage();
  await a.page.evaluate((url) => window.mountPresence(url, 'room', 'ann'), wsUrl(server));
  await eventually(async () => byUser(await members(a.page)).ann === 'online', 'ann sees herself');
  const b = await newPage();
  await b.page.evaluate((url) => window.mountPresence(url, 'room', 'bob'), wsUrl(server));
  await eventually(async () => byUser(await members(a.page)).bob === 'online', 'ann sees bob join');
  await eventually(async () => byUser(await members(b.page)).ann === 'online', 'bob sees ann in the list');
  // StrictMode mounted each probe twice: still one connection and one membership per tab.
  assert.equal(server.getPresence('room').total, 2);

  await b.page.evaluate(() => window.setPresenceStatus('away'));
  await eventually(async () => byUser(await members(a.page)).bob === 'away', "ann sees bob's status");
  assert.equal(server.getPresence('room').members.find((m) => m.userId === 'bob').status, 'away');

  // A client without herald-client, in Node.
  const ws = new WebSocket(`${wsUrl(server)}?userId=carol`);
  await new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  });
  ws.send(JSON.stringify({ type: 'subscribe', channel: 'room' }));
  await eventually(async () => byUser(await members(a.page)).carol === 'online' && byUser(await members(b.page)).carol === 'online', 'both tabs see carol');
  ws.close();
  await eventually(async () => !('carol' in byUser(await members(a.page))), 'carol left');

  // Closing a tab is a leave.
  await b.page.close();
  await eventually(async () => Object.keys(byUser(await members(a.page))).join() === 'ann', 'bob left');
  assert.equal(await a.page.locator('#presence-total').textContent(), '1');
  await a.page.evaluate(() => window.unmountPresence());
  await eventually(() => server.getPresence('room').total === 0, 'nobody left on the server');
  await a.page.close();
  await server.close();
  assert.deepEqual([...a.errors, ...b.errors], []);
});

test('while waiting to retry, the client reconnects at once when the browser comes back online or the tab becomes visible', async () => {
  let server = await startServer();
  const port = server.port;
  const { page, errors } = await newPage();
  // Retries wait random(0, 10 min): only the wake-up events can bring the page back quickly.
  const slow = { minReconnectDelayMs: 600_000, maxReconnectDelayMs: 600_000 };
  await page.evaluate(([url, options]) => window.startStream(url, 'wake', options), [wsUrl(server), slow]);
  await eventually(async () => (await reportOf(page)).connects === 1, 'the first connection');
  const state = () => page.evaluate(() => window.streamClient.state);

  /** Restarts the server until the page waits more than 20 s for its next retry. */
  async function cutUntilLongRetry() {
    for (;;) {
      await page.evaluate(() => (window.report.lastRetryInMs = undefined));
      const { connects } = await reportOf(page);
      await server.close();
      server = await startServer({ port });
      await eventually(async () => (await reportOf(page)).lastRetryInMs !== undefined, 'a scheduled retry');
      const { lastRetryInMs } = await reportOf(page);
      if (lastRetryInMs > 20_000) return;
      // A short draw (rare): let that retry happen, then cut again.
      await eventually(async () => (await reportOf(page)).connects > connects, 'the early retry', lastRetryInMs + 5_000);
    }
  }

  await cutUntilLongRetry();
  assert.equal(await state(), 'reconnecting');
  await context.setOffline(true);
  await context.setOffline(false); // fires the page's 'online' event
  await eventually(async () => (await state()) === 'connected', 'the reconnect on online', 5_000);

  await cutUntilLongRetry();
  assert.equal(await state(), 'reconnecting');
  await page.evaluate(() => document.dispatchEvent(new Event('visibilitychange'))); // headless tabs are visible
  await eventually(async () => (await state()) === 'connected', 'the reconnect on visibility', 5_000);
  await page.close();
  await server.close();
  assert.deepEqual(errors, []);
});

test('the examples/node page (Express + Herald) follows a job with herald-client', async () => {
  const example = join(REPO, 'examples', 'node');
  assert.ok(existsSync(join(example, 'node_modules', 'express')), 'examples/node needs npm ci (run-tests.sh does)');
  const child = spawn(process.execPath, ['server.js'], {
    cwd: example,
    env: { ...process.env, PORT: '0', HERALD_PORT: '0', JOB_STEP_MS: '60' },
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  try {
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    const { http: httpPort } = JSON.parse(await eventually(() => out.split('\n').find((l) => l.includes('"listening"')), 'the example to listen'));
    const page = await context.newPage();
    const errors = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(`http://127.0.0.1:${httpPort}/?session=browser-test`);
    await page.waitForFunction(() => window.herald?.client.state === 'connected', null, { timeout: 10_000 });
    await page.click('button');
    await page.waitForFunction(() => document.getElementById('text').dataset.status === 'complete', null, { timeout: 15_000 });
    assert.match(await page.locator('#text').textContent(), /^Done: 5 steps/);
    assert.equal(await page.locator('#bar').evaluate((b) => b.value), 100);
    // A reload restores the finished job from the session's history.
    await page.reload();
    await page.waitForFunction(() => document.getElementById('text').dataset.status === 'complete', null, { timeout: 10_000 });
    assert.deepEqual(errors, []);
    await page.close();
  } finally {
    child.kill('SIGTERM');
  }
});

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

test('the demo dashboard shows a job in progress (screenshot saved)', async (t) => {
  const demo = process.env.HERALD_DEMO_BIN || join(REPO, 'target', 'debug', 'examples', 'demo');
  assert.ok(existsSync(demo), `${demo} is missing: cargo build --example demo (run-tests.sh does)`);
  const port = await freePort();
  const child = spawn(demo, [], { env: { ...process.env, HERALD_DEMO_PORT: String(port) }, stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    await eventually(() => out.includes('live dashboard'), 'the demo to listen');
    const page = await context.newPage();
    const errors = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(`http://127.0.0.1:${port}/`);
    await page.waitForFunction(
      () => [...document.querySelectorAll('.card[data-status="running"]')].some((c) => Number(c.dataset.percent) >= 40),
      null,
      { timeout: 30_000 },
    );
    const dom = await page.evaluate(() => ({
      state: document.getElementById('state').dataset.state,
      current: document.getElementById('current').textContent,
      running: [...document.querySelectorAll('.card[data-status="running"]')].map((c) => ({
        title: c.querySelector('.title').textContent,
        percent: Number(c.dataset.percent),
        bar: c.querySelector('.bar > div').style.width,
      })),
      active: document.getElementById('stat-activeConnections')?.textContent,
    }));
    assert.equal(dom.state, 'connected');
    assert.match(dom.current, /^running/);
    assert.ok(dom.running[0].percent > 0 && dom.running[0].bar === `${dom.running[0].percent}%`, JSON.stringify(dom));
    await eventually(
      () => page.evaluate(() => ['activeConnections', 'subscriptions'].every((k) => document.getElementById(`stat-${k}`)?.textContent === '1')),
      'the stats panel to show this page',
    );
    await sleep(400); // the progress bar's CSS transition
    const shot = join(ARTIFACTS, 'dashboard.png');
    await page.screenshot({ path: shot });
    figures.screenshot = shot;
    t.diagnostic(`screenshot ${shot}: ${JSON.stringify(dom.running[0])}`);

    // The outage button: back after 3 s, with what was missed recovered.
    await page.click('#outage');
    await page.waitForFunction(() => /recovered \d+ missed/.test(document.getElementById('notice').textContent), null, { timeout: 15_000 });
    assert.equal(await page.evaluate(() => window.herald.client.state), 'connected');
    await sleep(400);
    await page.screenshot({ path: join(ARTIFACTS, 'dashboard-recovered.png') });
    assert.deepEqual(errors, []);
    await page.close();
  } finally {
    child.kill('SIGTERM');
  }
});
