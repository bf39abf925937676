// Shared by the node --test suites: a real Herald server through the Node binding
// (bindings/node, built by its own scripts), the `ws` WebSocket for Node 20, and
// bounded waits (each fails only after a generous deadline; no timing assertions).

import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import WebSocket from 'ws';

const require = createRequire(import.meta.url);
export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
export const REPO = join(ROOT, '..', '..');
/** The Node binding: the addon must have been built (see run-tests.sh). */
export const herald = require(join(REPO, 'bindings', 'node', 'index.js'));

export const WAIT_MS = 15_000;

export function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls `fn` until it returns something truthy; throws after `ms`. */
export async function eventually(fn, label, ms = WAIT_MS) {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await fn();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${label}`);
    await sleep(10);
  }
}

/** Resolves with the next `event` of `emitter` (a HeraldClient, Subscription or Job) matching `pred`. */
export function once(emitter, event, pred = () => true, ms = WAIT_MS) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`timed out after ${ms} ms waiting for '${event}'`));
    }, ms);
    const off = emitter.on(event, (value) => {
      if (!pred(value)) return;
      clearTimeout(timer);
      off();
      resolve(value);
    });
  });
}

/**
 * A WebSocket class (the `ws` package) that remembers its instances, so a test can cut
 * the connection under the client (`kill()` terminates the TCP socket: no close frame),
 * or make it deaf (`deafen()`: incoming frames are ignored, as on a dead link).
 */
export function trackedWebSocket() {
  const sockets = [];
  class TrackedWebSocket extends WebSocket {
    constructor(url) {
      super(url);
      sockets.push(this);
      this.deaf = false;
      // `onmessage` set by the client goes through this filter.
      const original = Object.getOwnPropertyDescriptor(WebSocket.prototype, 'onmessage');
      Object.defineProperty(this, 'onmessage', {
        get: () => original.get.call(this),
        set: (fn) =>
          original.set.call(
            this,
            fn &&
              ((event) => {
                if (!this.deaf) fn(event);
              }),
          ),
      });
    }
  }
  return {
    WebSocket: TrackedWebSocket,
    sockets,
    urls: () => sockets.map((s) => s.url),
    current: () => sockets[sockets.length - 1],
    kill() {
      const s = sockets[sockets.length - 1];
      if (s && s.readyState === WebSocket.OPEN) {
        s.terminate();
        return true;
      }
      return false;
    },
    deafen() {
      sockets[sockets.length - 1].deaf = true;
    },
  };
}

/** Starts a server on a free port (or `port`), with the given options. */
export async function startServer(options = {}) {
  return herald.start({ host: '127.0.0.1', port: 0, ...options });
}

export function wsUrl(server) {
  return `ws://127.0.0.1:${server.port}/ws`;
}

/** Client options for tests: quick backoff, quiet ping unless asked for. */
export function fastOptions(tracked, extra = {}) {
  return { WebSocket: tracked.WebSocket, minReconnectDelayMs: 5, maxReconnectDelayMs: 80, ...extra };
}
