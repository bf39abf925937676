'use strict';

// Issue 7 in Node: JWT authentication, channel permissions, the host
// authorizer (setAuthorizer), allowed origins, TLS, per-IP and rate limits.
// Real `ws` clients and real HS256 tokens (signed here with node:crypto).

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const herald = require('..');
const {
  Recorder,
  Client,
  attempt,
  hs256,
  nowSeconds,
  eventually,
  expectThrow,
  withTimeout,
} = require('./helpers');

const SECRET = 'node-binding-test-secret-0123456789';
const FIXTURES = path.resolve(__dirname, '..', '..', '..', 'tests', 'fixtures');

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** A valid token for `sub` (one hour), with extra claims. */
function tokenFor(sub, claims = {}) {
  return hs256({ sub, exp: nowSeconds() + 3600, ...claims }, SECRET);
}

/** Captures console.error while `fn` runs (restored afterwards). */
async function capturingConsoleError(fn) {
  const lines = [];
  const original = console.error;
  console.error = (...args) => {
    lines.push(args.map((a) => (a instanceof Error ? `${a.name}: ${a.message}` : String(a))).join(' '));
  };
  try {
    await fn(lines);
  } finally {
    console.error = original;
  }
  return lines;
}

function assertUnauthorized(result, label) {
  assert.equal(result.outcome, 'closed', `${label}: ${JSON.stringify(result.outcome === 'connected' ? 'connected' : result)}`);
  assert.equal(result.opened, true, `${label}: the handshake completed before the close`);
  assert.equal(result.code, 1008, `${label}: close code`);
  assert.equal(result.reason, 'Unauthorized', `${label}: close reason`);
  assert.deepEqual(result.messages, [], `${label}: nothing was received`);
}

/**
 * Clients of the server `getServer()` returns (set in `before`): `url(query)`,
 * `open(query, wsOptions)` (remembered) and `terminateAll()` for `after`.
 */
function clientsOf(getServer) {
  const clients = [];
  const url = (query = {}) => `ws://127.0.0.1:${getServer().port}/ws?${new URLSearchParams(query)}`;
  const open = async (query, wsOptions) => {
    const c = await Client.open(url(query), wsOptions);
    clients.push(c);
    return c;
  };
  const terminateAll = () => {
    for (const c of clients) c.terminate();
  };
  return { url, open, terminateAll };
}

