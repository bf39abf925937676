'use strict';

// A node and an emitter sharing a real redis-server: what the emitter
// publishes reaches the node's `ws` clients in order, and once Redis is gone
// the emitter's calls throw HERALD_UNAVAILABLE.

const { describe, it, after } = require('node:test');
const assert = require('node:assert/strict');
const herald = require('..');
const { Client } = require('./helpers');
const { RedisServer } = require('./redis');

const broker = (redis) => ({ redis: { url: redis.url, prefix: 'node-emitter:', timeoutMs: 1000 } });

describe('emitter mode with a Redis broker', () => {
  const cleanup = [];
  after(async () => {
    for (const step of cleanup.reverse()) await step();
  });

  it('reaches the node clients in order, then fails once Redis is killed', async () => {
    const redis = await RedisServer.start();
    cleanup.push(() => redis.kill());
    const node = await herald.start({ port: 0, broker: broker(redis) });
    cleanup.push(() => node.close());
    const emitter = await herald.start({ listen: false, broker: broker(redis) });
    cleanup.push(() => emitter.close());
    assert.equal(emitter.getStats().port, 0, 'an emitter serves no socket');

    const session = await Client.connect(node.port, { sessionId: 'S' });
    cleanup.push(() => session.terminate());
    const reader = await Client.connect(node.port);
    cleanup.push(() => reader.terminate());
    reader.send({ type: 'subscribe', channel: 'news' });
    await reader.next({ type: 'subscribed', channel: 'news' });

    emitter.notifyAIStart('S', { task: 'summarize' });
    for (const percent of [25, 50, 75]) emitter.notifyAIProgress('S', { percent });
    emitter.notifyAIComplete('S', { summary: 'done' });
    for (let i = 1; i <= 20; i += 1) emitter.publish('news', { type: 'note', i });

    const got = [];
    for (let n = 0; n < 5; n += 1) got.push(await session.next({ sessionId: 'S' }));
    assert.deepEqual(
      got.map((m) => [m.type, m.seq]),
      [['ai_start', 1], ['ai_progress', 2], ['ai_progress', 3], ['ai_progress', 4], ['ai_complete', 5]],
    );
    assert.deepEqual(got.slice(1, 4).map((m) => m.progress.percent), [25, 50, 75]);
    const notes = [];
    for (let n = 0; n < 20; n += 1) notes.push(await reader.next({ type: 'note' }));
    assert.deepEqual(
      notes.map((m) => [m.i, m.seq]),
      Array.from({ length: 20 }, (_, k) => [k + 1, k + 1]),
    );

    await redis.kill();
    // Until the emitter notices, a call may wait for its timeout; either way it throws.
    const calls = [
      () => emitter.publish('news', { type: 'note', i: 0 }),
      () => emitter.notifyAIProgress('S', { percent: 99 }),
      () => emitter.broadcast({ type: 'all' }),
    ];
    let failures = 0;
    const deadline = Date.now() + 3000;
    while (Date.now() < deadline) {
      for (const call of calls) {
        assert.throws(call, (err) => err.code === 'HERALD_UNAVAILABLE');
        failures += 1;
      }
    }
    assert.ok(failures >= calls.length);
    assert.equal(emitter.getStats().broker.connected, false);
  });
});
