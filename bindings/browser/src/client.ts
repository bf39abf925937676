import { backoffDelay } from './backoff.js';
import { Emitter } from './emitter.js';
import { Job } from './job.js';
import type { JobOptions } from './job.js';
import { Presence } from './presence.js';
import type { PresenceOptions } from './presence.js';
import { channelOf } from './protocol.js';
import type {
  ConnectionMessage,
  ErrorMessage,
  JobsSnapshotMessage,
  PresenceMessage,
  Publication,
  ServerMessage,
  SubscribedMessage,
  Target,
  UserPresenceMessage,
} from './protocol.js';
import { Subscription } from './subscription.js';
import type { SubscribeOptions, SubscriptionLink } from './subscription.js';

export type ConnectionState = 'connecting' | 'connected' | 'disconnected' | 'reconnecting';

/** The part of the WHATWG WebSocket the client uses (browsers, Node ≥ 22, or the `ws` package). */
export interface WebSocketLike {
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((event: unknown) => void) | null;
  onmessage: ((event: { data: unknown }) => void) | null;
  onclose: ((event: { code: number; reason: string }) => void) | null;
  onerror: ((event: unknown) => void) | null;
}

export type WebSocketConstructor = new (url: string) => WebSocketLike;

export interface HeraldClientOptions {
  /** Sent as `?token=`; see `getToken` for tokens that expire. */
  token?: string;
  /** Asked for a token before every connection attempt (so reconnects get a fresh one). */
  getToken?: () => string | Promise<string>;
  /** `?userId=` (open mode only; in secure mode the token decides). */
  userId?: string;
  /** The WebSocket class; default `globalThis.WebSocket`. On Node 20 pass `require('ws')`. */
  WebSocket?: WebSocketConstructor;
  /** Connect at once. Default true; otherwise call `connect()`. */
  autoConnect?: boolean;
  /** Backoff bounds: attempt n waits random(0, min(max, min · 2ⁿ)) ms. Defaults 500 and 30000. */
  minReconnectDelayMs?: number;
  maxReconnectDelayMs?: number;
  /** A `{"type":"ping"}` this often while connected. Default 25000. */
  pingIntervalMs?: number;
  /** Nothing received this long after a ping: the connection is dead, reconnect. Default 10000. */
  pongTimeoutMs?: number;
  /** No welcome this long after opening the socket: give up on it and retry. Default 10000. */
  connectTimeoutMs?: number;
  /** Messages sent while disconnected wait in a queue of this many; beyond, the oldest is dropped. Default 100. */
  maxQueuedMessages?: number;
}

/** How a connection ended. Codes 4000 (no answer to ping) and 4001 (no welcome) come from the client itself. */
export interface CloseInfo {
  code: number;
  reason: string;
  /** When the next attempt starts, in ms (undefined: no further attempt). */
  retryInMs?: number;
}

export interface ClientEvents {
  state: ConnectionState;
  /** The server's welcome: every subscription is being renewed, then the queue is flushed. */
  connected: ConnectionMessage;
  disconnected: CloseInfo;
  /** Closed with 1008 twice in a row (once more with a fresh token): the client stopped. */
  unauthorized: CloseInfo;
  /** Every message as received (recovery may repeat publications here; subscriptions never do). */
  message: ServerMessage;
  /** An `error` reply from the server (bad message, `forbidden`, `rate_limited` …). */
  error: ErrorMessage;
  /** `getToken` failed; the attempt counts as a failed connection. */
  tokenError: unknown;
  /** A queued message was dropped because the queue was full. */
  dropped: object;
}

const TIMEOUT_CODE = { ping: 4000, welcome: 4001 } as const;

type Timer = ReturnType<typeof setTimeout>;

/**
 * A Herald connection that stays up: reconnects with backoff, renews subscriptions
 * with recovery, queues outgoing messages while away.
 */
export class HeraldClient extends Emitter<ClientEvents> {
  readonly url: string;
  /** Successful connections (welcomes) so far. */
  connectCount = 0;
  /** Outgoing messages dropped from a full queue so far. */
  droppedCount = 0;