describe('JWT authentication (HS256)', () => {
  let server;
  let rec;
  const { url, open, terminateAll } = clientsOf(() => server);

  before(async () => {
    server = await herald.start({
      port: 0,
      auth: { required: true, jwt_secret: SECRET, public_channels: ['news', 'public:*'] },
    });
    rec = new Recorder(server);
  });

  after(async () => {
    terminateAll();
    await server.close();
  });

  it('a valid token in ?token= connects as its sub and receives broadcastToUser', async () => {
    const c = await open({ token: tokenFor('alice') });
    const e = await rec.wait('connection', { clientId: c.id });
    assert.equal(e.userId, 'alice');
    await rec.wait('subscribe', { clientId: c.id, channel: 'user:alice' });
    server.broadcastToUser('alice', { type: 'note', text: 'for alice' });
    const note = await c.next({ type: 'note' });
    assert.equal(note.text, 'for alice');
    assert.equal(note.channel, 'user:alice');
  });

  it('a valid token in an Authorization: Bearer header works the same', async () => {
    const c = await open({}, { headers: { Authorization: `Bearer ${tokenFor('bearer-user')}` } });
    const e = await rec.wait('connection', { clientId: c.id });
    assert.equal(e.userId, 'bearer-user');
    server.broadcastToUser('bearer-user', { type: 'note', text: 'via header' });
    assert.equal((await c.next({ type: 'note' })).text, 'via header');
  });

  it('?userId= is ignored: the user is the token\'s sub', async () => {
    const c = await open({ token: tokenFor('alice'), userId: 'mallory' });
    const e = await rec.wait('connection', { clientId: c.id });
    assert.equal(e.userId, 'alice');
    server.broadcastToUser('mallory', { type: 'note', text: 'for mallory' });
    await c.sync();
    assert.deepEqual(c.pending().filter((m) => m.type === 'note'), []);
  });

  // The JWT rules (expiry, nbf, algorithms, tampering, issuer and audience, channel patterns)
  // are tested in the core (tests/auth.rs); these tests check that the settings reach it.
  it('a token the core refuses is closed with 1008 Unauthorized (auth.required and jwt_secret reach it)', async () => {
    const before = server.getStats().authFailures;
    assertUnauthorized(await attempt(url({})), 'missing');
    const forged = hs256({ sub: 'alice', exp: nowSeconds() + 3600 }, 'another-secret-of-enough-length');
    assertUnauthorized(await attempt(url({ token: forged })), 'forged');
    assert.ok(server.getStats().authFailures - before >= 2, 'authFailures counts each refusal');
  });

  it("the token's channels claim and public_channels reach the core ('forbidden' otherwise, still connected)", async () => {
    const before = server.getStats().forbidden;
    const alice = await open({ token: tokenFor('alice', { channels: ['session:alice-*'] }) });
    alice.send({ type: 'subscribe', sessionId: 'alice-1' });
    await alice.next({ type: 'subscribed', sessionId: 'alice-1' });
    alice.send({ type: 'subscribe', channel: 'public:lobby' });
    await alice.next({ type: 'subscribed', channel: 'public:lobby' });
    alice.send({ type: 'subscribe', channel: 'private' });
    assert.equal((await alice.next({ type: 'error' })).error.code, 'forbidden');
    await alice.sync(); // still connected
    assert.ok(server.getStats().forbidden - before >= 1);
  });
});

describe('JWT authentication without auth.required', () => {
  it('a client without a token connects anonymously: no user, public channels only', async () => {
    const s = await herald.start({ port: 0, auth: { jwt_secret: SECRET, public_channels: ['news'] } });
    const r = new Recorder(s);
    const c = await Client.open(`ws://127.0.0.1:${s.port}/ws?userId=zed`);
    try {
      assert.equal((await r.wait('connection', { clientId: c.id })).userId, null, '?userId= is ignored');
      c.send({ type: 'subscribe', channel: 'news' });
      await c.next({ type: 'subscribed', channel: 'news' });
      c.send({ type: 'subscribe', channel: 'other' });
      assert.equal((await c.next({ type: 'error' })).error.code, 'forbidden');
      // A bad token is still refused.
      assertUnauthorized(await attempt(`ws://127.0.0.1:${s.port}/ws?token=bad`), 'bad token');
    } finally {
      c.terminate();
      await s.close();
    }
  });
});

