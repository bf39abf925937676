'use strict';

// Herald for Node: a thin EventEmitter layer over the native addon (src/lib.rs).
//
// The addon is loaded from $HERALD_NODE_ADDON if set, else from ./herald.node
// (produced by `npm run build`, which `npm install` of a checkout runs), else from
// the prebuilt platform package (herald-linux-x64-gnu).

const fs = require('node:fs');
const path = require('node:path');
const { EventEmitter } = require('node:events');

/**
 * The prebuilt addon's package for this platform, napi-rs style: `herald-linux-x64-gnu`
 * (listed in optionalDependencies of the published package, so npm installs only the
 * one matching the host's os, cpu and libc).
 */
function platformPackage() {
  let abi = '';
  if (process.platform === 'linux') {
    const report = process.report && process.report.getReport();
    abi = report && report.header && report.header.glibcVersionRuntime ? '-gnu' : '-musl';
  }
  return `herald-${process.platform}-${process.arch}${abi}`;
}

/** Where the addon is: $HERALD_NODE_ADDON, a from-source build, or the platform package. */
function findAddon() {
  const fromEnv = process.env.HERALD_NODE_ADDON;
  if (fromEnv) {
    const file = path.resolve(fromEnv);
    if (!fs.existsSync(file)) {
      const err = new Error(`herald: HERALD_NODE_ADDON points at ${file}, which does not exist`);
      err.code = 'HERALD_ADDON_NOT_FOUND';
      throw err;
    }
    return file;
  }
  const built = path.join(__dirname, 'herald.node');
  if (fs.existsSync(built)) return built;
  const pkg = platformPackage();
  try {
    return require.resolve(`${pkg}/herald.node`);
  } catch {
    const err = new Error(
      `herald: no native addon: neither ${built} (a from-source build) nor the prebuilt package ${pkg} ` +
        'is installed. Prebuilt addons exist for linux-x64-gnu; elsewhere build it from source with ' +
        '`npx herald-build-addon` (needs cargo; a few minutes), or set HERALD_NODE_ADDON to a built addon',
    );
    err.code = 'HERALD_ADDON_NOT_FOUND';
    throw err;
  }
}

function loadAddon() {
  const file = findAddon();
  // process.dlopen rather than require(): the addon may keep its cargo name
  // (libherald_node.so / .dylib / herald_node.dll) when given by HERALD_NODE_ADDON.
  const mod = { exports: {} };
  process.dlopen(mod, file);
  return mod.exports;
}

const native = loadAddon();

/** Default time `close()` gives connections to drain before forcing. */
const DEFAULT_CLOSE_TIMEOUT_MS = 5000;
/** Default time `drain()` waits for the clients to read before rejecting. */
const DEFAULT_DRAIN_TIMEOUT_MS = 5000;

/** Core event type -> EventEmitter event name. */
const EVENT_NAMES = {
  connected: 'connection',
  disconnected: 'disconnect',
  subscribed: 'subscribe',
  unsubscribed: 'unsubscribe',
  cancel_requested: 'cancel',
  client_message: 'message',
};

/** EventEmitter event name -> core event type. */
const EVENT_TYPE_OF = Object.fromEntries(Object.entries(EVENT_NAMES).map(([type, name]) => [name, type]));

/** Decisions sent when the host's authorizer could not give one. */
const DENY_JSON = '{"allow":false}';

function typeError(message) {
  const err = new TypeError(message);
  err.code = 'ERR_INVALID_ARG_TYPE';
  return err;
}

function stoppedError() {
  const err = new Error('the server has been stopped');
  err.code = 'HERALD_STOPPED';
  return err;
}

function describe(value) {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  return `type ${typeof value}`;
}

function checkString(name, value) {
  if (typeof value !== 'string') {
    throw typeError(`The "${name}" argument must be of type string. Received ${describe(value)}`);
  }
}

/**
 * A message/payload: a plain object is JSON.stringify'd; a string is taken as
 * JSON text and checked by the core (it must be a JSON object).
 */
