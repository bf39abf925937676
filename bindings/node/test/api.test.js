'use strict';

// Every call and every event of the Node API, against a real server and real
// `ws` clients.

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const herald = require('..');
const { Recorder, Client, eventually, expectThrow, withTimeout } = require('./helpers');

describe('module', () => {
  it('exports start, HeraldServer and version', () => {
    assert.equal(typeof herald.start, 'function');
    assert.equal(typeof herald.HeraldServer, 'function');
    assert.match(herald.version, /^\d+\.\d+\.\d+/);
  });

  it('HeraldServer is not constructible directly', () => {
    assert.throws(() => new herald.HeraldServer(), TypeError);
  });
});

describe('a running server', () => {
  let server;
  let rec;
  const clients = [];
  const connect = async (query) => {
    const c = await Client.connect(server.port, query);
    clients.push(c);
    return c;
  };

  before(async () => {
    server = await herald.start({ port: 0 });
    rec = new Recorder(server);
  });

  after(async () => {
    for (const c of clients) c.terminate();
    await server.close();
  });

  it('is an EventEmitter listening on the port it reports', () => {
    assert.ok(server instanceof herald.HeraldServer);
    assert.ok(server instanceof require('node:events').EventEmitter);
    assert.ok(Number.isInteger(server.port) && server.port > 0 && server.port < 65536);
    assert.equal(server.listening, true);
  });

  it("emits 'connection' with the client's id, userId, sessionId and address", async () => {
    const c = await connect({ userId: 'conn-user', sessionId: 'conn-session' });
    const e = await rec.wait('connection', { clientId: c.id });
    assert.equal(e.type, 'connected');
    assert.equal(e.userId, 'conn-user');
    assert.equal(e.sessionId, 'conn-session');
    assert.equal(typeof e.remoteAddr, 'string');
    assert.equal(typeof e.timestamp, 'string');
    // Query parameters subscribe the client at once: to user:<id> and session:<id>.
    await rec.wait('subscribe', { clientId: c.id, channel: 'user:conn-user' });
    await rec.wait('subscribe', { clientId: c.id, channel: 'session:conn-session' });
    const anon = await connect();
    const e2 = await rec.wait('connection', { clientId: anon.id });
    assert.equal(e2.userId, null);
    assert.equal(e2.sessionId, null);
  });

  it("emits 'subscribe' and 'unsubscribe' for channels and sessions", async () => {
    const c = await connect();
    c.send({ type: 'subscribe', channel: 'sub-news' });
    await c.next({ type: 'subscribed', channel: 'sub-news' });
    const s = await rec.wait('subscribe', { clientId: c.id, channel: 'sub-news' });
    assert.equal(s.type, 'subscribed');
    assert.equal(typeof s.timestamp, 'string');

    c.send({ type: 'subscribe', sessionId: 'sub-session' });
    await c.next({ type: 'subscribed', sessionId: 'sub-session' });
    await rec.wait('subscribe', { clientId: c.id, channel: 'session:sub-session' });

    c.send({ type: 'unsubscribe', channel: 'sub-news' });
    await c.next({ type: 'unsubscribed' });
    const u = await rec.wait('unsubscribe', { clientId: c.id, channel: 'sub-news' });
    assert.equal(u.type, 'unsubscribed');

    c.send({ type: 'unsubscribe', sessionId: 'sub-session' });
    await c.next({ type: 'unsubscribed' });
    await rec.wait('unsubscribe', { clientId: c.id, channel: 'session:sub-session' });
  });

  it("emits 'message' with the client's whole object", async () => {
    const c = await connect({ userId: 'msg-user' });
    const sent = { type: 'chat', text: 'héllo ✓', n: [1, 2, { deep: true }] };
    c.send(sent);
    const e = await rec.wait('message', { clientId: c.id });
    assert.equal(e.type, 'client_message');
    assert.deepEqual(e.message, sent);
    assert.equal(e.userId, 'msg-user');
    // Protocol messages are not forwarded: a ping answered with a pong is no 'message'.
    await c.sync();
    assert.equal(rec.all('message', { clientId: c.id }).length, 1);
  });

  it("emits 'disconnect' with the close code and reason", async () => {
    const c = await connect({ userId: 'bye-user' });
    await rec.wait('connection', { clientId: c.id });
    await c.close(4321, 'see you');
    const e = await rec.wait('disconnect', { clientId: c.id });
    assert.equal(e.type, 'disconnected');
    assert.equal(e.code, 4321);
    assert.equal(e.reason, 'see you');
    assert.equal(e.userId, 'bye-user');
  });

  it('notifyAIStart/Progress/Complete/Error reach the subscribers of the session only', async () => {
    const sub = await connect({ sessionId: 'ai-1' });
    const other = await connect({ sessionId: 'ai-2' });
    server.notifyAIStart('ai-1', { id: 'job', prompt: 'p' });
    server.notifyAIProgress('ai-1', { percent: 50 });
    server.notifyAIComplete('ai-1', '{"text":"done"}'); // JSON object text works too
    server.notifyAIError('ai-1', { message: 'boom' });
    const start = await sub.next({ type: 'ai_start' });
    assert.equal(start.sessionId, 'ai-1');
    assert.deepEqual(start.task, { id: 'job', prompt: 'p' });
    assert.equal(typeof start.timestamp, 'string');
    assert.ok(Number.isInteger(start.seq));
    assert.equal(typeof start.epoch, 'string');
    const progress = await sub.next({ type: 'ai_progress' });
    assert.deepEqual(progress.progress, { percent: 50 });
    assert.ok(progress.seq > start.seq, 'seq increases');
    const complete = await sub.next({ type: 'ai_complete' });
    assert.deepEqual(complete.result, { text: 'done' });
    const error = await sub.next({ type: 'ai_error' });
    assert.deepEqual(error.error, { message: 'boom' });
    // An Error instance is sent as {message, code}.
    const err = new Error('it broke');
    err.code = 'E_MODEL';
    server.notifyAIError('ai-1', err);
    const error2 = await sub.next({ type: 'ai_error' });
    assert.deepEqual(error2.error, { message: 'it broke', code: 'E_MODEL' });

    await other.sync();
    assert.deepEqual(
      other.pending().filter((m) => m.type.startsWith('ai_')),
      [],
      'a client of another session got nothing',
    );
  });

  it('broadcast reaches every client', async () => {
    const a = await connect();
    const b = await connect({ userId: 'bc-user' });
    server.broadcast({ type: 'notice', text: 'hello all' });
    server.broadcast('{"type":"notice","text":"as text","timestamp":"fixed"}');
    for (const c of [a, b]) {
      const m = await c.next({ type: 'notice', text: 'hello all' });
      assert.equal(typeof m.timestamp, 'string', 'timestamp added');
      const t = await c.next({ type: 'notice', text: 'as text' });
      assert.equal(t.timestamp, 'fixed', 'a timestamp given is kept');
    }
  });

  it('broadcastToUser reaches the clients of that user only', async () => {
    const u1 = await connect({ userId: 'btu-1' });
    const u1b = await connect({ userId: 'btu-1' });
    const u2 = await connect({ userId: 'btu-2' });
    server.broadcastToUser('btu-1', { type: 'dm', text: 'for you' });
    for (const c of [u1, u1b]) {
      const m = await c.next({ type: 'dm' });
      assert.equal(m.text, 'for you');
      assert.equal(m.channel, 'user:btu-1');
      assert.ok(Number.isInteger(m.seq));
    }
    await u2.sync();
    assert.deepEqual(u2.pending().filter((m) => m.type === 'dm'), []);
  });

  it('publish reaches the subscribers of the channel, and getHistory returns it', async () => {
    const sub = await connect();
    const notSub = await connect();
    sub.send({ type: 'subscribe', channel: 'pub-chan' });
    await sub.next({ type: 'subscribed', channel: 'pub-chan' });
    server.publish('pub-chan', { type: 'update', v: 1 });
    server.publish('pub-chan', '{"type":"update","v":2}');
    const m1 = await sub.next({ type: 'update', v: 1 });
    const m2 = await sub.next({ type: 'update', v: 2 });
    assert.equal(m1.channel, 'pub-chan');
    assert.ok(m2.seq > m1.seq);
    assert.equal(typeof m1.epoch, 'string');
    await notSub.sync();
    assert.deepEqual(notSub.pending().filter((m) => m.type === 'update'), []);

    const history = server.getHistory('pub-chan');
    assert.ok(Array.isArray(history));
    const updates = history.filter((h) => JSON.stringify(h).includes('"update"'));
    assert.equal(updates.length, 2, `history: ${JSON.stringify(history)}`);
    assert.deepEqual(server.getHistory('never-published'), []);
  });

  it('send reaches one client; an unknown client throws HERALD_UNKNOWN_CLIENT', async () => {
    const a = await connect();
    const b = await connect();
    server.send(a.id, { type: 'private', text: 'just a' });
    server.send(a.id, '{"type":"private","text":"text form"}');
    assert.equal((await a.next({ type: 'private', text: 'just a' })).text, 'just a');
    await a.next({ type: 'private', text: 'text form' });
    await b.sync();
    assert.deepEqual(b.pending().filter((m) => m.type === 'private'), []);
    expectThrow(assert, () => server.send('no-such-client', { type: 'x' }), 'HERALD_UNKNOWN_CLIENT');
  });

  it('getStats reports connections and clients', async () => {
    const c = await connect({ userId: 'stats-user', sessionId: 'stats-session' });
    await rec.wait('connection', { clientId: c.id });
    const stats = server.getStats();
    for (const key of ['totalConnections', 'activeConnections', 'messagesSent', 'messagesReceived', 'evictions']) {
      assert.equal(typeof stats[key], 'number', `stats.${key}`);
    }
    assert.ok(stats.activeConnections >= 1);
    assert.ok(stats.totalConnections >= stats.activeConnections);
    const me = stats.clients.find((x) => x.id === c.id);
    assert.ok(me, 'the client is listed');
    assert.equal(me.userId, 'stats-user');
    assert.equal(me.sessionId, 'stats-session');
    assert.equal(me.isAlive, true);
    assert.match(me.remoteAddr, /^127\.0\.0\.1:\d+$/);
    // The same JSON is served over HTTP.
    const res = await fetch(`http://127.0.0.1:${server.port}/api/ws/stats`);
    assert.equal(res.status, 200);
    assert.equal(typeof (await res.json()).activeConnections, 'number');
  });

  it('ref() and unref() return the server', () => {
    assert.equal(server.unref(), server);
    assert.equal(server.ref(), server);
  });

  describe('bad arguments', () => {
    const idMethods = [
      ['notifyAIStart', 'sessionId'],
      ['notifyAIProgress', 'sessionId'],
      ['notifyAIComplete', 'sessionId'],
      ['notifyAIError', 'sessionId'],
      ['broadcastToUser', 'userId'],
      ['publish', 'channel'],
      ['send', 'clientId'],
    ];

    it('a non-string id throws a TypeError (ERR_INVALID_ARG_TYPE)', () => {
      for (const [method] of idMethods) {
        for (const bad of [undefined, null, 42, {}, ['a']]) {
          expectThrow(assert, () => server[method](bad, { type: 'x' }), 'ERR_INVALID_ARG_TYPE', TypeError);
        }
      }
      expectThrow(assert, () => server.getHistory(7), 'ERR_INVALID_ARG_TYPE', TypeError);
    });

    it('a message that is neither an object nor a string throws a TypeError', () => {
      const calls = [
        (m) => server.broadcast(m),
        ...idMethods.map(([method]) => (m) => server[method]('bad-args', m)),
      ];
      for (const call of calls) {
        for (const bad of [undefined, null, 42, true, [1, 2], () => {}]) {
          expectThrow(assert, () => call(bad), 'ERR_INVALID_ARG_TYPE', TypeError);
        }
      }
    });

    it('a string that is not JSON object text throws HERALD_INVALID_JSON', () => {
      for (const bad of ['not json', '[1,2]', '"str"', '42', '', '{"unterminated":']) {
        expectThrow(assert, () => server.broadcast(bad), 'HERALD_INVALID_JSON');
        expectThrow(assert, () => server.publish('chan', bad), 'HERALD_INVALID_JSON');
        expectThrow(assert, () => server.notifyAIProgress('s', bad), 'HERALD_INVALID_JSON');
      }
    });

    it('an empty id throws HERALD_INVALID_ARGUMENT', () => {
      expectThrow(assert, () => server.notifyAIStart('', {}), 'HERALD_INVALID_ARGUMENT');
      expectThrow(assert, () => server.broadcastToUser('', {}), 'HERALD_INVALID_ARGUMENT');
      expectThrow(assert, () => server.publish('', {}), 'HERALD_INVALID_ARGUMENT');
      expectThrow(assert, () => server.getHistory(''), 'HERALD_INVALID_ARGUMENT');
    });

    it('errors are real Errors with the core message', () => {
      try {
        server.broadcast('nope');
        assert.fail('did not throw');
      } catch (err) {
        assert.ok(err instanceof Error);
        assert.equal(err.code, 'HERALD_INVALID_JSON');
        assert.match(err.message, /json/i);
        assert.ok(err.stack.includes('api.test.js'), 'the stack points at the caller');
      }
    });

    it('close() with bad options throws', () => {
      assert.throws(() => server.close('soon'), { code: 'ERR_INVALID_ARG_TYPE' });
      assert.throws(() => server.close({ timeoutMs: -1 }), { code: 'ERR_OUT_OF_RANGE' });
      assert.throws(() => server.close({ timeoutMs: 1.5 }), { code: 'ERR_OUT_OF_RANGE' });
      assert.equal(server.listening, true, 'a rejected close() leaves the server open');
    });
  });
});