describe('setAuthorizer', () => {
  let server;
  let rec;
  const { url, open, terminateAll } = clientsOf(() => server);

  before(async () => {
    // auth.required: a client that connects while no authorizer is installed is refused.
    server = await herald.start({ port: 0, auth: { required: true } });
    rec = new Recorder(server);
  });

  after(async () => {
    terminateAll();
    await server.close();
  });

  it('validates its argument and returns the server', () => {
    for (const bad of [undefined, 'fn', 1, {}, true]) {
      expectThrow(assert, () => server.setAuthorizer(bad), 'ERR_INVALID_ARG_TYPE', TypeError);
    }
    assert.equal(server.setAuthorizer(() => true), server);
    assert.equal(server.setAuthorizer(null), server);
    assert.equal(server.setAuthorizer(null), server);
  });

  it('connect: the request describes the client; the decision sets its user and channels', async () => {
    const requests = [];
    server.setAuthorizer((req) => {
      requests.push(req);
      if (req.type === 'connect') {
        return req.query.user
          ? { allow: true, userId: req.query.user, channels: [`team:${req.query.user}-*`] }
          : { allow: false, reason: 'who are you?' };
      }
      return req.channel === 'extra';
    });
    const c = await open(
      { user: 'carol', token: 'opaque-session-token', x: '1' },
      { headers: { 'X-Test': 'yes' }, origin: 'https://app.example' },
    );
    const connect = requests.find((r) => r.type === 'connect');
    assert.ok(Number.isInteger(connect.id) && connect.id > 0);
    assert.equal(connect.token, 'opaque-session-token');
    assert.equal(connect.tokenUserId, null, 'no JWT key: the token is not verified');
    assert.deepEqual(connect.query, { user: 'carol', token: 'opaque-session-token', x: '1' });
    assert.equal(connect.headers['x-test'], 'yes', 'header names are lower case');
    assert.equal(connect.origin, 'https://app.example');
    assert.match(connect.remoteAddr, /^127\.0\.0\.1:\d+$/);

    const e = await rec.wait('connection', { clientId: c.id });
    assert.equal(e.userId, 'carol');
    server.broadcastToUser('carol', { type: 'note' });
    await c.next({ type: 'note', channel: 'user:carol' });

    // Granted patterns: no question asked.
    c.send({ type: 'subscribe', channel: 'team:carol-1' });
    await c.next({ type: 'subscribed', channel: 'team:carol-1' });
    assert.equal(requests.filter((r) => r.type === 'subscribe').length, 0);
    // Anything else: asked.
    c.send({ type: 'subscribe', channel: 'extra' });
    await c.next({ type: 'subscribed', channel: 'extra' });
    c.send({ type: 'subscribe', channel: 'other' });
    assert.equal((await c.next({ type: 'error' })).error.code, 'forbidden');
    const subs = requests.filter((r) => r.type === 'subscribe');
    assert.deepEqual(
      subs.map((r) => [r.clientId, r.userId, r.channel]),
      [
        [c.id, 'carol', 'extra'],
        [c.id, 'carol', 'other'],
      ],
    );
    assert.ok(subs.every((r) => Number.isInteger(r.id)));
    // Another user's channel: never, and the authorizer is not even asked.
    c.send({ type: 'subscribe', channel: 'user:dave' });
    assert.equal((await c.next({ type: 'error' })).error.code, 'forbidden');
    assert.equal(requests.filter((r) => r.type === 'subscribe').length, 2);

    // Denied on connect: 1008 Unauthorized.
    assertUnauthorized(await attempt(url({ nobody: '1' })), 'denied connect');
  });

  it('accepts booleans, and async authorizers (Promises) that allow and deny', async () => {
    server.setAuthorizer((req) => req.query.ok === '1');
    const a = await open({ ok: '1' });
    await a.sync();
    assertUnauthorized(await attempt(url({ ok: '0' })), 'sync false');

    const asked = [];
    server.setAuthorizer(async (req) => {
      asked.push(req.type);
      await sleep(20); // e.g. a database lookup
      if (req.type === 'connect') {
        return req.query.ok === '1' ? { allow: true, userId: `async-${req.query.n}` } : { allow: false };
      }
      return req.channel.startsWith('ok-');
    });
    const b = await open({ ok: '1', n: '7' });
    assert.equal((await rec.wait('connection', { clientId: b.id })).userId, 'async-7');
    assertUnauthorized(await attempt(url({ ok: '0' })), 'async deny');
    b.send({ type: 'subscribe', channel: 'ok-1' });
    await b.next({ type: 'subscribed', channel: 'ok-1' });
    b.send({ type: 'subscribe', channel: 'no-1' });
    assert.equal((await b.next({ type: 'error' })).error.code, 'forbidden');
    assert.deepEqual(asked, ['connect', 'connect', 'subscribe', 'subscribe']);

    // A plain thenable resolving to a boolean works too.
    server.setAuthorizer(() => ({ then: (resolve) => setTimeout(() => resolve(true), 5) }));
    const c = await open({});
    await c.sync();
  });

  it("an authorizer that throws, rejects or returns junk denies, reports via 'authorizerError', and the server keeps serving", async () => {
    const reported = [];
    const onError = (err, request) => reported.push([err, request]);
    server.on('authorizerError', onError);
    try {
      server.setAuthorizer(() => {
        throw new Error('boom');
      });
      assertUnauthorized(await attempt(url({ a: '1' })), 'throw');
      server.setAuthorizer(async () => {
        throw new Error('async boom');
      });
      assertUnauthorized(await attempt(url({ a: '2' })), 'rejection');
      server.setAuthorizer(() => undefined);
      assertUnauthorized(await attempt(url({ a: '3' })), 'undefined');
      server.setAuthorizer(() => ({ allow: 'yes' }));
      assertUnauthorized(await attempt(url({ a: '4' })), 'allow not a boolean');
      server.setAuthorizer(() => ({ allow: true, userID: 'typo' }));
      assertUnauthorized(await attempt(url({ a: '5' })), 'unknown key');
      server.setAuthorizer(() => ({ allow: true, userId: '' }));
      assertUnauthorized(await attempt(url({ a: '6' })), 'empty userId');

      await eventually(() => reported.length >= 6, 'six authorizerError events');
      const [boom, boomReq] = reported[0];
      assert.equal(boom.message, 'boom');
      assert.equal(boomReq.type, 'connect');
      assert.equal(boomReq.query.a, '1');
      assert.equal(reported[1][0].message, 'async boom');
      assert.equal(reported[2][0].code, 'ERR_INVALID_ARG_TYPE');
      for (const [err] of reported.slice(3)) assert.equal(err.code, 'HERALD_INVALID_JSON');

      // A subscribe request that throws is a 'forbidden' error, not a disconnect.
      server.setAuthorizer((req) => {
        if (req.type === 'subscribe') throw new Error('subscribe boom');
        return true;
      });
      const c = await open({});
      c.send({ type: 'subscribe', channel: 'anything' });
      assert.equal((await c.next({ type: 'error' })).error.code, 'forbidden');
      await c.sync();
      await eventually(() => reported.some(([err]) => err.message === 'subscribe boom'), 'the subscribe error');
    } finally {
      server.off('authorizerError', onError);
    }
  });

  it('without an authorizerError listener, failures go to console.error (no crash, no error event)', async () => {
    let allowed;
    const lines = await capturingConsoleError(async (lines) => {
      server.setAuthorizer(() => {
        throw new Error('unlistened boom');
      });
      assertUnauthorized(await attempt(url({})), 'throw without listener');
      await eventually(() => lines.length > 0, 'console.error');
      server.setAuthorizer(() => true);
      allowed = await open({});
    });
    assert.match(lines.join('\n'), /herald: the authorizer failed on a connect request; denied: Error: unlistened boom/);
    await allowed.sync();
  });

  it('setAuthorizer(null) removes it: with auth.required, clients without a token are refused again', async () => {
    let calls = 0;
    server.setAuthorizer(() => {
      calls += 1;
      return true;
    });
    const c = await open({});
    await c.sync();
    server.setAuthorizer(null);
    const before = calls;
    assertUnauthorized(await attempt(url({})), 'no authorizer, no token');
    assert.equal(calls, before, 'the removed authorizer is not called');
    // Already connected clients stay.
    await c.sync();
  });

  it('a request unanswered within auth.authorizer_timeout_ms is denied; the late answer is reported once', async () => {
    const s = await herald.start({ port: 0, auth: { required: true, authorizer_timeout_ms: 200 } });
    try {
      const settle = [];
      s.setAuthorizer(() => new Promise((resolve) => settle.push(resolve)));
      const u = `ws://127.0.0.1:${s.port}/ws`;
      const lines = await capturingConsoleError(async (lines) => {
        assertUnauthorized(await attempt(u), 'timed out');
        assertUnauthorized(await attempt(u), 'timed out again');
        assert.equal(settle.length, 2);
        for (const resolve of settle) resolve(true); // too late
        await eventually(() => lines.length > 0, 'the late-answer report');
        await sleep(50);
      });
      assert.equal(lines.length, 1, `reported once: ${lines.join(' | ')}`);
      assert.match(lines[0], /answered after auth\.authorizer_timeout_ms/);
      // A prompt authorizer still works afterwards.
      s.setAuthorizer(() => true);
      const c = await Client.open(u);
      await c.sync();
      c.terminate();
    } finally {
      await s.close();
    }
  });

  it('puts an open server in secure mode; null takes it back to open mode', async () => {
    const s = await herald.start({ port: 0 });
    const r = new Recorder(s);
    const u = `ws://127.0.0.1:${s.port}/ws?userId=erin`;
    const opened = [];
    try {
      const a = await Client.open(u);
      opened.push(a);
      assert.equal((await r.wait('connection', { clientId: a.id })).userId, 'erin', 'open mode: ?userId= names the user');

      s.setAuthorizer((req) => req.type === 'connect' || req.channel === 'granted');
      const b = await Client.open(u);
      opened.push(b);
      assert.equal((await r.wait('connection', { clientId: b.id })).userId, null, 'secure mode: ?userId= is ignored');
      b.send({ type: 'subscribe', channel: 'granted' });
      await b.next({ type: 'subscribed', channel: 'granted' });
      b.send({ type: 'subscribe', channel: 'not-granted' });
      assert.equal((await b.next({ type: 'error' })).error.code, 'forbidden');

      s.setAuthorizer(null);
      const c = await Client.open(u);
      opened.push(c);
      assert.equal((await r.wait('connection', { clientId: c.id })).userId, 'erin');
      c.send({ type: 'subscribe', channel: 'not-granted' });
      await c.next({ type: 'subscribed', channel: 'not-granted' });
    } finally {
      for (const c of opened) c.terminate();
      await s.close();
    }
  });

  it('with a JWT key, the authorizer sees the verified sub and may override the user', async () => {
    const s = await herald.start({ port: 0, auth: { jwt_secret: SECRET } });
    const r = new Recorder(s);
    const seen = [];
    s.setAuthorizer((req) => {
      seen.push(req);
      return req.tokenUserId === 'frank' ? { allow: true, userId: 'frank-admin' } : { allow: true };
    });
    const opened = [];
    try {
      const a = await Client.open(`ws://127.0.0.1:${s.port}/ws?token=${tokenFor('frank')}`);
      opened.push(a);
      assert.equal(seen[0].tokenUserId, 'frank');
      assert.equal((await r.wait('connection', { clientId: a.id })).userId, 'frank-admin');
      const b = await Client.open(`ws://127.0.0.1:${s.port}/ws?token=${tokenFor('gina')}`);
      opened.push(b);
      assert.equal((await r.wait('connection', { clientId: b.id })).userId, 'gina', "no userId in the decision keeps the token's sub");
      // A forged token is refused by the core before the authorizer is asked.
      const asked = seen.length;
      assertUnauthorized(
        await attempt(`ws://127.0.0.1:${s.port}/ws?token=${hs256({ sub: 'frank', exp: nowSeconds() + 60 }, 'wrong-secret-wrong-secret')}`),
        'forged',
      );
      assert.equal(seen.length, asked);
    } finally {
      for (const c of opened) c.terminate();
      await s.close();
    }
  });
});