  private readonly opts: Required<Omit<HeraldClientOptions, 'token' | 'getToken' | 'userId' | 'WebSocket'>>;
  private readonly WS: WebSocketConstructor;
  private current: ConnectionState = 'disconnected';
  private id: string | undefined;
  private socket: WebSocketLike | undefined;
  /** Bumped for every socket; callbacks of older ones are ignored. */
  private generation = 0;
  private wanted = false;
  private attempt = 0;
  private authRetried = false;
  private timers: { retry?: Timer; welcome?: Timer; pong?: Timer; ping?: ReturnType<typeof setInterval> } = {};
  private readonly subs = new Map<string, Subscription>();
  /** Unsubscribes sent per channel whose reply has not come: until it does, what arrives there is stale. */
  private readonly leaving = new Map<string, number>();
  private readonly queue: string[] = [];
  private readonly link: SubscriptionLink = {
    sendNow: (message) => this.sendNow(message),
    release: (sub) => this.release(sub),
  };
  private readonly wake = (): void => {
    const doc = (globalThis as { document?: { visibilityState?: string } }).document;
    if (this.timers.retry !== undefined && doc?.visibilityState !== 'hidden') void this.open();
  };

  constructor(url: string, private readonly options: HeraldClientOptions = {}) {
    super();
    const parsed = new URL(url);
    if (parsed.protocol !== 'ws:' && parsed.protocol !== 'wss:') {
      throw new TypeError(`herald-client: the URL must be ws:// or wss://, got ${url}`);
    }
    this.url = url;
    const WS = options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    if (!WS) {
      throw new TypeError('herald-client: no WebSocket here; pass options.WebSocket (e.g. the `ws` package on Node 20)');
    }
    this.WS = WS;
    this.opts = {
      autoConnect: options.autoConnect ?? true,
      minReconnectDelayMs: options.minReconnectDelayMs ?? 500,
      maxReconnectDelayMs: options.maxReconnectDelayMs ?? 30_000,
      pingIntervalMs: options.pingIntervalMs ?? 25_000,
      pongTimeoutMs: options.pongTimeoutMs ?? 10_000,
      connectTimeoutMs: options.connectTimeoutMs ?? 10_000,
      maxQueuedMessages: Math.max(0, options.maxQueuedMessages ?? 100),
    };
    if (this.opts.autoConnect) this.connect();
  }

  get state(): ConnectionState {
    return this.current;
  }

  /** The server's id for the current connection (for `server.send(clientId, …)`). */
  get clientId(): string | undefined {
    return this.id;
  }

  /** Messages waiting for the next connection. */
  get queued(): number {
    return this.queue.length;
  }

  /** Starts connecting (again, after `disconnect()` or an `unauthorized` stop). */
  connect(): void {
    if (this.wanted) return;
    this.wanted = true;
    this.attempt = 0;
    this.authRetried = false;
    const target = globalThis as unknown as Partial<EventTarget>;
    target.addEventListener?.('online', this.wake);
    (globalThis as { document?: Partial<EventTarget> }).document?.addEventListener?.('visibilitychange', this.wake);
    this.setState(this.connectCount ? 'reconnecting' : 'connecting');
    void this.open();
  }

  /** Closes the connection and stays disconnected; subscriptions are kept for `connect()`. */
  disconnect(): void {
    if (!this.wanted) return;
    this.wanted = false;
    const target = globalThis as unknown as Partial<EventTarget>;
    target.removeEventListener?.('online', this.wake);
    (globalThis as { document?: Partial<EventTarget> }).document?.removeEventListener?.('visibilitychange', this.wake);
    this.closeSocket(1000, 'client disconnect');
  }

  /** Drops the current connection and connects again at once. */
  reconnect(): void {
    if (!this.wanted) return this.connect();
    this.closeSocket(1000, 'client reconnect');
    if (this.timers.retry !== undefined) void this.open();
  }

