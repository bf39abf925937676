'use strict';

// Shared helpers for the node --test suites: real `ws` clients, an event
// recorder for the server, and bounded waits (no timing assertions: every
// wait only fails after a generous deadline).

const { spawn } = require('node:child_process');
const crypto = require('node:crypto');
const path = require('node:path');
const WebSocket = require('ws');

/** Deadline of every single wait; generous, as CI machines can be slow. */
const WAIT_MS = 10_000;

const PKG_DIR = path.resolve(__dirname, '..');

function withTimeout(promise, label, ms = WAIT_MS) {
  let timer;
  const deadline = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${label}`)), ms);
  });
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}

/** Matches `value` against a partial pattern: every key of `pattern` must be equal (deeply). */
function matches(value, pattern) {
  if (typeof pattern === 'function') return pattern(value);
  if (pattern === null || typeof pattern !== 'object') return Object.is(value, pattern);
  if (value === null || typeof value !== 'object') return false;
  return Object.keys(pattern).every((k) => matches(value[k], pattern[k]));
}

/**
 * Records every event a HeraldServer emits, so a test can wait for one that
 * may already have happened.
 */
class Recorder {
  constructor(server, names = ['connection', 'disconnect', 'subscribe', 'unsubscribe', 'message', 'close']) {
    this.events = []; // [name, payload]
    this.waiters = [];
    for (const name of names) {
      server.on(name, (payload) => {
        this.events.push([name, payload]);
        this.waiters = this.waiters.filter((w) => !w.check());
      });
    }
  }

  /** All payloads recorded so far for `name` matching `pattern`. */
  all(name, pattern = {}) {
    return this.events.filter(([n, p]) => n === name && matches(p, pattern)).map(([, p]) => p);
  }

  /** Resolves with the first recorded payload (past or future) for `name` matching `pattern`. */
  wait(name, pattern = {}) {
    return withTimeout(
      new Promise((resolve) => {
        const waiter = {
          check: () => {
            const found = this.events.find(([n, p]) => n === name && matches(p, pattern));
            if (found) resolve(found[1]);
            return Boolean(found);
          },
        };
        if (!waiter.check()) this.waiters.push(waiter);
      }),
      `server event '${name}' matching ${JSON.stringify(pattern)}`,
    );
  }
}

/**
 * A `ws` client that buffers every message it receives, so a test can wait for
 * the next message matching a pattern.
 */
class Client {
  /** Connects and waits for the server's {"type":"connection"} welcome. */
  static async connect(port, query = {}, wsPath = '/ws') {
    const qs = new URLSearchParams(query).toString();
    return Client.open(`ws://127.0.0.1:${port}${wsPath}${qs ? `?${qs}` : ''}`);
  }

  /** Opens `url` (`wsOptions`: headers, origin, ca, ...) and waits for the welcome. */
  static async open(url, wsOptions = {}) {
    const client = new Client(new WebSocket(url, wsOptions));
    await withTimeout(
      new Promise((resolve, reject) => {
        client.ws.once('open', resolve);
        client.ws.once('error', reject);
      }),
      'the WebSocket to open',
    );
    client.welcome = await client.next({ type: 'connection' });
    client.id = client.welcome.clientId;
    return client;
  }

  constructor(ws) {
    this.ws = ws;
    this.inbox = [];
    this.waiters = [];
    this.closed = new Promise((resolve) => {
      ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() }));
    });
    ws.on('message', (data) => {
      this.inbox.push(JSON.parse(data.toString()));
      this.waiters = this.waiters.filter((w) => !w());
    });
    ws.on('error', () => {}); // surfaced through `closed` / timeouts
  }

  /** Removes and returns the first buffered (or future) message matching `pattern`. */
  next(pattern = {}) {
    return withTimeout(
      new Promise((resolve) => {
        const check = () => {
          const i = this.inbox.findIndex((m) => matches(m, pattern));
          if (i < 0) return false;
          resolve(this.inbox.splice(i, 1)[0]);
          return true;
        };
        if (!check()) this.waiters.push(check);
      }),
      `a message matching ${JSON.stringify(pattern)} on client ${this.id}`,
    );
  }

  /** Messages received and not consumed by `next` yet. */
  pending() {
    return this.inbox.slice();
  }

  send(obj) {
    this.ws.send(typeof obj === 'string' ? obj : JSON.stringify(obj));
  }

  /** Sends a ping and waits for the pong: every message sent to this client before is then in the inbox. */
  async sync() {
    this.send({ type: 'ping' });
    await this.next({ type: 'pong' });
  }

  async close(code, reason) {
    if (this.ws.readyState === WebSocket.OPEN) this.ws.close(code, reason);
    return withTimeout(this.closed, `client ${this.id} to close`);
  }

  terminate() {
    this.ws.terminate();
  }
}