describe('admin_token', () => {
  async function getStats(port, headers = {}) {
    const res = await fetch(`http://127.0.0.1:${port}/api/ws/stats`, { headers });
    return { status: res.status, auth: res.headers.get('www-authenticate'), body: await res.text() };
  }

  it('in secure mode GET /api/ws/stats needs the token; without one configured it is always 401', async () => {
    const secret = 'a-secret-of-at-least-16-bytes';
    for (const adminToken of [undefined, 'admin-token-9b2f']) {
      const s = await herald.start({ port: 0, auth: { required: true, jwt_secret: secret }, adminToken });
      const jwt = hs256({ sub: 'alice', exp: nowSeconds() + 600 }, secret);
      const c = await Client.connect(s.port, { token: jwt });
      try {
        const refusals = [{}, { authorization: `Bearer ${jwt}` }, { authorization: 'Bearer admin-token-9b2' }, { 'x-forwarded-for': '127.0.0.1' }];
        for (const headers of refusals) {
          const r = await getStats(s.port, headers);
          assert.equal(r.status, 401, JSON.stringify(headers));
          assert.match(r.auth || '', /^Bearer/);
          assert.ok(!r.body.includes(c.id), 'a refusal names no client');
        }
        if (adminToken) {
          const r = await getStats(s.port, { authorization: `Bearer ${adminToken}` });
          assert.equal(r.status, 200);
          assert.equal(JSON.parse(r.body).clients[0].userId, 'alice');
        }
        assert.equal(s.getStats().clients[0].id, c.id, 'getStats() is in-process and needs no token');
      } finally {
        c.terminate();
        await s.close();
      }
    }
  });
});