  /**
   * Subscribes to a channel, or to a session with `{sessionId}`. Subscribing to the same
   * channel again returns the same subscription; it ends once each caller unsubscribed.
   */
  subscribe(target: Target, options?: SubscribeOptions): Subscription {
    const channel = channelOf(target);
    const existing = this.subs.get(channel);
    if (existing) {
      existing.retain();
      return existing;
    }
    // Only the protocol's keys go on the wire, whatever else the caller's object holds.
    const request =
      typeof target !== 'string' && 'sessionId' in target ? { sessionId: target.sessionId } : { channel };
    const sub = new Subscription(request, channel, this.link, options);
    this.subs.set(channel, sub);
    sub.start();
    return sub;
  }

  /**
   * The AI job on `sessionId`: its state from the session's jobs snapshot (the text
   * streamed so far included, after a reload too), then live. `jobId` follows that job;
   * without it, the session's latest job.
   */
  job(sessionId: string, options: JobOptions = {}): Job {
    const { jobId, ...subscribe } = options;
    const send = (message: { type: string; [key: string]: unknown }) => this.send(message);
    return new Job(sessionId, this.subscribe({ sessionId }, subscribe), send, jobId);
  }

  /**
   * Who is in a channel (or session), kept up to date: subscribes to it with presence
   * events, asks for the member list on every (re)connect, then applies joins, leaves
   * and status changes. `options.status` sets this client's own status there.
   */
  presence(target: Target, options: PresenceOptions = {}): Presence {
    const sub = this.subscribe(target, { presence: true });
    sub.wantPresence();
    return new Presence(sub, options);
  }

  /**
   * Sends a message for the host (any JSON object with a string `type`). While not
   * connected it is queued (at most `maxQueuedMessages`, oldest dropped) and sent after
   * the next welcome. Returns whether it went out now.
   */
  send(message: { type: string; [key: string]: unknown }): boolean {
    if (this.sendNow(message)) return true;
    if (this.opts.maxQueuedMessages === 0) {
      this.dropped(message);
      return false;
    }
    this.queue.push(JSON.stringify(message));
    if (this.queue.length > this.opts.maxQueuedMessages) this.dropped(JSON.parse(this.queue.shift()!));
    return false;
  }

  private dropped(message: object): void {
    this.droppedCount++;
    this.emit('dropped', message);
  }

  private sendNow(message: object): boolean {
    if (this.current !== 'connected' || !this.socket) return false;
    this.socket.send(JSON.stringify(message));
    return true;
  }

  private release(sub: Subscription): void {
    if (this.subs.get(sub.channel) !== sub) return;
    this.subs.delete(sub.channel);
    if (this.sendNow({ type: 'unsubscribe', ...sub.target })) {
      this.leaving.set(sub.channel, (this.leaving.get(sub.channel) ?? 0) + 1);
    }
  }

  private setState(state: ConnectionState): void {
    if (this.current === state) return;
    this.current = state;
    this.emit('state', state);
  }

  private clearTimers(): void {
    clearTimeout(this.timers.retry);
    clearTimeout(this.timers.welcome);
    clearTimeout(this.timers.pong);
    clearInterval(this.timers.ping);
    this.timers = {};
  }

  private async open(): Promise<void> {
    const generation = ++this.generation;
    this.clearTimers();
    let token = this.options.token;
    if (this.options.getToken) {
      try {
        token = await this.options.getToken();
      } catch (error) {
        if (generation !== this.generation) return;
        this.emit('tokenError', error);
        return this.closed(generation, 1006, 'getToken failed');
      }
      if (generation !== this.generation) return;
    }
    const url = new URL(this.url);
    if (token) url.searchParams.set('token', token);
    if (this.options.userId) url.searchParams.set('userId', this.options.userId);
    let socket: WebSocketLike;
    try {
      socket = new this.WS(url.toString());
    } catch (error) {
      return this.closed(generation, 1006, String(error));
    }
    this.socket = socket;
    socket.onmessage = (event) => {
      if (generation === this.generation) this.received(event.data);
    };
    socket.onclose = (event) => this.closed(generation, event.code, event.reason);
    socket.onerror = () => {}; // a close event follows
    this.timers.welcome = setTimeout(() => this.closeSocket(TIMEOUT_CODE.welcome, 'no welcome'), this.opts.connectTimeoutMs);
  }