describe('events and listeners', () => {
  it('events reach listeners attached at any time, and stop once none is left', async () => {
    // The addon sends JS only the event types that have listeners: check that adding,
    // removing and once() listeners keep the emitted events exactly right.
    const server = await herald.start({ port: 0 });
    const c = await Client.connect(server.port);
    try {
      // Events are delivered in order on one thread: once a later client message has
      // reached a listener, every earlier event has been delivered or skipped.
      const settle = async (tag) => {
        const heard = new Promise((resolve) => server.once('message', resolve));
        c.send({ type: 'settle', tag });
        assert.equal((await withTimeout(heard, `message ${tag}`)).message.tag, tag);
      };
      c.send({ type: 'subscribe', channel: 'unheard' });
      await c.next({ type: 'subscribed', channel: 'unheard' });
      await settle('before-listener');

      const seen = [];
      const onSubscribe = (e) => seen.push(e.channel);
      server.on('subscribe', onSubscribe);
      const once = new Promise((resolve) => server.once('subscribe', resolve));
      c.send({ type: 'subscribe', channel: 'heard-1' });
      await c.next({ type: 'subscribed', channel: 'heard-1' });
      assert.equal((await withTimeout(once, 'once(subscribe)')).channel, 'heard-1');
      await withTimeout(
        (async () => {
          while (seen.length < 1) await new Promise((r) => setTimeout(r, 10));
        })(),
        'subscribe event',
      );

      server.off('subscribe', onSubscribe);
      c.send({ type: 'subscribe', channel: 'unheard-2' });
      await c.next({ type: 'subscribed', channel: 'unheard-2' });
      await settle('after-removal');
      const again = new Promise((resolve) => server.on('subscribe', resolve));
      c.send({ type: 'subscribe', channel: 'heard-2' });
      await c.next({ type: 'subscribed', channel: 'heard-2' });
      assert.equal((await withTimeout(again, 'subscribe after re-adding')).channel, 'heard-2');
      assert.deepEqual(seen, ['heard-1'], 'no event before a listener, none after it was removed');
    } finally {
      c.terminate();
      await server.close();
    }
  });
});