describe('allowed_origins', () => {
  it('refuses other browser origins with HTTP 403; allows listed and absent origins', async () => {
    const s = await herald.start({ port: 0, allowed_origins: ['https://app.example.com'] });
    const u = `ws://127.0.0.1:${s.port}/ws`;
    const opened = [];
    try {
      const refused = await attempt(u, { origin: 'https://evil.example.com' });
      assert.deepEqual(refused, { outcome: 'http', statusCode: 403 });
      const ok = await Client.open(u, { origin: 'https://app.example.com' });
      opened.push(ok);
      await ok.sync();
      const noOrigin = await Client.open(u);
      opened.push(noOrigin);
      await noOrigin.sync();
      assert.ok(s.getStats().originRejected >= 1);
    } finally {
      for (const c of opened) c.terminate();
      await s.close();
    }
  });
});

describe('TLS', () => {
  it('serves wss:// with the configured certificate', async () => {
    const s = await herald.start({
      port: 0,
      tls: { cert: path.join(FIXTURES, 'server_cert.pem'), key: path.join(FIXTURES, 'server_key.pem') },
    });
    const ca = fs.readFileSync(path.join(FIXTURES, 'ca_cert.pem'));
    const opened = [];
    try {
      for (const host of ['127.0.0.1', 'localhost']) {
        const c = await Client.open(`wss://${host}:${s.port}/ws?sessionId=tls-1`, { ca });
        opened.push(c);
      }
      s.notifyAIProgress('tls-1', { percent: 99 });
      for (const c of opened) assert.equal((await c.next({ type: 'ai_progress' })).progress.percent, 99);
      // A client that does not trust the CA fails the handshake; the server counts it.
      const untrusted = await attempt(`wss://127.0.0.1:${s.port}/ws`);
      assert.equal(untrusted.outcome, 'error');
      assert.match(untrusted.message, /certificate/i);
      await eventually(() => s.getStats().tlsFailures >= 1, 'tlsFailures to count the failed handshake');
    } finally {
      for (const c of opened) c.terminate();
      await s.close();
    }
  });

  it('rejects a missing certificate file with HERALD_INVALID_CONFIG or HERALD_IO', async () => {
    await assert.rejects(
      herald.start({ port: 0, tls: { cert: path.join(FIXTURES, 'no-such.pem'), key: path.join(FIXTURES, 'server_key.pem') } }),
      (err) => ['HERALD_INVALID_CONFIG', 'HERALD_IO'].includes(err.code),
    );
  });
});