function toJson(name, value) {
  if (typeof value === 'string') return value;
  if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
    const text = JSON.stringify(value);
    if (typeof text !== 'string') {
      throw typeError(`The "${name}" argument could not be serialized to JSON`);
    }
    return text;
  }
  throw typeError(
    `The "${name}" argument must be an object or a string of JSON object text. Received ${describe(value)}`,
  );
}

/** Convenience: an Error becomes {message, code?}, since JSON.stringify(err) is "{}". */
function errorPayload(error) {
  if (!(error instanceof Error)) return error;
  const plain = { message: error.message };
  if (error.code !== undefined) plain.code = error.code;
  return plain;
}

/** `heartbeatIntervalMs` -> `heartbeat_interval_ms`; snake_case keys pass unchanged. */
function snakeKey(key) {
  return key.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}

function snakeKeys(value) {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return value;
  const out = {};
  for (const [key, v] of Object.entries(value)) {
    if (v === undefined) continue; // like JSON.stringify: an undefined option means "default"
    out[snakeKey(key)] = snakeKeys(v);
  }
  return out;
}

function configJson(options) {
  if (options === undefined || options === null) return null;
  if (typeof options !== 'object' || Array.isArray(options)) {
    throw typeError(`The "options" argument must be of type object. Received ${describe(options)}`);
  }
  return JSON.stringify(snakeKeys(options));
}

/**
 * A running Herald server. Obtain one with `herald.start(options)`.
 *
 * Events: 'connection', 'disconnect', 'subscribe', 'unsubscribe', 'cancel', 'message'
 * (each with the core's event object), 'close' (after `close()` finished) and
 * 'authorizerError' (error, request) when the authorizer failed (if no listener
 * is attached, the error is written with console.error instead).
 */
class HeraldServer extends EventEmitter {
  /** @param {symbol} token @param {object} nativeServer @param {object} state */
  constructor(token, nativeServer, state) {
    if (token !== CONSTRUCT) {
      throw new TypeError('HeraldServer is not constructible; use herald.start(options)');
    }
    super();
    this._native = nativeServer;
    // The per-message calls (notify*, broadcast*, publish, send) as plain native functions:
    // cheaper per call than methods of the native object (see `senders` in src/lib.rs).
    this._senders = nativeServer.senders();
    this._state = state; // shared with the event callback created before start resolved
    this._closePromise = null;
    this._authorizer = null; // the host's authorizer function, if any
    this._lateAuthReported = false;
    state.server = this;
    if (state.pending.length > 0) {
      // Events that arrived between bind and now (e.g. a client reconnecting at
      // once to a fixed port): replay them after the caller has had the chance
      // to attach listeners (`const s = await start(); s.on(...)`), keeping
      // later events queued behind them so the order is preserved.
      state.holding = true;
      setImmediate(() => {
        state.holding = false;
        for (const json of state.pending.splice(0)) state.deliver(json);
        this._sendOnlyListenedEvents();
      });
    } else {
      this._sendOnlyListenedEvents();
    }
  }

  /** The port the server is bound to (useful with `port: 0`). */
  get port() {
    return this._native.port;
  }

  /** True while the host should slow down: `await drain()` (see index.d.ts). */
  get backpressure() {
    return !this._native.closed && this._native.backpressure;
  }

  /** True until `close()` is called. */
  get listening() {
    return !this._native.closed;
  }

  notifyAIStart(sessionId, task) {
    checkString('sessionId', sessionId);
    this._senders.notifyAiStart(sessionId, toJson('task', task));
  }

  notifyAIProgress(sessionId, progress) {
    checkString('sessionId', sessionId);
    this._senders.notifyAiProgress(sessionId, toJson('progress', progress));
  }

  notifyAIComplete(sessionId, result) {
    checkString('sessionId', sessionId);
    this._senders.notifyAiComplete(sessionId, toJson('result', result));
  }

  notifyAIError(sessionId, error) {
    checkString('sessionId', sessionId);
    this._senders.notifyAiError(sessionId, toJson('error', errorPayload(error)));
  }

  notifyAIDelta(sessionId, delta) {
    checkString('sessionId', sessionId);
    this._senders.notifyAiDelta(sessionId, toJson('delta', delta));
  }