describe('start()', () => {
  it('accepts the core keys in snake_case and camelCase', async () => {
    const s = await herald.start({
      port: 0,
      path: '/live',
      heartbeat_interval_ms: 10_000,
      heartbeatTimeoutMs: 20_000,
      maxMessageSize: 4096,
      history: { size: 2, ttlMs: 60_000 },
      workerThreads: undefined, // undefined means "default"
    });
    try {
      const c = await Client.connect(s.port, {}, '/live');
      c.send({ type: 'subscribe', channel: 'h' });
      await c.next({ type: 'subscribed' });
      for (let i = 0; i < 3; i += 1) s.publish('h', { type: 'n', i });
      await c.next({ type: 'n', i: 2 });
      // history.size (camelCase inside a nested object) took effect.
      assert.deepEqual(
        s.getHistory('h').map((m) => m.i),
        [1, 2],
      );
      c.terminate();
    } finally {
      await s.close();
    }
  });

  it('rejects an unknown key with HERALD_INVALID_CONFIG', async () => {
    await assert.rejects(herald.start({ port: 0, colour: 'blue' }), (err) => {
      assert.ok(err instanceof Error);
      assert.equal(err.code, 'HERALD_INVALID_CONFIG');
      assert.match(err.message, /colour/);
      return true;
    });
  });

  it('rejects a value of the wrong type with HERALD_INVALID_CONFIG', async () => {
    await assert.rejects(herald.start({ port: 'eighty' }), { code: 'HERALD_INVALID_CONFIG' });
    await assert.rejects(herald.start({ port: 70000 }), { code: 'HERALD_INVALID_CONFIG' });
  });

  it('rejects non-object options with a TypeError', async () => {
    for (const bad of ['port=0', 42, [1], true]) {
      await assert.rejects(herald.start(bad), { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' });
    }
  });

  it('throws HERALD_QUEUE_FULL when calls outrun the dispatcher (publish_queue_size)', async () => {
    const s = await herald.start({ port: 0, publish_queue_size: 1 });
    try {
      let error;
      for (let i = 0; i < 1_000_000 && !error; i += 1) {
        try {
          s.publish('flood', { i });
        } catch (err) {
          error = err;
        }
      }
      assert.ok(error, 'a million calls never found the queue full');
      assert.equal(error.code, 'HERALD_QUEUE_FULL');
      assert.match(error.message, /queue/);
    } finally {
      await s.close();
    }
  });

  it('throws HERALD_LIMIT for a publication to a new channel once max_channels are in use', async () => {
    // History is on by default, so the first session's channel outlives its publication.
    const s = await herald.start({ port: 0, max_channels: 1 });
    try {
      s.notifyAIStart('a', { step: 1 });
      await eventually(() => s.getStats().channels === 1, 'the first channel');
      expectThrow(assert, () => s.notifyAIStart('b', { step: 1 }), 'HERALD_LIMIT');
      expectThrow(assert, () => s.notifyAIProgress('b', { percent: 1 }), 'HERALD_LIMIT');
      expectThrow(assert, () => s.publish('news', { type: 'x' }), 'HERALD_LIMIT');
      expectThrow(assert, () => s.broadcastToUser('u', { type: 'x' }), 'HERALD_LIMIT');
      // The channel that exists still takes publications.
      s.notifyAIProgress('a', { percent: 50 });
      s.publish('session:a', { type: 'note' });
      const history = await eventually(() => {
        const h = s.getHistory('session:a');
        return h.length >= 3 && h;
      }, 'the session history');
      assert.deepEqual(
        history.map((m) => m.type),
        ['ai_start', 'ai_progress', 'note'],
      );
      assert.deepEqual(s.getHistory('session:b'), []);
    } finally {
      await s.close();
    }
  });

  it('accepts the memory bounds and the admin token, in both spellings', async () => {
    for (const options of [
      { client_queue_bytes: 1 << 20, socket_send_buffer: 1 << 16, max_memory: 1 << 28, event_queue_bytes: 1 << 22, admin_token: 'admin-secret-token-1' },
      { clientQueueBytes: 1 << 20, socketSendBuffer: 0, maxMemory: 1 << 28, eventQueueBytes: 1 << 22, adminToken: 'admin-secret-token-1' },
    ]) {
      const s = await herald.start({ port: 0, ...options });
      try {
        const url = `http://127.0.0.1:${s.port}/api/ws/stats`;
        assert.equal((await fetch(url)).status, 401, 'the admin token is in force');
        const res = await fetch(url, { headers: { authorization: 'Bearer admin-secret-token-1' } });
        assert.equal(res.status, 200);
        assert.equal(typeof (await res.json()).eventsDropped, 'number');
      } finally {
        await s.close();
      }
    }
  });

  it('rejects with HERALD_IO when the port is taken', async () => {
    const a = await herald.start({ port: 0 });
    try {
      await assert.rejects(herald.start({ port: a.port }), (err) => {
        assert.equal(err.code, 'HERALD_IO');
        assert.ok(err.message.length > 0);
        return true;
      });
    } finally {
      await a.close();
    }
  });
});

describe('close()', () => {
  it('closes clients with 1001, emits their disconnects, then resolves and emits close', async () => {
    const server = await herald.start({ port: 0 });
    const rec = new Recorder(server);
    const a = await Client.connect(server.port, { sessionId: 'closing' });
    const b = await Client.connect(server.port);
    await rec.wait('connection', { clientId: a.id });
    await rec.wait('connection', { clientId: b.id });
    let closeEvents = 0;
    server.on('close', () => {
      closeEvents += 1;
    });
    server.notifyAIComplete('closing', { last: true });
    const closing = server.close();
    assert.equal(server.listening, false, 'listening turns false at once');
    await withTimeout(closing, 'close()');
    // Queued messages are flushed before the close frame.
    assert.deepEqual((await a.next({ type: 'ai_complete' })).result, { last: true });
    assert.equal((await withTimeout(a.closed, 'client a close')).code, 1001);
    assert.equal((await withTimeout(b.closed, 'client b close')).code, 1001);
    // Every event was emitted before close() resolved.
    assert.equal(rec.all('disconnect', { clientId: a.id }).length, 1);
    assert.equal(rec.all('disconnect', { clientId: b.id }).length, 1);
    assert.equal(closeEvents, 1);
  });

  it('twice: the second call returns the same promise and resolves', async () => {
    const server = await herald.start({ port: 0 });
    const first = server.close();
    const second = server.close();
    assert.equal(first, second);
    await first;
    await server.close(); // after it finished, too
    let closeEvents = 0;
    server.on('close', () => (closeEvents += 1));
    await server.close();
    assert.equal(closeEvents, 0, "'close' is emitted once");
  });

  it('after close every call throws HERALD_STOPPED and the port stays readable', async () => {
    const server = await herald.start({ port: 0 });
    const port = server.port;
    await server.close();
    assert.equal(server.port, port);
    assert.equal(server.listening, false);
    const calls = [
      () => server.notifyAIStart('s', {}),
      () => server.notifyAIProgress('s', {}),
      () => server.notifyAIComplete('s', {}),
      () => server.notifyAIError('s', {}),
      () => server.broadcast({}),
      () => server.broadcastToUser('u', {}),
      () => server.publish('c', {}),
      () => server.send('c', {}),
      () => server.getStats(),
      () => server.getHistory('c'),
      () => server.setAuthorizer(() => true),
      () => server.setAuthorizer(null),
    ];
    for (const call of calls) expectThrow(assert, call, 'HERALD_STOPPED');
    // ref/unref after close are harmless no-ops.
    server.ref();
    server.unref();
    // The port is free again.
    const again = await herald.start({ port });
    await again.close();
  });

  it('accepts a timeout', async () => {
    const server = await herald.start({ port: 0 });
    const c = await Client.connect(server.port);
    await server.close({ timeoutMs: 0 });
    await withTimeout(c.closed, 'client close');
  });
});
