// HeraldClient against a real Herald server (Node binding), over real sockets.

import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { HeraldClient } from '../dist/esm/index.js';
import { eventually, fastOptions, once, sleep, startServer, trackedWebSocket, wsUrl } from './helpers.mjs';

describe('connection', () => {
  let server;
  before(async () => {
    server = await startServer();
  });
  after(() => server.close());

  test('connects, reports its states, and reconnects when the socket is cut', async () => {
    const tracked = trackedWebSocket();
    const states = [];
    const client = new HeraldClient(wsUrl(server), fastOptions(tracked, { autoConnect: false }));
    client.on('state', (s) => states.push(s));
    assert.equal(client.state, 'disconnected');
    const serverSaw = new Promise((resolve) => server.once('connection', resolve));
    client.connect();
    const welcome = await once(client, 'connected');
    assert.equal(client.state, 'connected');
    assert.equal(client.clientId, welcome.clientId);
    assert.equal((await serverSaw).clientId, welcome.clientId);

    assert.ok(tracked.kill());
    const lost = await once(client, 'disconnected');
    assert.equal(lost.code, 1006);
    assert.ok(lost.retryInMs >= 0 && lost.retryInMs <= 80, `retry delay ${lost.retryInMs} within the bounds`);
    assert.equal(client.state, 'reconnecting');
    const again = await once(client, 'connected');
    assert.notEqual(again.clientId, welcome.clientId);
    assert.equal(client.connectCount, 2);

    client.disconnect();
    assert.equal(client.state, 'disconnected');
    assert.deepEqual(states, ['connecting', 'connected', 'reconnecting', 'connected', 'disconnected']);
    await sleep(150);
    assert.equal(tracked.sockets.length, 2, 'no attempt after disconnect()');
  });

  test('a connection that stops answering pings is detected and replaced', async () => {
    const tracked = trackedWebSocket();
    const client = new HeraldClient(wsUrl(server), fastOptions(tracked, { pingIntervalMs: 50, pongTimeoutMs: 150 }));
    await once(client, 'connected');
    // Pings are answered while the link works.
    await sleep(200);
    assert.equal(client.state, 'connected');
    tracked.deafen();
    const lost = await once(client, 'disconnected');
    assert.deepEqual([lost.code, lost.reason], [4000, 'no answer to ping']);
    await once(client, 'connected');
    assert.equal(tracked.sockets.length, 2);
    client.disconnect();
  });

  test('backoff grows with failed attempts and stays within its bounds', async () => {
    // Nothing listens on this port: every attempt fails.
    const probe = await startServer();
    const url = wsUrl(probe);
    await probe.close();
    const tracked = trackedWebSocket();
    const client = new HeraldClient(url, { WebSocket: tracked.WebSocket, minReconnectDelayMs: 4, maxReconnectDelayMs: 40 });
    const delays = [];
    client.on('disconnected', (e) => e.retryInMs !== undefined && delays.push(e.retryInMs));
    await eventually(() => delays.length >= 12, '12 failed attempts');
    assert.equal(client.state, 'connecting', 'never connected: still "connecting"');
    client.disconnect();
    assert.ok(delays.every((d) => d >= 0 && d <= 40), `delays ${delays} within [0, 40]`);
    assert.ok(Math.max(...delays.slice(5)) > 4, 'later attempts may wait beyond the first bound');
  });

  test('getToken is asked before every attempt; a failing one counts as a failed attempt', async () => {
    const tracked = trackedWebSocket();
    let asked = 0;
    const client = new HeraldClient(
      wsUrl(server),
      fastOptions(tracked, {
        getToken: async () => {
          asked++;
          if (asked === 1) throw new Error('token service down');
          return `t${asked}`;
        },
      }),
    );
    const failure = await once(client, 'tokenError');
    assert.equal(failure.message, 'token service down');
    await once(client, 'connected');
    assert.equal(asked, 2);
    assert.ok(tracked.current().url.endsWith('token=t2'));
    assert.ok(tracked.kill());
    await once(client, 'connected');
    assert.equal(asked, 3, 'a fresh token for the reconnect');
    assert.ok(tracked.current().url.endsWith('token=t3'));
    client.disconnect();
  });

  test('a handler that throws does not stop the others nor the client', async () => {
    const tracked = trackedWebSocket();
    const client = new HeraldClient(wsUrl(server), fastOptions(tracked));
    const reported = [];
    const originalError = console.error;
    console.error = (...args) => reported.push(args);
    try {
      let second = 0;
      client.on('connected', () => {
        throw new Error('app bug');
      });
      client.on('connected', () => second++);
      await once(client, 'connected');
      assert.equal(second, 1);
      assert.equal(client.state, 'connected');
      assert.ok(reported.some((args) => args.some((a) => a instanceof Error && a.message === 'app bug')));
    } finally {
      console.error = originalError;
      client.disconnect();
    }
  });

  test('a refused URL or a missing WebSocket is a clear error', () => {
    assert.throws(() => new HeraldClient('http://127.0.0.1:1/ws', { autoConnect: false }), /ws:\/\/ or wss:\/\//);
    assert.throws(() => new HeraldClient('not a url'), TypeError);
    if (typeof globalThis.WebSocket === 'undefined') {
      assert.throws(() => new HeraldClient('ws://127.0.0.1:1/ws'), /pass options.WebSocket/);
    }
  });
});

describe('recovery', () => {
  test('over many forced disconnects every publication arrives exactly once, in order', async () => {
    const server = await startServer();
    const tracked = trackedWebSocket();
    const client = new HeraldClient(wsUrl(server), fastOptions(tracked));
    const sub = client.subscribe('stream');
    const seen = [];
    const gaps = [];
    sub.on('publication', (m) => seen.push(m.n));
    sub.on('gap', (g) => gaps.push(g));
    await once(sub, 'subscribed');

    let published = 0;
    let cuts = 0;
    const publisher = setInterval(() => {
      for (let i = 0; i < 2; i++) server.publish('stream', { type: 'tick', n: ++published });
    }, 2);
    // Cut the socket under the client every 30 ms (once it is back) while the stream runs.
    while (cuts < 25) {
      await sleep(30);
      if (tracked.kill()) cuts++;
    }
    await sleep(30);
    clearInterval(publisher);
    const total = published;
    await eventually(() => seen.length >= total, `all ${total} publications (have ${seen.length})`);
    await sleep(50);
    client.disconnect();
    await server.close();

    assert.ok(cuts >= 20, `at least 20 forced disconnects (${cuts})`);
    assert.deepEqual(gaps, []);
    assert.equal(seen.length, total, 'no duplicate');
    assert.deepEqual(seen, Array.from({ length: total }, (_, i) => i + 1), 'in order, none missing');
    assert.ok(client.connectCount > cuts / 2, `reconnected (${client.connectCount} connections for ${cuts} cuts)`);
  });

  test('a gap beyond the history is reported, then publications continue', async () => {
    const server = await startServer({ history: { size: 2 } });
    const tracked = trackedWebSocket();
    const client = new HeraldClient(wsUrl(server), fastOptions(tracked));
    const sub = client.subscribe({ channel: 'news' });
    const seen = [];
    sub.on('publication', (m) => seen.push(m.n));
    await once(sub, 'subscribed');
    server.publish('news', { n: 1 });
    await eventually(() => seen.length === 1, 'the first publication');
    client.disconnect();
    for (let n = 2; n <= 10; n++) server.publish('news', { n });
    const gap = once(sub, 'gap');
    client.connect();
    const { from, to } = await gap;
    assert.equal(from.seq, 1);
    assert.equal(to.seq, 10);
    assert.equal(from.epoch, to.epoch);
    server.publish('news', { n: 11 });
    await eventually(() => seen.includes(11), 'the next publication');
    assert.deepEqual(seen, [1, 11]);
    client.disconnect();
    await server.close();
  });

  test('a host stop and restart on the same port: the client comes back and reports the lost history', async () => {
    let server = await startServer();
    const port = server.port;
    const tracked = trackedWebSocket();
    const client = new HeraldClient(wsUrl(server), fastOptions(tracked));
    const sub = client.subscribe({ sessionId: 's1' });
    const seen = [];
    sub.on('publication', (m) => seen.push(m.progress.n));
    await once(sub, 'subscribed');
    server.notifyAIProgress('s1', { n: 1 });
    await eventually(() => seen.length === 1, 'the first notification');

    const closed = once(client, 'disconnected');
    await server.close();
    assert.equal((await closed).code, 1001);
    server = await startServer({ port });
    const gap = await once(sub, 'gap');
    assert.notEqual(gap.to.epoch, gap.from.epoch, 'a new server is a new epoch');
    server.notifyAIProgress('s1', { n: 2 });
    await eventually(() => seen.length === 2, 'the notification after the restart');
    assert.deepEqual(seen, [1, 2]);
    client.disconnect();
    await server.close();
  });

  test('unsubscribe and subscribe again at once (as React StrictMode does): no stale reply, no duplicate', async () => {
    const server = await startServer();
    const tracked = trackedWebSocket();
    const client = new HeraldClient(wsUrl(server), fastOptions(tracked));
    await once(client, 'connected');
    server.publish('c', { n: 1 });
    const first = client.subscribe('c', { history: 10 });
    first.unsubscribe();
    const second = client.subscribe('c', { history: 10 });
    assert.notEqual(first, second);
    const seen = [];
    let replies = 0;
    second.on('publication', (m) => seen.push(m.n));
    second.on('subscribed', () => replies++);
    await once(second, 'subscribed');
    server.publish('c', { n: 2 });
    await eventually(() => seen.includes(2), 'the live publication');
    await sleep(50);
    assert.deepEqual(seen, [1, 2], 'history then live, each once');
    assert.equal(replies, 1);
    assert.equal(server.getStats().subscriptions, 1);
    second.unsubscribe();
    await eventually(() => server.getStats().subscriptions === 0, 'the server to drop the subscription');
    client.disconnect();
    await server.close();
  });
});

describe('authorization', () => {
  const secret = 'a-test-secret-of-32-bytes-length!';
  let server;
  before(async () => {
    server = await startServer({ auth: { required: true, jwt_secret: secret, public_channels: ['*'] } });
  });
  after(() => server.close());

  test('1008: asks for a new token once, then stops and reports', async () => {
    const tracked = trackedWebSocket();
    let asked = 0;
    const client = new HeraldClient(wsUrl(server), fastOptions(tracked, { getToken: async () => `bad-${++asked}` }));
    const refused = await once(client, 'unauthorized');
    assert.equal(refused.code, 1008);
    assert.equal(client.state, 'disconnected');
    await sleep(300);
    assert.equal(asked, 2, 'one fresh token, then no loop');
    assert.equal(tracked.sockets.length, 2);
    assert.ok(tracked.urls().every((u, i) => u.endsWith(`token=bad-${i + 1}`)), tracked.urls().join(' '));
  });

  test('1008 then a good token: connected', async () => {
    const { hs256 } = await import('./jwt.mjs');
    const tracked = trackedWebSocket();
    const tokens = ['expired-or-bad', hs256({ sub: 'ann', exp: Math.floor(Date.now() / 1000) + 60 }, secret)];
    const client = new HeraldClient(wsUrl(server), fastOptions(tracked, { getToken: () => tokens.shift() }));
    await once(client, 'connected');
    assert.equal(tracked.sockets.length, 2);
    assert.equal(server.getStats().clients.find((c) => c.id === client.clientId).userId, 'ann');
    client.disconnect();
  });

  test('a static token refused twice stops too', async () => {
    const tracked = trackedWebSocket();
    const client = new HeraldClient(wsUrl(server), fastOptions(tracked, { token: 'nope' }));
    await once(client, 'unauthorized');
    await sleep(200);
    assert.equal(tracked.sockets.length, 2);
  });
});

describe('outgoing queue', () => {
  test('messages sent while disconnected are queued (bounded, oldest dropped) and flushed on connect', async () => {
    const server = await startServer();
    const received = [];
    server.on('message', (e) => received.push(e.message.n));
    const tracked = trackedWebSocket();
    const client = new HeraldClient(wsUrl(server), fastOptions(tracked, { autoConnect: false, maxQueuedMessages: 3 }));
    const dropped = [];
    client.on('dropped', (m) => dropped.push(m.n));
    for (let n = 1; n <= 5; n++) assert.equal(client.send({ type: 'chat', n }), false);
    assert.equal(client.queued, 3);
    assert.deepEqual(dropped, [1, 2]);
    client.connect();
    await eventually(() => received.length === 3, 'the queued messages at the server');
    assert.deepEqual(received, [3, 4, 5]);
    assert.equal(client.queued, 0);
    assert.equal(client.send({ type: 'chat', n: 6 }), true);
    await eventually(() => received.length === 4, 'a live message');

    // Cut: sent during the outage, delivered after the reconnect, in order.
    assert.ok(tracked.kill());
    await once(client, 'disconnected');
    client.send({ type: 'chat', n: 7 });
    client.send({ type: 'chat', n: 8 });
    await eventually(() => received.length === 6, 'messages queued during the outage');
    assert.deepEqual(received, [3, 4, 5, 6, 7, 8]);
    client.disconnect();
    await server.close();
  });
});

describe('jobs', () => {
  test('idle -> running with progress -> complete, then error on the next job', async () => {
    const server = await startServer();
    const tracked = trackedWebSocket();
    const client = new HeraldClient(wsUrl(server), fastOptions(tracked));
    const job = client.job('j1');
    const statuses = [];
    job.on('change', (s) => statuses.push(s.status));
    assert.deepEqual(job.state, { status: 'idle' });
    await once(client, 'connected');
    await eventually(() => server.getStats().subscriptions === 1, 'the job subscription');
    server.notifyAIStart('j1', { prompt: 'p' });
    server.notifyAIProgress('j1', { percent: 50 });
    await eventually(() => job.state.progress?.percent === 50, 'progress');
    assert.deepEqual(job.state, { status: 'running', task: { prompt: 'p' }, progress: { percent: 50 } });
    server.notifyAIComplete('j1', { output: 'done' });
    await eventually(() => job.state.status === 'complete', 'completion');
    assert.deepEqual(job.state.result, { output: 'done' });
    server.notifyAIStart('j1', { prompt: 'q' });
    server.notifyAIError('j1', { message: 'overloaded' });
    await eventually(() => job.state.status === 'error', 'the error');
    assert.deepEqual(job.state, { status: 'error', task: { prompt: 'q' }, error: { message: 'overloaded' } });
    assert.deepEqual(statuses, ['running', 'running', 'complete', 'running', 'error']);
    job.close();
    client.disconnect();
    await server.close();
  });

  test('a new client (a reloaded page) restores the job from the snapshot', async () => {
    const server = await startServer();
    server.notifyAIStart('j2', { prompt: 'old' });
    server.notifyAIComplete('j2', { output: 'old result' });
    server.notifyAIStart('j2', { prompt: 'current' });
    server.notifyAIProgress('j2', { percent: 40 });
    await eventually(() => server.getHistory('session:j2').length === 4, 'the history');

    const tracked = trackedWebSocket();
    const client = new HeraldClient(wsUrl(server), fastOptions(tracked));
    const job = client.job('j2');
    await eventually(() => job.state.progress?.percent === 40, 'the restored state');
    assert.deepEqual(job.state, { status: 'running', task: { prompt: 'current' }, progress: { percent: 40 } });
    server.notifyAIProgress('j2', { percent: 80 });
    await eventually(() => job.state.progress?.percent === 80, 'the live progress');

    // A job on a session with nothing yet stays idle.
    const idle = client.job('nothing-here');
    await sleep(100);
    assert.deepEqual(idle.state, { status: 'idle' });
    idle.close();
    job.close();
    client.disconnect();
    await server.close();
  });

  test('a new client mid-stream starts from the snapshot, follows the deltas, and cancel reaches the host', async () => {
    const server = await startServer();
    const cancels = [];
    server.on('cancel', (e) => cancels.push(e));
    server.notifyAIStart('j4', { jobId: 'a', prompt: 'p' });
    const tokens = Array.from({ length: 60 }, (_, n) => `k${n} `);
    for (const text of tokens.slice(0, 30)) server.notifyAIDelta('j4', { jobId: 'a', text });
    await eventually(() => server.getJobs('j4').jobs[0]?.text === tokens.slice(0, 30).join(''), 'the state');

    const tracked = trackedWebSocket();
    const client = new HeraldClient(wsUrl(server), fastOptions(tracked));
    const job = client.job('j4');
    await eventually(() => job.state.text === tokens.slice(0, 30).join(''), 'the text so far');
    assert.equal(job.state.status, 'running');
    assert.equal(job.state.jobId, 'a');
    for (const text of tokens.slice(30)) server.notifyAIDelta('j4', { jobId: 'a', text });
    await eventually(() => job.state.text === tokens.join(''), 'the whole text, once');
    assert.equal(job.cancel(), true);
    await eventually(() => cancels.length === 1, "the host's 'cancel' event");
    assert.deepEqual([cancels[0].sessionId, cancels[0].jobId], ['j4', 'a']);
    server.notifyAICancelled('j4', { jobId: 'a' });
    await eventually(() => job.state.status === 'cancelled', 'cancelled');
    assert.equal(job.state.text, tokens.join(''));
    job.close();
    client.disconnect();
    await server.close();
  });

  test('a job sharing a session subscription that asked for history counts no text twice', async () => {
    const server = await startServer();
    server.notifyAIStart('j5', { jobId: 'a' });
    for (const text of ['x', 'y', 'z']) server.notifyAIDelta('j5', { jobId: 'a', text });
    await eventually(() => server.getJobs('j5').jobs[0]?.text === 'xyz', 'the state');
    const tracked = trackedWebSocket();
    const client = new HeraldClient(wsUrl(server), fastOptions(tracked));
    const replayed = [];
    const sub = client.subscribe({ sessionId: 'j5' }, { history: 10 });
    sub.on('publication', (m) => replayed.push(m.type));
    const job = client.job('j5');
    await eventually(() => replayed.length === 4, 'the history replay for the listener that asked for it');
    assert.deepEqual(replayed, ['ai_start', 'ai_delta', 'ai_delta', 'ai_delta']);
    server.notifyAIDelta('j5', { jobId: 'a', text: '!' });
    await eventually(() => job.state.text === 'xyz!', 'the live delta');
    assert.equal(job.state.text, 'xyz!', 'the replayed deltas were in the snapshot already');
    job.close();
    sub.unsubscribe();
    client.disconnect();
    await server.close();
  });

  test('a job keeps its state through forced disconnects during the stream', async () => {
    const server = await startServer();
    const tracked = trackedWebSocket();
    const client = new HeraldClient(wsUrl(server), fastOptions(tracked));
    const job = client.job('j3');
    const percents = [];
    job.on('change', (s) => s.progress && percents.push(s.progress.percent));
    await once(client, 'connected');
    await eventually(() => server.getStats().subscriptions === 1, 'the job subscription');
    server.notifyAIStart('j3', { prompt: 'long' });
    // Once the job has a position, every reconnect recovers from it: each progress is
    // seen. (A client cut off before its first reply starts over from the snapshot,
    // which holds only the latest progress.)
    await eventually(() => job.state.status === 'running', 'the running job');
    for (let p = 1; p <= 100; p++) {
      server.notifyAIProgress('j3', { percent: p });
      if (p % 10 === 0) {
        tracked.kill();
        await sleep(15);
      }
    }
    server.notifyAIComplete('j3', { output: 'ok' });
    await eventually(() => job.state.status === 'complete', 'completion');
    assert.deepEqual(percents, Array.from({ length: 100 }, (_, i) => i + 1));
    job.close();
    client.disconnect();
    await server.close();
  });
});

describe('presence', () => {
  let server;
  before(async () => {
    server = await startServer();
  });
  after(() => server.close());

  test('follows joins, statuses and leaves, and after a reconnect asks again and keeps its own status', async () => {
    const trackedA = trackedWebSocket();
    const a = new HeraldClient(wsUrl(server), fastOptions(trackedA, { userId: 'ann' }));
    const presence = a.presence('lobby', { status: 'busy' });
    const seen = (pred) => once(presence, 'change', pred);
    await seen((s) => s.ready && s.members.some((m) => m.userId === 'ann' && m.status === 'busy'));

    const b = new HeraldClient(wsUrl(server), fastOptions(trackedWebSocket(), { userId: 'bob' }));
    const bobs = b.presence({ channel: 'lobby' });
    await seen((s) => s.members.some((m) => m.userId === 'bob' && m.status === 'online') && s.total === 2);
    bobs.setStatus('away');
    await seen((s) => s.members.some((m) => m.userId === 'bob' && m.status === 'away'));

    // Ann's socket is cut: she comes back with a new client id, her status, and the list.
    const before = a.clientId;
    assert.ok(trackedA.kill());
    const back = await seen((s) => s.members.length === 2 && s.members.some((m) => m.userId === 'ann' && m.clientId !== before));
    assert.deepEqual(
      back.members.map((m) => [m.userId, m.status]).sort(),
      [
        ['ann', 'busy'],
        ['bob', 'away'],
      ],
    );
    await eventually(() => server.getPresence('lobby').total === 2, 'the old connection gone on the server');

    b.disconnect();
    const alone = await seen((s) => s.members.length === 1);
    assert.equal(alone.members[0].userId, 'ann');
    assert.equal(alone.total, 1);
    presence.close();
    await eventually(() => server.getPresence('lobby').total === 0, 'nobody left');
    a.disconnect();
  });

  test('on a subscription already asking for history, presence keeps the history and gets the events', async () => {
    for (let n = 1; n <= 3; n++) server.publish('hall', { n });
    const client = new HeraldClient(wsUrl(server), fastOptions(trackedWebSocket()));
    const sub = client.subscribe('hall', { history: 5 });
    const seen = [];
    sub.on('publication', (m) => seen.push(m.n));
    // Asked for while the first subscribe (and then the history request) await their replies.
    const presence = client.presence('hall');
    await once(presence, 'change', (s) => s.ready && s.total === 1);
    await eventually(() => seen.length === 3, 'the history replayed');
    const other = new HeraldClient(wsUrl(server), fastOptions(trackedWebSocket(), { userId: 'zed' }));
    other.subscribe('hall');
    await once(presence, 'change', (s) => s.members.some((m) => m.userId === 'zed'));
    server.publish('hall', { n: 4 });
    await eventually(() => seen.length === 4, 'the live publication');
    assert.deepEqual(seen, [1, 2, 3, 4]);
    other.disconnect();
    await once(presence, 'change', (s) => s.total === 1);
    presence.close();
    sub.unsubscribe();
    client.disconnect();
  });
});