describe('limits', () => {
  it('max_connections_per_ip: a flood from one IP is refused while existing clients are served', async () => {
    const s = await herald.start({ port: 0, max_connections_per_ip: 3 });
    const u = `ws://127.0.0.1:${s.port}/ws`;
    const a = await Client.open(u);
    const b = await Client.open(u);
    const flood = [];
    try {
      // 20 attempts with one slot left; accepted ones stay open until the end,
      // so the count does not depend on timing.
      flood.push(...(await Promise.all(Array.from({ length: 20 }, () => attempt(u)))));
      const accepted = flood.filter((r) => r.outcome === 'connected');
      assert.ok(accepted.length <= 1, `at most one more socket: ${accepted.length}`);
      for (const r of flood) {
        if (r.outcome !== 'connected') assert.ok(['error', 'closed'].includes(r.outcome), JSON.stringify(r));
      }
      assert.ok(s.getStats().rejectedPerIp >= 19);
      // The existing clients are served.
      await a.sync();
      await b.sync();
      s.broadcast({ type: 'still-here' });
      await a.next({ type: 'still-here' });
      await b.next({ type: 'still-here' });
    } finally {
      for (const r of flood) if (r.outcome === 'connected') r.client.terminate();
      a.terminate();
      b.terminate();
      await s.close();
    }
  });

  it('rate_limit: a flooding client gets rate_limited errors, then 1008, while another is served', async () => {
    const s = await herald.start({
      port: 0,
      rate_limit: { messages_per_second: 2, burst: 5, max_violations: 10 },
    });
    const u = `ws://127.0.0.1:${s.port}/ws`;
    const quiet = await Client.open(u);
    const flooder = await Client.open(u);
    try {
      for (let i = 0; i < 100; i += 1) flooder.send({ type: 'ping' });
      const closed = await withTimeout(flooder.closed, 'the flooder to be closed');
      assert.equal(closed.code, 1008);
      assert.equal(closed.reason, 'rate limit exceeded');
      const errors = flooder.pending().filter((m) => m.type === 'error');
      assert.ok(errors.length >= 1, 'rate_limited errors arrived before the close');
      assert.ok(errors.every((m) => m.error.code === 'rate_limited'));
      assert.ok(flooder.pending().filter((m) => m.type === 'pong').length <= 6, 'only the burst was answered');
      // The other client is served.
      await quiet.sync();
      s.broadcast({ type: 'still-here' });
      await quiet.next({ type: 'still-here' });
      const stats = s.getStats();
      assert.ok(stats.rateLimited >= 1);
      assert.ok(stats.rateLimitCloses >= 1);
    } finally {
      quiet.terminate();
      flooder.terminate();
      await s.close();
    }
  });

  it('the default rate limit (50/s, burst 100) refuses a burst of 200; messages_per_second: 0 turns it off', async () => {
    const byDefault = await herald.start({ port: 0 });
    const off = await herald.start({ port: 0, rateLimit: { messagesPerSecond: 0 } });
    const opened = [];
    try {
      const d = await Client.open(`ws://127.0.0.1:${byDefault.port}/ws`);
      opened.push(d);
      for (let i = 0; i < 200; i += 1) d.send({ type: 'ping' });
      assert.equal((await d.next({ type: 'error' })).error.code, 'rate_limited');

      const o = await Client.open(`ws://127.0.0.1:${off.port}/ws`);
      opened.push(o);
      for (let i = 0; i < 300; i += 1) o.send({ type: 'ping', n: i });
      await o.next({ type: 'pong' });
      await eventually(() => o.pending().filter((m) => m.type === 'pong').length >= 299, '300 pongs');
      assert.deepEqual(o.pending().filter((m) => m.type === 'error'), []);
      assert.equal(off.getStats().rateLimited, 0);
    } finally {
      for (const c of opened) c.terminate();
      await Promise.all([byDefault.close(), off.close()]);
    }
  });

  it('max_subscriptions_per_client: one more subscription is an error', async () => {
    const s = await herald.start({ port: 0, max_subscriptions_per_client: 2 });
    const c = await Client.open(`ws://127.0.0.1:${s.port}/ws`);
    try {
      for (const ch of ['one', 'two']) {
        c.send({ type: 'subscribe', channel: ch });
        await c.next({ type: 'subscribed', channel: ch });
      }
      c.send({ type: 'subscribe', channel: 'three' });
      assert.equal((await c.next({ type: 'error' })).error.code, 'subscribe_failed');
      await c.sync();
    } finally {
      c.terminate();
      await s.close();
    }
  });
});
