'use strict';

// Flow control: a host that publishes faster than its clients read awaits
// `server.drain()` instead of getting them evicted. The reader runs on the same
// JS thread as the host, so the test also shows that drain() does not block it.

const { describe, it } = require('node:test');
const assert = require('node:assert/strict');
const WebSocket = require('ws');
const herald = require('..');
const { withTimeout } = require('./helpers');

const QUEUE = 64;
const MESSAGES = 2000;
// A quarter of the queue: after a drain a client holds at most that many, so one
// more batch keeps it at half of its budget, far from eviction.
const BATCH = QUEUE / 4;

/** Subscribes to `channel` and collects every `n`, pausing its socket now and then. */
async function slowReader(port, channel) {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/ws`);
  const seen = [];
  let subscribed;
  const ready = new Promise((resolve) => {
    subscribed = resolve;
  });
  let done;
  const all = new Promise((resolve, reject) => {
    done = resolve;
    ws.on('close', (code, reason) => reject(new Error(`closed ${code} ${reason} after ${seen.length}`)));
  });
  ws.on('open', () => ws.send(JSON.stringify({ type: 'subscribe', channel })));
  ws.on('message', (data) => {
    const message = JSON.parse(data.toString());
    if (message.type === 'subscribed') subscribed();
    if (message.n === undefined) return;
    seen.push(message.n);
    if (seen.length === MESSAGES) done(seen);
    else if (seen.length % 100 === 0) {
      ws.pause(); // a reader slower than the host
      setTimeout(() => ws.resume(), 10);
    }
  });
  await withTimeout(ready, 'the subscription');
  return { ws, all };
}

describe('drain()', () => {
  it('paces a burst to a slow reader: everything arrives, nobody is evicted', async () => {
    const server = await herald.start({ port: 0, clientQueueSize: QUEUE });
    try {
      const reader = await slowReader(server.port, 'burst');
      const pad = 'x'.repeat(200);
      for (let n = 1; n <= MESSAGES; n++) {
        server.publish('burst', { n, pad });
        if (n % BATCH === 0) await server.drain({ timeoutMs: 10000 });
      }
      await server.drain();
      const seen = await withTimeout(reader.all, 'every message');
      assert.deepEqual(seen, Array.from({ length: MESSAGES }, (_, i) => i + 1));
      const stats = server.getStats();
      assert.equal(stats.evictions, 0);
      assert.equal(stats.backpressure, false);
      assert.equal(stats.backloggedClients, 0);
      assert.equal(server.backpressure, false);
      reader.ws.terminate();
    } finally {
      await server.close();
    }
  });

  it('checks its options and rejects once the server is closed', async () => {
    const server = await herald.start({ port: 0 });
    assert.equal(server.backpressure, false);
    await server.drain({ timeoutMs: 0 }); // nothing published: drained at once
    assert.throws(() => server.drain({ timeoutMs: -1 }), RangeError);
    assert.throws(() => server.drain({ timeoutMs: 1.5 }), RangeError);
    assert.throws(() => server.drain('soon'), TypeError);
    await server.close();
    await assert.rejects(server.drain({ timeoutMs: 100 }), (e) => e.code === 'HERALD_STOPPED');
  });
});