/**
 * Opens `url` and reports how the attempt ended, for connections expected to
 * be refused: {outcome: 'closed', opened, code, reason, messages} (closed by
 * the server), {outcome: 'http', statusCode} (the upgrade was refused),
 * {outcome: 'error', message} (socket or TLS error), or {outcome: 'connected',
 * client} (the server's welcome arrived: the connection was accepted and is
 * left open; terminate it with `client.terminate()`).
 */
function attempt(url, wsOptions = {}) {
  return withTimeout(
    new Promise((resolve) => {
      const ws = new WebSocket(url, wsOptions);
      const messages = [];
      let opened = false;
      let settled = false;
      const done = (result) => {
        if (!settled) {
          settled = true;
          resolve(result);
        }
      };
      ws.on('open', () => {
        opened = true;
      });
      ws.on('message', (data) => {
        const msg = JSON.parse(data.toString());
        messages.push(msg);
        if (msg.type === 'connection') {
          done({ outcome: 'connected', client: { ws, terminate: () => ws.terminate(), messages } });
        }
      });
      ws.on('unexpected-response', (req, res) => {
        done({ outcome: 'http', statusCode: res.statusCode });
        req.destroy();
        res.resume();
      });
      ws.on('error', (err) => done({ outcome: 'error', message: err.message }));
      ws.on('close', (code, reason) => done({ outcome: 'closed', opened, code, reason: reason.toString(), messages }));
    }),
    `the outcome of a connection to ${url}`,
  );
}

function base64url(value) {
  return Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');
}

/** A JWT signed with HS256 (HMAC-SHA256 over base64url(header).base64url(payload)). */
function hs256(payload, secret, header = { alg: 'HS256', typ: 'JWT' }) {
  const signingInput = `${base64url(header)}.${base64url(payload)}`;
  const signature = crypto.createHmac('sha256', secret).update(signingInput).digest('base64url');
  return `${signingInput}.${signature}`;
}

/** Seconds since the epoch, as JWT `exp`/`nbf`/`iat` use. */
function nowSeconds() {
  return Math.floor(Date.now() / 1000);
}

/** Polls `fn` until it returns a truthy value (bounded; no timing assertion). */
async function eventually(fn, label, ms = WAIT_MS) {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await fn();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${label}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Asserts `fn()` throws an Error with `code` (and optionally a constructor). */
function expectThrow(assert, fn, code, ctor = Error) {
  assert.throws(fn, (err) => {
    assert.ok(err instanceof ctor, `expected a ${ctor.name}, got ${err && err.constructor && err.constructor.name}`);
    assert.strictEqual(err.code, code, `error code (message: ${err.message})`);
    assert.ok(typeof err.message === 'string' && err.message.length > 0, 'error has a message');
    return true;
  });
}

/**
 * Runs `node -e script` (cwd: the package) and resolves with
 * {code, signal, stdout, stderr} once it exits; kills it after `ms`.
 * `onLine(line, child)` sees each stdout line as it arrives.
 */
function runNode(script, { ms = 20_000, onLine, env = {}, cwd = PKG_DIR, args = [], stdin = false } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args.length ? args : ['-e', script], {
      cwd,
      env: { ...process.env, ...env },
      stdio: [stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    let buffered = '';
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, ms);
    child.stdout.on('data', (d) => {
      stdout += d;
      buffered += d;
      let nl;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        if (onLine) onLine(line, child);
      }
    });
    child.stderr.on('data', (d) => {
      stderr += d;
    });
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, timedOut });
    });
  });
}

module.exports = {
  WAIT_MS,
  PKG_DIR,
  withTimeout,
  matches,
  Recorder,
  Client,
  attempt,
  hs256,
  nowSeconds,
  eventually,
  expectThrow,
  runNode,
};
