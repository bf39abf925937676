'use strict';

// The promise forms of the sending calls (publishAsync, notifyAIProgressAsync, ...).
// With the Redis broker a sending call waits for Redis to confirm: the synchronous form
// holds the event loop for that long, the promise form does not. Against a real
// redis-server and real `ws` clients.

const { describe, it, after } = require('node:test');
const assert = require('node:assert/strict');
const herald = require('..');
const { Client, eventually } = require('./helpers');
const { RedisServer } = require('./redis');

const TIMEOUT_MS = 800;
const broker = (redis) => ({ redis: { url: redis.url, prefix: 'node-async:', timeoutMs: TIMEOUT_MS } });

/** Settles to {ok, value | error} without throwing, and says whether it has settled. */
function track(promise) {
  const state = { settled: false };
  state.done = promise.then(
    (value) => Object.assign(state, { settled: true, ok: true, value }),
    (error) => Object.assign(state, { settled: true, ok: false, error }),
  );
  return state;
}

/** For `eventually`: true once a publication through the broker succeeds. */
const publishes = (node) => () =>
  node.publishAsync('news', { type: 'probe' }).then(
    () => true,
    () => false,
  );

describe('promise forms of the sending calls', () => {
  const cleanup = [];
  after(async () => {
    for (const step of cleanup.reverse()) await step();
  });

  it('through Redis: every form resolves once Redis holds it, in the order made', async () => {
    const redis = await RedisServer.start();
    cleanup.push(() => redis.kill());
    const node = await herald.start({ port: 0, broker: broker(redis) });
    cleanup.push(() => node.close());

    const session = await Client.connect(node.port, { sessionId: 'S', userId: 'u1' });
    cleanup.push(() => session.terminate());
    session.send({ type: 'subscribe', channel: 'news' });
    await session.next({ type: 'subscribed', channel: 'news' });

    // Made without awaiting: they must still take effect in this order.
    const calls = [node.notifyAIStartAsync('S', { task: 't' })];
    for (let percent = 1; percent <= 50; percent += 1) calls.push(node.notifyAIProgressAsync('S', { percent }));
    calls.push(node.notifyAICompleteAsync('S', { ok: true }));
    calls.push(node.notifyAIErrorAsync('S2', new Error('nobody listens')));
    for (let i = 1; i <= 20; i += 1) calls.push(node.publishAsync('news', { type: 'note', i }));
    calls.push(node.broadcastAsync({ type: 'all' }));
    calls.push(node.broadcastToUserAsync('u1', { type: 'mine' }));
    calls.push(node.sendAsync(session.id, { type: 'direct' }));
    const results = await Promise.all(calls);
    assert.ok(results.every((r) => r === undefined), 'each promise resolves to undefined');

    const ai = [];
    for (let n = 0; n < 52; n += 1) ai.push(await session.next({ sessionId: 'S' }));
    assert.deepEqual(
      ai.map((m) => m.seq),
      Array.from({ length: 52 }, (_, k) => k + 1),
    );
    assert.equal(ai[0].type, 'ai_start');
    assert.deepEqual(
      ai.slice(1, 51).map((m) => m.progress.percent),
      Array.from({ length: 50 }, (_, k) => k + 1),
    );
    assert.equal(ai[51].type, 'ai_complete');
    const notes = [];
    for (let n = 0; n < 20; n += 1) notes.push(await session.next({ type: 'note' }));
    assert.deepEqual(
      notes.map((m) => m.i),
      Array.from({ length: 20 }, (_, k) => k + 1),
    );
    await session.next({ type: 'all' });
    await session.next({ type: 'mine', channel: 'user:u1' });
    await session.next({ type: 'direct' });

    // Errors reject, bad arguments included; nothing throws synchronously.
    const badArg = node.publishAsync(42, {});
    assert.ok(badArg instanceof Promise);
    await assert.rejects(badArg, { code: 'ERR_INVALID_ARG_TYPE' });
    await assert.rejects(node.publishAsync('news', '[1]'), { code: 'HERALD_INVALID_JSON' });
    await assert.rejects(node.sendAsync('nobody-1', { type: 'x' }), { code: 'HERALD_UNKNOWN_CLIENT' });
  });

  it('through Redis: a stalled Redis holds the promise, not the event loop', async () => {
    const redis = await RedisServer.start();
    cleanup.push(() => redis.kill());
    const node = await herald.start({ port: 0, broker: broker(redis) });
    cleanup.push(() => node.close());
    await node.publishAsync('news', { type: 'warm-up' });

    redis.pause();
    cleanup.push(() => redis.resume());
    // The synchronous form waits on the JS thread until the broker's timeout.
    const t0 = Date.now();
    assert.throws(() => node.publish('news', { type: 'blocked' }), { code: 'HERALD_UNAVAILABLE' });
    const blockedMs = Date.now() - t0;
    assert.ok(blockedMs >= TIMEOUT_MS / 2, `the synchronous call returned after ${blockedMs} ms`);

    // The timeout told the broker its link is lost: once a publication goes through
    // again it is on a new, working link; then stall Redis again.
    redis.resume();
    await eventually(publishes(node), 'a publication through Redis again');
    redis.pause();

    const t1 = Date.now();
    const call = track(node.publishAsync('news', { type: 'waits' }));
    const issuedMs = Date.now() - t1;
    assert.ok(issuedMs < TIMEOUT_MS / 4, `publishAsync returned after ${issuedMs} ms`);
    // Timers keep firing while the call waits for Redis.
    let ticks = 0;
    const timer = setInterval(() => {
      ticks += 1;
    }, 10);
    await new Promise((resolve) => setTimeout(resolve, TIMEOUT_MS / 2));
    const ticksWhilePending = ticks;
    const pendingThen = !call.settled;
    await call.done;
    clearInterval(timer);
    assert.ok(pendingThen, 'the promise was still pending while Redis was stalled');
    assert.ok(ticksWhilePending >= 5, `only ${ticksWhilePending} timer ticks while the call waited`);
    assert.equal(call.ok, false);
    assert.equal(call.error.code, 'HERALD_UNAVAILABLE');
    assert.ok(call.error instanceof Error);

    redis.resume();
    await eventually(publishes(node), 'a publication through Redis again');
  });

  it('in memory: the promise forms settle at once; after close they reject HERALD_STOPPED', async () => {
    const node = await herald.start({ port: 0 });
    const client = await Client.connect(node.port, { sessionId: 'M' });
    cleanup.push(() => client.terminate());
    await node.notifyAIProgressAsync('M', { percent: 5 });
    const got = await client.next({ type: 'ai_progress' });
    assert.equal(got.progress.percent, 5);
    await node.close();
    await assert.rejects(node.publishAsync('news', { type: 'late' }), { code: 'HERALD_STOPPED' });
  });

  it('through Redis: calls made after close() reject HERALD_STOPPED', async () => {
    const redis = await RedisServer.start();
    cleanup.push(() => redis.kill());
    const node = await herald.start({ port: 0, broker: broker(redis) });
    await node.publishAsync('news', { type: 'one' });
    const closing = node.close();
    await assert.rejects(node.publishAsync('news', { type: 'late' }), { code: 'HERALD_STOPPED' });
    await closing;
  });
});
