'use strict';

// The Express example (examples/node): POST /api/jobs streams a simulated AI
// job to the browser sessions subscribed to it. Needs `npm install` (or
// `npm ci`) in examples/node first; run-tests.sh does that.

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { Client, runNode, withTimeout } = require('./helpers');

const EXAMPLE_DIR = path.resolve(__dirname, '..', '..', '..', 'examples', 'node');

describe('examples/node', () => {
  let ports;
  let running;
  let proc;

  before(async () => {
    assert.ok(
      fs.existsSync(path.join(EXAMPLE_DIR, 'node_modules', 'express')),
      `run \`npm ci\` in ${EXAMPLE_DIR} first`,
    );
    let ready;
    const listening = new Promise((resolve) => {
      ready = resolve;
    });
    running = runNode(null, {
      cwd: EXAMPLE_DIR,
      args: ['server.js'],
      ms: 60_000,
      env: { HOST: '127.0.0.1', PORT: '0', HERALD_PORT: '0', JOB_STEP_MS: '10' },
      onLine: (line, child) => {
        proc = child;
        try {
          const msg = JSON.parse(line);
          if (msg.event === 'listening') ready(msg);
        } catch {
          // not our line
        }
      },
    });
    ports = await withTimeout(
      Promise.race([
        listening,
        running.then((res) => {
          throw new Error(`the example exited early: ${res.code} ${res.stderr}`);
        }),
      ]),
      'the example to listen',
    );
  });

  after(async () => {
    if (proc && proc.exitCode === null) proc.kill('SIGKILL');
    await running;
  });

  const api = (p, init) => fetch(`http://127.0.0.1:${ports.http}${p}`, init);
  const post = (body) =>
    api('/api/jobs', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });

  it('serves the page, its client module and its config', async () => {
    const page = await api('/');
    assert.equal(page.status, 200);
    assert.match(await page.text(), /import \{ HeraldClient \} from '\/herald-client\.js'/);
    const client = await api('/herald-client.js');
    assert.equal(client.status, 200);
    assert.match(client.headers.get('content-type'), /javascript/);
    assert.match(await client.text(), /herald-client/);
    assert.deepEqual(await (await api('/api/config')).json(), { wsPort: ports.ws, wsPath: '/ws' });
  });

  it('streams a job to every subscriber of its session, and to nobody else', async () => {
    const tab1 = await Client.connect(ports.ws, { sessionId: 'browser-1' });
    const tab2 = await Client.connect(ports.ws, { sessionId: 'browser-1' });
    const stranger = await Client.connect(ports.ws, { sessionId: 'browser-2' });

    const res = await post({ sessionId: 'browser-1', prompt: 'haiku', steps: 3 });
    assert.equal(res.status, 202);
    const { jobId, sessionId } = await res.json();
    assert.equal(sessionId, 'browser-1');
    assert.equal(typeof jobId, 'string');

    for (const tab of [tab1, tab2]) {
      const start = await tab.next({ type: 'ai_start' });
      assert.deepEqual(start.task, { jobId, prompt: 'haiku', steps: 3 });
      for (let step = 1; step <= 3; step += 1) {
        const p = await tab.next({ type: 'ai_progress' });
        assert.equal(p.sessionId, 'browser-1');
        assert.equal(p.progress.jobId, jobId);
        assert.equal(p.progress.step, step, 'progress arrives in order');
      }
      const done = await tab.next({ type: 'ai_complete' });
      assert.equal(done.result.jobId, jobId);
      assert.match(done.result.output, /haiku/);
    }
    await stranger.sync();
    assert.deepEqual(stranger.pending().filter((m) => m.type.startsWith('ai_')), []);
    for (const c of [tab1, tab2, stranger]) c.terminate();
  });

  it('streams a failing job as ai_error', async () => {
    const tab = await Client.connect(ports.ws);
    tab.send({ type: 'subscribe', sessionId: 'browser-3' });
    await tab.next({ type: 'subscribed' });
    const res = await post({ sessionId: 'browser-3', steps: 4, fail: true });
    assert.equal(res.status, 202);
    await tab.next({ type: 'ai_start' });
    const err = await tab.next({ type: 'ai_error' });
    assert.match(err.error.message, /gave up/);
    tab.terminate();
  });

  it('rejects a job without a session', async () => {
    assert.equal((await post({ steps: 2 })).status, 400);
    assert.equal((await post({ sessionId: 'x', steps: 0 })).status, 400);
  });

  it('shuts down on SIGTERM: clients get 1001 and the process exits by itself', async () => {
    const tab = await Client.connect(ports.ws, { sessionId: 'browser-4' });
    proc.kill('SIGTERM');
    assert.equal((await withTimeout(tab.closed, 'the close frame')).code, 1001);
    const res = await running;
    assert.equal(res.timedOut, false);
    assert.equal(res.code, 0, res.stderr);
  });
});