  notifyAICancelled(sessionId, cancelled) {
    checkString('sessionId', sessionId);
    this._senders.notifyAiCancelled(sessionId, toJson('cancelled', cancelled));
  }

  broadcast(message) {
    this._senders.broadcast(toJson('message', message));
  }

  broadcastToUser(userId, message) {
    checkString('userId', userId);
    this._senders.broadcastToUser(userId, toJson('message', message));
  }

  publish(channel, message) {
    checkString('channel', channel);
    this._senders.publish(channel, toJson('message', message));
  }

  send(clientId, message) {
    checkString('clientId', clientId);
    this._senders.send(clientId, toJson('message', message));
  }

  // The same calls returning a Promise. With the Redis broker a call waits for Redis to
  // confirm (one round trip, at most broker.redis.timeout_ms): these forms wait on a thread
  // of the addon, never on the event loop, and take effect in the order they are made.
  // Without a broker they settle at once. Every error, a bad argument included, rejects.

  async notifyAIStartAsync(sessionId, task) {
    checkString('sessionId', sessionId);
    return this._senders.notifyAiStartAsync(sessionId, toJson('task', task));
  }

  async notifyAIProgressAsync(sessionId, progress) {
    checkString('sessionId', sessionId);
    return this._senders.notifyAiProgressAsync(sessionId, toJson('progress', progress));
  }

  async notifyAICompleteAsync(sessionId, result) {
    checkString('sessionId', sessionId);
    return this._senders.notifyAiCompleteAsync(sessionId, toJson('result', result));
  }

  async notifyAIErrorAsync(sessionId, error) {
    checkString('sessionId', sessionId);
    return this._senders.notifyAiErrorAsync(sessionId, toJson('error', errorPayload(error)));
  }

  async broadcastAsync(message) {
    return this._senders.broadcastAsync(toJson('message', message));
  }

  async broadcastToUserAsync(userId, message) {
    checkString('userId', userId);
    return this._senders.broadcastToUserAsync(userId, toJson('message', message));
  }

  async publishAsync(channel, message) {
    checkString('channel', channel);
    return this._senders.publishAsync(channel, toJson('message', message));
  }

  async sendAsync(clientId, message) {
    checkString('clientId', clientId);
    return this._senders.sendAsync(clientId, toJson('message', message));
  }

  /**
   * Resolves once the clients have read what was published (see index.d.ts);
   * rejects with `HERALD_TIMEOUT` after `options.timeoutMs` (default 5000).
   */
  drain(options) {
    let timeoutMs = DEFAULT_DRAIN_TIMEOUT_MS;
    if (options !== undefined && options !== null) {
      if (typeof options !== 'object') {
        throw typeError(`The "options" argument must be of type object. Received ${describe(options)}`);
      }
      if (options.timeoutMs !== undefined) {
        if (!Number.isInteger(options.timeoutMs) || options.timeoutMs < 0 || options.timeoutMs > 0xffffffff) {
          const err = new RangeError('The "options.timeoutMs" option must be a non-negative integer');
          err.code = 'ERR_OUT_OF_RANGE';
          throw err;
        }
        timeoutMs = options.timeoutMs;
      }
    }
    return this._native.waitDrained(timeoutMs);
  }

  getStats() {
    return JSON.parse(this._call('stats'));
  }

  getHistory(channel) {
    checkString('channel', channel);
    return JSON.parse(this._call('history', channel));
  }

  getJobs(sessionId) {
    checkString('sessionId', sessionId);
    return JSON.parse(this._call('jobs', sessionId));
  }

  getPresence(channel) {
    checkString('channel', channel);
    return JSON.parse(this._call('presence', channel));
  }