  /** Abandons the current socket (without waiting for its close handshake) and handles the loss now. */
  private closeSocket(code: number, reason: string): void {
    const socket = this.socket;
    const generation = this.generation;
    if (socket) {
      socket.onmessage = socket.onclose = null;
      try {
        socket.close(code === 1000 ? 1000 : code, reason);
      } catch {
        // already closed
      }
    }
    this.closed(generation, code, reason);
  }

  private closed(generation: number, code: number, reason: string): void {
    if (generation !== this.generation) return;
    this.generation++;
    this.clearTimers();
    this.socket = undefined;
    this.id = undefined;
    this.leaving.clear();
    for (const sub of this.subs.values()) sub.stop();
    if (!this.wanted) {
      this.setState('disconnected');
      this.emit('disconnected', { code, reason });
      return;
    }
    let delay: number | undefined;
    if (code === 1008 && this.authRetried) {
      // Refused again with a fresh token: retrying would loop. Stop and say so.
      this.disconnect();
      this.setState('disconnected');
      this.emit('disconnected', { code, reason });
      this.emit('unauthorized', { code, reason });
      return;
    }
    if (code === 1008) {
      this.authRetried = true;
      delay = 0;
    } else {
      delay = backoffDelay(this.attempt++, this.opts.minReconnectDelayMs, this.opts.maxReconnectDelayMs);
    }
    this.setState(this.connectCount ? 'reconnecting' : 'connecting');
    this.emit('disconnected', { code, reason, retryInMs: delay });
    this.timers.retry = setTimeout(() => void this.open(), delay);
  }

  private received(data: unknown): void {
    let message: ServerMessage;
    try {
      message = JSON.parse(typeof data === 'string' ? data : String(data));
    } catch {
      return;
    }
    if (!message || typeof message !== 'object') return;
    // Anything at all shows the connection is alive.
    clearTimeout(this.timers.pong);
    this.timers.pong = undefined;
    this.emit('message', message);
    const m = message as { type?: string; channel?: string; sessionId?: string; seq?: unknown; epoch?: unknown };
    const channel = m.channel ?? (m.sessionId !== undefined ? `session:${m.sessionId}` : undefined);
    switch (m.type) {
      case 'connection':
        return this.welcomed(message as ConnectionMessage);
      case 'error':
        return this.emit('error', message as ErrorMessage);
      case 'unsubscribed': {
        const pending = channel !== undefined ? this.leaving.get(channel) : undefined;
        if (pending) pending > 1 ? this.leaving.set(channel!, pending - 1) : this.leaving.delete(channel!);
        return;
      }
    }
    if (channel === undefined || this.leaving.has(channel)) return;
    const sub = this.subs.get(channel);
    if (!sub) return;
    if (m.type === 'subscribed') sub.handleSubscribed(message as SubscribedMessage);
    else if (m.type === 'jobs_snapshot') sub.handleSnapshot(message as JobsSnapshotMessage);
    else if (typeof m.seq === 'number' && typeof m.epoch === 'string') sub.handlePublication(message as Publication);
    // Not publications (no seq): presence answers and events.
    else if (m.type === 'presence' || m.type === 'user_presence')
      sub.handlePresence(message as PresenceMessage | UserPresenceMessage);
  }

  private welcomed(message: ConnectionMessage): void {
    clearTimeout(this.timers.welcome);
    this.id = message.clientId;
    this.attempt = 0;
    this.authRetried = false;
    this.connectCount++;
    this.setState('connected');
    for (const sub of this.subs.values()) sub.start();
    while (this.queue.length && this.socket) this.socket.send(this.queue.shift()!);
    this.timers.ping = setInterval(() => {
      if (this.timers.pong !== undefined || !this.sendNow({ type: 'ping' })) return;
      this.timers.pong = setTimeout(() => this.closeSocket(TIMEOUT_CODE.ping, 'no answer to ping'), this.opts.pongTimeoutMs);
    }, this.opts.pingIntervalMs);
    this.emit('connected', message);
  }
}