  /**
   * Installs the host authorizer (`fn`) or removes it (`null`). `fn(request)`
   * is called on the main thread for every connect and for subscribes to
   * channels the token/config do not allow; it returns a decision
   * (`{allow, userId?, channels?, reason?}` or a boolean) or a Promise of one.
   * A throw, a rejection or an invalid decision denies (and is reported).
   */
  setAuthorizer(fn) {
    if (fn !== null && typeof fn !== 'function') {
      throw typeError(`The "authorizer" argument must be a function or null. Received ${describe(fn)}`);
    }
    if (this._native.closed) throw stoppedError();
    if (fn === null) {
      if (this._authorizer !== null) this._native.setAuthorizer(null);
    } else if (this._authorizer === null) {
      // One native callback while an authorizer is installed; replacing `fn`
      // only changes what it calls.
      this._native.setAuthorizer((json) => this._authorize(json));
    }
    this._authorizer = fn;
    return this;
  }

  /** Keep the process alive while the server is open (the default). */
  ref() {
    this._native.ref();
    return this;
  }

  /** Let the process exit even while the server is open. */
  unref() {
    this._native.unref();
    return this;
  }

  /**
   * Gracefully stops the server; resolves once it is stopped and every event
   * (including the final 'disconnect's) has been emitted. Calling it again
   * returns the same promise.
   */
  close(options) {
    if (this._closePromise) return this._closePromise;
    let timeoutMs = DEFAULT_CLOSE_TIMEOUT_MS;
    if (options !== undefined && options !== null) {
      if (typeof options !== 'object') {
        throw typeError(`The "options" argument must be of type object. Received ${describe(options)}`);
      }
      if (options.timeoutMs !== undefined) {
        if (!Number.isInteger(options.timeoutMs) || options.timeoutMs < 0 || options.timeoutMs > 0xffffffff) {
          const err = new RangeError('The "options.timeoutMs" option must be a non-negative integer');
          err.code = 'ERR_OUT_OF_RANGE';
          throw err;
        }
        timeoutMs = options.timeoutMs;
      }
    }
    const drained = new Promise((resolve) => {
      this._state.onEnd = resolve;
    });
    const stopped = this._native.close(timeoutMs);
    this._closePromise = Promise.all([stopped, drained]).then(() => {
      this.emit('close');
    });
    return this._closePromise;
  }

  _call(method, ...args) {
    return this._native[method](...args);
  }

  /** An authorization request from the core (main thread): ask the host, then answer. */
  _authorize(json) {
    const request = JSON.parse(json);
    const fn = this._authorizer;
    if (fn === null) {
      this._authReply(request, DENY_JSON);
      return;
    }
    let result;
    let thenable = false;
    try {
      result = fn(request);
      thenable =
        result !== null &&
        (typeof result === 'object' || typeof result === 'function') &&
        typeof result.then === 'function';
    } catch (err) {
      this._authFailed(request, err);
      return;
    }
    if (thenable) {
      Promise.resolve(result)
        .then(
          (decision) => this._authDecide(request, decision),
          (err) => this._authFailed(request, err),
        )
        .catch((err) => console.error('herald: internal error while answering the authorizer:', err));
    } else {
      this._authDecide(request, result);
    }
  }

  /** Sends the host's decision (boolean or object), or a denial if it is unusable. */
  _authDecide(request, decision) {
    let json;
    if (decision === true || decision === false) {
      json = decision ? '{"allow":true}' : DENY_JSON;
    } else if (decision !== null && typeof decision === 'object' && !Array.isArray(decision)) {
      try {
        json = JSON.stringify(decision);
      } catch (err) {
        this._authFailed(request, err);
        return;
      }
    } else {
      this._authFailed(
        request,
        typeError(
          `An authorizer must return a boolean or {allow, userId?, channels?, reason?} (or a Promise of one). Received ${describe(decision)}`,
        ),
      );
      return;
    }
    try {
      this._native.authorizeReply(request.id, json);
    } catch (err) {
      if (err.code === 'HERALD_INVALID_JSON') {
        // Malformed decision (e.g. `allow` not a boolean, an unknown key): the
        // request is still pending; deny it.
        this._authFailed(request, err);
      } else {
        this._authLate(err);
      }
    }
  }

  /** The authorizer threw, rejected or returned something unusable: report and deny. */
  _authFailed(request, err) {
    this._authReply(request, DENY_JSON);
    try {
      if (this.listenerCount('authorizerError') > 0) {
        this.emit('authorizerError', err, request);
      } else {
        console.error(`herald: the authorizer failed on a ${request.type} request; denied:`, err);
      }
    } catch (listenerErr) {
      // A throwing 'authorizerError' listener must not leave an unhandled rejection.
      console.error('herald: an authorizerError listener threw:', listenerErr);
    }
  }

  _authReply(request, json) {
    try {
      this._native.authorizeReply(request.id, json);
    } catch (err) {
      this._authLate(err);
    }
  }

  /** A reply the core refused: already answered/timed out (denied), or the server stopped. */
  _authLate(err) {
    if (err.code === 'HERALD_INVALID_ARGUMENT' && !this._lateAuthReported && this.listening) {
      this._lateAuthReported = true;
      console.error(
        'herald: the authorizer answered after auth.authorizer_timeout_ms, so the request had already been ' +
          'denied (reported once per server):',
        err.message,
      );
    }
  }

  _dispatch(json) {
    const event = JSON.parse(json);
    const name = EVENT_NAMES[event.type];
    if (name !== undefined) this.emit(name, event);
  }

  /**
   * From now on the addon sends only the event types that have listeners: a host that
   * ignores, say, 'subscribe' pays nothing per subscription (no string, no object, no
   * main-thread wake-up). Kept in step with on()/off() through newListener/removeListener.
   */
  _sendOnlyListenedEvents() {
    // `adding`: newListener is emitted before the listener is added.
    const update = (adding) => {
      const listened = (name) => name === adding || this.listenerCount(name) > 0;
      this._native.setWantedEvents(Object.keys(EVENT_NAMES).filter((type) => listened(EVENT_NAMES[type])));
    };
    this.on('newListener', (name) => {
      if (EVENT_TYPE_OF[name] !== undefined && this.listenerCount(name) === 0) update(name);
    });
    this.on('removeListener', (name) => {
      if (EVENT_TYPE_OF[name] !== undefined && this.listenerCount(name) === 0) update();
    });
    update();
  }
}

const CONSTRUCT = Symbol('HeraldServer.construct');

/**
 * Starts a Herald server; resolves once it is listening.
 * @param {object} [options] the core's config keys (snake_case, or their camelCase forms)
 * @returns {Promise<HeraldServer>}
 */
async function start(options) {
  const config = configJson(options);
  const state = {
    server: null, // the HeraldServer, once constructed
    holding: false, // true while early events are being held for replay
    pending: [], // event JSON texts not delivered yet
    onEnd: null, // resolves close()'s "all events emitted" promise
    deliver(json) {
      if (json === '') {
        // End of stream: the core has stopped and every event was delivered.
        if (state.onEnd) state.onEnd();
      } else {
        state.server._dispatch(json);
      }
    },
  };
  const onEvent = (json) => {
    if (state.server === null || state.holding) state.pending.push(json);
    else state.deliver(json);
  };
  const nativeServer = await native.start(config, onEvent);
  return new HeraldServer(CONSTRUCT, nativeServer, state);
}

/** Log level names, most severe first, and the core's numbers for them. */
const LOG_LEVELS = { error: 1, warn: 2, info: 3, debug: 4, trace: 5 };

/**
 * Routes the core's log records at `level` and more severe to `callback`, called on
 * the main thread with `{ level, target, message }`; `onLog(null)` stops. Process-wide,
 * like the core's logging; it never keeps the process alive.
 */
function onLog(callback, { level = 'info' } = {}) {
  const number = LOG_LEVELS[level];
  if (number === undefined) {
    throw typeError(`level must be one of ${Object.keys(LOG_LEVELS).join(', ')}, not ${describe(level)}`);
  }
  if (callback === null || callback === undefined) {
    native.setLogHandler(number, null);
    return;
  }
  if (typeof callback !== 'function') throw typeError(`callback must be a function or null, not ${describe(callback)}`);
  native.setLogHandler(number, (json) => callback(JSON.parse(json)));
}

module.exports = {
  start,
  HeraldServer,
  onLog,
  version: native.version(),
};
