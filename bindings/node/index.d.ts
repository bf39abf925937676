// Type definitions for herald (Node binding of the Herald real-time notification core).
// Hand-written; keep in sync with index.js and the core's protocol (wire protocol v1).

/// <reference types="node" />

import { EventEmitter } from 'node:events';

/** A message or payload: an object (serialized with `JSON.stringify`) or JSON object text. */
export type Message = { [key: string]: unknown } | string;

/** Per-channel history kept for clients that reconnect. */
export interface HistoryOptions {
  /** Publications kept per channel; 0 turns history off. Default 256. */
  size?: number;
  /** Publications older than this many ms are dropped. Default 600000 (10 min). */
  ttl_ms?: number;
  /** camelCase alias of `ttl_ms`. */
  ttlMs?: number;
  /** Bytes of history kept across all channels; the oldest go first. Default 64 MiB. */
  max_bytes?: number;
  /** camelCase alias of `max_bytes`. */
  maxBytes?: number;
}

/** What is kept of each session's AI jobs, for snapshots (`jobs_snapshot`, `getJobs`). */
export interface JobsOptions {
  /** A job is kept this many ms after it ends. Default 3600000 (1 hour). */
  ttl_ms?: number;
  ttlMs?: number;
  /** Jobs kept per session; beyond it the oldest ended (else oldest) goes. Default 16. */
  max_per_session?: number;
  maxPerSession?: number;
  /** Bytes of streamed text kept per job (then `truncated`). Default 256 KiB. */
  max_text_bytes?: number;
  maxTextBytes?: number;
  /** Bytes of job state across sessions on this node (memory broker). Default 64 MiB. */
  max_bytes?: number;
  maxBytes?: number;
}

/** How AI notifications are sent. */
export interface AiOptions {
  /**
   * A job's `ai_delta`s made within this many ms go out as one (text concatenated), for
   * every subscriber; 0 (default) sends each at once. Memory broker only.
   */
  delta_rollup_ms?: number;
  deltaRollupMs?: number;
}

/**
 * Server options: the core's configuration keys. Every key is optional; an
 * unknown key makes `start()` reject with code `HERALD_INVALID_CONFIG`.
 *
 * Keys are the core's snake_case names; each may also be written in camelCase
 * (`heartbeatIntervalMs` for `heartbeat_interval_ms`), converted mechanically
 * (every capital letter `X` becomes `_x`, in nested option objects too). Keys
 * whose value is `undefined` are left out (the core's default applies).
 */
export interface ServerOptions {
  /** Address to bind. Default "127.0.0.1". */
  host?: string;
  /** Port to bind; 0 picks a free port (read it back from `server.port`). Default 3001. */
  port?: number;
  /** WebSocket endpoint path. Default "/ws". */
  path?: string;
  /** A protocol ping is sent to every client this often (ms). Default 30000. */
  heartbeat_interval_ms?: number;
  heartbeatIntervalMs?: number;
  /** A client from which nothing arrived for this long (ms) is closed. Default 60000. */
  heartbeat_timeout_ms?: number;
  heartbeatTimeoutMs?: number;
  /** Largest accepted client message, in bytes; larger closes the socket with 1009. Default 65536. */
  max_message_size?: number;
  maxMessageSize?: number;
  /** Messages queued per client before it is evicted as too slow. Default 1024. */
  client_queue_size?: number;
  clientQueueSize?: number;
  /** Open sockets (WebSocket and HTTP) at most; more are refused. Default 100000. */
  max_connections?: number;
  maxConnections?: number;
  /** Core worker threads; 0 = one per CPU core, at most 4. */
  worker_threads?: number;
  workerThreads?: number;
  /** Calls queued for the dispatcher at most; beyond it calls throw `HERALD_QUEUE_FULL`. */
  publish_queue_size?: number;
  publishQueueSize?: number;
  /** Events queued for the host at most; beyond it events are dropped (and counted). */
  event_queue_size?: number;
  eventQueueSize?: number;
  /** A socket that has not completed its HTTP request in this time (ms) is dropped. */
  handshake_timeout_ms?: number;
  handshakeTimeoutMs?: number;
  /** Distinct channels at most (sessions, users and plain channels). */
  max_channels?: number;
  maxChannels?: number;
  /** Clients listed individually in stats at most. */
  stats_client_limit?: number;
  statsClientLimit?: number;
  /** Per-channel history for recovery after reconnects. */
  history?: HistoryOptions;
  /** The state of AI jobs per session, and its bounds. */
  jobs?: JobsOptions;
  /** AI notifications: batching of token streams. */
  ai?: AiOptions;
  /** Who may connect and what they may subscribe to. */
  auth?: AuthOptions;
  /**
   * Browser origins allowed to connect (exact match, e.g. "https://app.example.com");
   * empty allows any. Clients that send no Origin header (non-browsers) are allowed.
   */
  allowed_origins?: string[];
  allowedOrigins?: string[];
  /** Open sockets per remote IP at most; 0 = no per-IP limit. */
  max_connections_per_ip?: number;
  maxConnectionsPerIp?: number;
  /** Channels one client may be subscribed to at once. Default 1024. */
  max_subscriptions_per_client?: number;
  maxSubscriptionsPerClient?: number;
  /** Per-client message rate limit (a token bucket). */
  rate_limit?: RateLimitOptions;
  rateLimit?: RateLimitOptions;
  /** Serve `wss://` with these PEM files. */
  tls?: TlsOptions;
  /** Serve WebSocket clients (default true); `false` starts an emitter that only publishes through `broker`. */
  listen?: boolean;
  /** Where publications are sequenced and kept; `{ redis: { url } }` shares them between processes. */
  broker?: BrokerOptions;
  /** Who is in each channel (see {@link Server.getPresence}). */
  presence?: PresenceOptions;
  /**
   * Bytes queued for one client at most, counting every way bytes wait for it (its
   * queue, replays, pongs and error replies, the socket writer's buffer); over it the
   * client is evicted with 1013. A replay larger than this is refused (`recovered: false`).
   */
  client_queue_bytes?: number;
  clientQueueBytes?: number;
  /**
   * SO_SNDBUF for client sockets, in bytes (the kernel doubles it); 0 keeps the
   * system's autotuning. Bounds what a stalled client pins in the kernel, which is
   * not counted in `client_queue_bytes`.
   */
  socket_send_buffer?: number;
  socketSendBuffer?: number;
  /**
   * Linux: a write pass sends to many client sockets with one io_uring system call
   * (default true); `false`, or a kernel that refuses a ring, gives each socket its
   * own `send`.
   */
  io_uring?: boolean;
  ioUring?: boolean;
  /**
   * Bytes for all client queues and history together; over it the clients with the
   * largest queues are evicted first, then history is trimmed.
   */
  max_memory?: number;
  maxMemory?: number;
  /**
   * Bearer token for `GET /api/ws/stats` (and every admin endpoint): when set, a request
   * without `Authorization: Bearer <token>` gets 401. Unset, the endpoints are open in
   * open mode and always answer 401 in secure mode. `getStats()` needs no token.
   */
  admin_token?: string;
  adminToken?: string;
  /**
   * Bytes of events queued for the host at most (with `event_queue_size`); beyond it
   * events are dropped and counted (`eventsDropped`).
   */
  event_queue_bytes?: number;
  eventQueueBytes?: number;
}

/**
 * Authentication and channel permissions. As soon as `required`, a JWT key or
 * a host authorizer ({@link HeraldServer.setAuthorizer}) is in place, the server
 * is in *secure mode*: `?userId=` is ignored (the user is the token's `sub` or
 * the authorizer's `userId`), and channel rules apply: `user:U` only for U
 * itself, other channels (sessions included) only as the token's `channels`
 * claim, the authorizer's granted patterns or `public_channels` allow, else the
 * authorizer is asked, else the client gets an error with code `forbidden`.
 *
 * Tokens come from `?token=` or an `Authorization: Bearer` header; `exp` is
 * required, `nbf`, `iss` and `aud` are checked. A forged, expired or
 * wrong-algorithm token (or, with `required`, a missing one, or an authorizer's
 * denial) closes the connection with 1008 "Unauthorized" right after the handshake.
 */
export interface AuthOptions {
  /**
   * Refuse clients that do not authenticate (no valid token and no authorizer
   * approval): close 1008 "Unauthorized" right after the handshake. Default false
   * (without it, a client with no token connects anonymously in secure mode).
   * Recommended with an authorizer: it also refuses clients that connect before
   * `setAuthorizer()` has been called.
   */
  required?: boolean;
  /** HS256 secret (at least 16 bytes). */
  jwt_secret?: string;
  jwtSecret?: string;
  /** RS256 or ES256 public key, PEM. */
  jwt_public_key?: string;
  jwtPublicKey?: string;
  /** Expected `iss`, when set. */
  jwt_issuer?: string;
  jwtIssuer?: string;
  /** Expected `aud`, when set. */
  jwt_audience?: string;
  jwtAudience?: string;
  /** Clock skew tolerated on `exp` and `nbf`, in seconds. Default 30. */
  jwt_leeway_s?: number;
  jwtLeewayS?: number;
  /** Channel patterns (`*` = any run of characters) any client may subscribe to in secure mode ("news", "public:*"). */
  public_channels?: string[];
  publicChannels?: string[];
  /**
   * How long the host authorizer may take (ms), measured in the core: a request
   * not answered in time (slow authorizer, busy JS thread) is denied. Default 5000.
   */
  authorizer_timeout_ms?: number;
  authorizerTimeoutMs?: number;
}

/**
 * A token bucket per client, on by default (50 msg/s, burst 100). A refused
 * message gets `{"type":"error","error":{"code":"rate_limited"}}`; past
 * `max_violations` refusals within 10 s the client is closed with 1008.
 * Chatty clients can raise the numbers; `{messages_per_second: 0}` turns it off.
 */
export interface RateLimitOptions {
  /** Sustained client messages per second; 0 turns the limit off. Default 50. */
  messages_per_second?: number;
  messagesPerSecond?: number;
  /** Messages allowed in a burst. Default 100. */
  burst?: number;
  /** Refused messages within 10 seconds before the client is closed with 1008. Default 50. */
  max_violations?: number;
  maxViolations?: number;
}

/** PEM files for `wss://` (TLS 1.2 and 1.3); paths are relative to the process's working directory. */
/** `broker.redis`: a Redis shared by every node and emitter that names it (and the same prefix). */
export interface RedisOptions {
  /** `redis://[user:password@]host:port[/db]`. */
  url: string;
  /** Prefix of every key and PUB/SUB channel, so several apps can share one Redis. Default "herald:". */
  prefix?: string;
  /** How long a host call waits for Redis to confirm a publication. Default 2000. */
  timeout_ms?: number;
  timeoutMs?: number;
}

/** `presence`: every subscriber of a channel is a member, with a status it sets. */
export interface PresenceOptions {
  /** Default true; `false` turns presence off (queries throw `HERALD_INVALID_ARGUMENT`). */
  enabled?: boolean;
  /** With Redis: a member whose node stopped refreshing it (killed) leaves after this long. Default 30000. */
  ttl_ms?: number;
  ttlMs?: number;
  /** Members listed in one answer at most (`total` counts them all). Default 1000. */
  max_members?: number;
  maxMembers?: number;
}

/** One member of a channel. */
export interface PresenceMember {
  /** The subscriber's client id (as in events and for `send`). */
  clientId: string;
  /** Its user (from its token or the authorizer), null if anonymous. */
  userId: string | null;
  /** The status it set (`{"type":"presence","channel":…,"status":"away"}`); "online" until then. */
  status: string;
}

/** Who is in a channel: with Redis, on every node. */
export interface Presence {
  channel: string;
  /** At most `presence.maxMembers` members. */
  members: PresenceMember[];
  /** How many members there are in all. */
  total: number;
  /** True when some members were left out of `members`. */
  truncated: boolean;
}

/** `broker`: where publications are sequenced and kept (default: in this process). */
export interface BrokerOptions {
  redis?: RedisOptions;
}

export interface TlsOptions {
  /** Path of the certificate chain, PEM. */
  cert: string;
  /** Path of the private key, PEM. */
  key: string;
}

/** Options of `server.close()`. */
export interface CloseOptions {
  /**
   * How long (ms) connections get to drain and receive their close frame
   * (code 1001) before the server stops forcibly. Default 5000.
   */
  timeoutMs?: number;
}

/** Options of `server.drain()`. */
export interface DrainOptions {
  /**
   * How long (ms) to wait for the clients to read before rejecting with
   * `HERALD_TIMEOUT`. Default 5000; 0 only looks, without waiting.
   */
  timeoutMs?: number;
}

/** Fields common to every event. */
export interface BaseEvent {
  /** The connection's id: use it with `server.send(clientId, message)`. */
  clientId: string;
  /** ISO-8601 time the core recorded the event. */
  timestamp: string;
}

/** 'connection': a WebSocket client connected (core event type `connected`). */
export interface ConnectionEvent extends BaseEvent {
  type: 'connected';
  /**
   * The client's user: the `userId` query parameter in open mode; in secure
   * mode the token's `sub` or the authorizer's `userId` (null if anonymous).
   */
  userId: string | null;
  /** The `sessionId` query parameter of the connection, if any (it is subscribed to it). */
  sessionId: string | null;
  /** The peer's address ("ip:port"). */
  remoteAddr: string;
}

/** 'disconnect': a client's connection ended (core event type `disconnected`). */
export interface DisconnectEvent extends BaseEvent {
  type: 'disconnected';
  userId: string | null;
  sessionId: string | null;
  /** The WebSocket close code, or null if the connection ended without one. */
  code: number | null;
  /** The close reason ("" if none). */
  reason: string;
}

/** 'subscribe': a client subscribed to a channel (core event type `subscribed`). */
export interface SubscribeEvent extends BaseEvent {
  type: 'subscribed';
  /** The channel: "session:<id>" for sessions, "user:<id>" for users, else the channel name. */
  channel: string;
}

/** 'unsubscribe': a client left a channel (core event type `unsubscribed`). */
export interface UnsubscribeEvent extends BaseEvent {
  type: 'unsubscribed';
  channel: string;
}

/**
 * 'message': a client sent a JSON object with a string `type` that is not part
 * of the protocol (not ping/subscribe/unsubscribe); core event type `client_message`.
 */
export interface MessageEvent extends BaseEvent {
  type: 'client_message';
  userId: string | null;
  sessionId: string | null;
  /** The client's whole JSON object. */
  message: { type: string; [key: string]: unknown };
}

/**
 * 'cancel': a client asked to cancel a job (`{"type":"cancel","sessionId","jobId"}`),
 * allowed as a subscribe to the session would be (the authorizer sees `action: 'cancel'`);
 * core event type `cancel_requested`. Stop the job, then `notifyAICancelled`.
 */
export interface CancelEvent extends BaseEvent {
  type: 'cancel_requested';
  userId: string | null;
  /** The session whose job is to be cancelled. */
  sessionId: string;
  /** The job; null for the session's implicit job (notifications without `jobId`). */
  jobId: string | null;
}

/** Any event the server emits with a payload. */
export type HeraldEvent =
  | ConnectionEvent
  | DisconnectEvent
  | SubscribeEvent
  | UnsubscribeEvent
  | CancelEvent
  | MessageEvent;

/** One job of a session, as `getJobs` and the `jobs_snapshot` message give it. */
export interface Job {
  /** null for the session's implicit job. */
  jobId: string | null;
  state: 'running' | 'complete' | 'error' | 'cancelled';
  task: { [key: string]: unknown } | null;
  progress: { [key: string]: unknown } | null;
  /** The text of its `ai_delta`s so far. */
  text: string;
  /** Present (true) when the text reached `jobs.max_text_bytes`. */
  truncated?: true;
  result?: { [key: string]: unknown };
  error?: { [key: string]: unknown };
  cancelled?: { [key: string]: unknown };
  startedAt: string;
  endedAt: string | null;
}

/** The result of `getJobs`: the session's jobs as of `seq`. */
export interface JobsSnapshot {
  sessionId: string;
  seq: number;
  epoch: string;
  jobs: Job[];
}

/** One client as listed in `getStats().clients`. */
export interface ClientStats {
  /** The client id (as in events and for `send`). */
  id: string;
  userId: string | null;
  sessionId: string | null;
  /** False once a heartbeat went unanswered. */
  isAlive: boolean;
  /** Connection state: 1 open, 2 closing, 3 closed. */
  state: number;
  /** The peer's address ("ip:port"), as in the 'connection' event. */
  remoteAddr: string;
  /** Channels the client is subscribed to. */
  subscriptions: number;
  /** Messages waiting in the client's queue. */
  queued: number;
  /** Bytes waiting for this client (its queue and its socket writer), bounded by `clientQueueBytes`. */
  queuedBytes: number;
  /** Messages sent to this client. */
  messagesSent: number;
  /** Time since anything arrived from the client, in ms. */
  idleMs: number;
  [key: string]: unknown;
}

/** The result of `getStats()` (the same JSON as `GET /api/ws/stats`). */
export interface Stats {
  totalConnections: number;
  activeConnections: number;
  /** Connected clients, at most `stats_client_limit` of them. */
  clients: ClientStats[];
  /** How many clients `clients` lists. */
  clientsListed: number;
  messagesSent: number;
  messagesReceived: number;
  /** Messages dropped (e.g. for evicted clients). */
  messagesDropped: number;
  publications: number;
  /** Clients evicted with 1013: over their byte or message budget, a stalled socket, or the server over `max_memory`. */
  evictions: number;
  /** Of those, clients whose socket took no byte for `heartbeat_timeout_ms`. */
  writeStalls: number;
  /** Of those, clients evicted because the server was over `max_memory`. */
  memoryEvictions: number;
  heartbeatTimeouts: number;
  invalidMessages: number;
  oversizedMessages: number;
  /** Clients closed for framing errors (1002) or invalid UTF-8 (1007). */
  protocolErrors: number;
  /** Sockets refused because `max_connections` was reached. */
  rejectedConnections: number;
  /** Sockets refused because their IP reached `max_connections_per_ip`. */
  rejectedPerIp: number;
  /** Sockets open right now (WebSocket and HTTP, including ones still in their handshake). */
  openSockets: number;
  /** Sockets dropped for not completing their HTTP/TLS handshake within `handshake_timeout_ms`. */
  handshakeTimeouts: number;
  /** TLS handshakes that failed. */
  tlsFailures: number;
  /** Upgrades refused with 403 because their Origin is not in `allowed_origins`. */
  originRejected: number;
  /** Connections closed with 1008 "Unauthorized" (bad or missing token, authorizer denial). */
  authFailures: number;
  /** Subscriptions refused with an error of code `forbidden`. */
  forbidden: number;
  /** Client messages refused by the rate limit (each answered with an error of code `rate_limited`). */
  rateLimited: number;
  /** Clients closed with 1008 for exceeding the rate limit repeatedly. */
  rateLimitCloses: number;
  publishQueueFull: number;
  channelsRejected: number;
  recoveries: number;
  recoveriesFailed: number;
  channels: number;
  subscriptions: number;
  historyBytes: number;
  /** Bytes waiting for clients, each subscriber's copy of a shared frame counted. */
  queuedBytes: number;
  /** `queuedBytes` plus history: what `max_memory` bounds. */
  memoryBytes: number;
  /** The `max_memory` bound. */
  maxMemory: number;
  /** Host calls waiting for the core's dispatcher (bounded by `publishQueueSize`). */
  publishQueueDepth: number;
  /** Healthy clients over a quarter of their queue budget: what `drain()` waits for. */
  backloggedClients: number;
  /** Healthy clients over half of their queue budget. */
  congestedClients: number;
  /** The host should slow down: a healthy client is over half of its queue budget, or the
   * publish queue is over half full. Call `drain()` while it is true. */
  backpressure: boolean;
  /** Events waiting to be emitted. */
  eventsQueued: number;
  /** Estimated bytes of the events waiting to be emitted (bounded by `event_queue_bytes`). */
  eventsQueuedBytes: number;
  /** Events dropped because the event queue was full (`event_queue_size` or `event_queue_bytes`). */
  eventsDropped: number;
  uptimeMs: number;
  port: number;
  path: string;
  /** Core version. */
  version: string;
  /**
   * The broker: `{ kind: 'memory' }`, or for Redis `{ kind: 'redis', node, connected,
   * reconnects, publishRoundTripUs, publishErrors }`.
   */
  broker: { kind: 'memory' | 'redis'; [key: string]: unknown };
  [key: string]: unknown;
}

/**
 * One publication kept in a channel's history: the message exactly as it was
 * delivered (for `publish`/`broadcastToUser`: the host's object plus `timestamp`,
 * `channel`, `seq`, `epoch`; for sessions: the `ai_*` message).
 */
export interface HistoryEntry {
  seq: number;
  epoch: string;
  timestamp: string;
  [key: string]: unknown;
}

/**
 * An authorizer request of type `connect`: a client completed the WebSocket
 * handshake. Holds credentials (`token`, `headers` such as `cookie` and
 * `authorization`): do not log it as is.
 */
export interface ConnectAuthRequest {
  type: 'connect';
  /** The request's id (the binding answers it for you). */
  id: number;
  /** From `?token=` or an `Authorization: Bearer` header; null if none. */
  token: string | null;
  /** The token's `sub` when the core verified it as a JWT (a JWT key is configured); else null. */
  tokenUserId: string | null;
  /** The URL's query parameters. */
  query: { [name: string]: string };
  /** The request's headers, names in lower case. */
  headers: { [name: string]: string };
  /** The `Origin` header, null if absent. */
  origin: string | null;
  /** The peer's address ("ip:port"). */
  remoteAddr: string;
  /** The core denies the request if it is not answered within this many ms (`auth.authorizerTimeoutMs`). */
  timeoutMs: number;
}

/**
 * An authorizer request of type `subscribe`: a connected client asked for a
 * channel that neither its token's `channels` claim, the patterns granted on
 * connect nor `auth.public_channels` allow (never asked for `user:` channels:
 * a user's own is always allowed, anyone else's never).
 */
export interface SubscribeAuthRequest {
  type: 'subscribe';
  id: number;
  /** The client asking (as in events and for `send`). */
  clientId: string;
  /** Its user, null if anonymous. */
  userId: string | null;
  /** The channel: "session:<id>" for sessions, else the channel name. */
  channel: string;
  /**
   * What the client asked: 'subscribe'; 'presence' to see who is in the channel
   * without subscribing (allowing it does not subscribe the client); or 'cancel'
   * when the client asks to cancel a job of that session.
   */
  action: 'subscribe' | 'presence' | 'cancel';
  /** The core denies the request if it is not answered within this many ms. */
  timeoutMs: number;
}

/** What an authorizer receives; switch on `type`. */
export type AuthRequest = ConnectAuthRequest | SubscribeAuthRequest;

/**
 * An authorizer's answer. Exactly these keys are accepted: anything else (or
 * `allow` not a boolean, an empty `userId`) is an invalid decision, reported
 * and treated as a denial.
 */
export interface AuthDecision {
  /** Whether the client may connect / subscribe. */
  allow: boolean;
  /**
   * Connect only: the client's user id (it is subscribed to `user:<userId>` and
   * reached by `broadcastToUser`); overrides the token's `sub`. Omit to keep it.
   */
  userId?: string | null;
  /**
   * Connect only: channel patterns (`*` = any run of characters, e.g.
   * `"session:alice-*"`) the client may subscribe to without the authorizer
   * being asked again.
   */
  channels?: string[];
  /** Why the request was denied; only logged by the core (`HERALD_LOG=herald=debug`), never sent to the client. */
  reason?: string;
}

/**
 * A host authorizer: runs on the main thread and returns a decision, `true` /
 * `false`, or a Promise of either (async lookups are fine). A throw, a rejection
 * or an invalid decision denies the request and is reported ('authorizerError'
 * event, else `console.error`); no answer within `auth.authorizer_timeout_ms`
 * denies it too.
 */
export type Authorizer = (request: AuthRequest) => AuthDecision | boolean | PromiseLike<AuthDecision | boolean>;

/**
 * An error thrown (or rejected with) by the server. `code` is `HERALD_` + the
 * core's error kind in upper case:
 * `HERALD_INVALID_JSON` (a message that is not JSON object text),
 * `HERALD_INVALID_ARGUMENT` (e.g. an empty id), `HERALD_INVALID_CONFIG`,
 * `HERALD_INVALID_UTF8`, `HERALD_UNKNOWN_CLIENT` (`send` to a client that is
 * not connected), `HERALD_QUEUE_FULL`, `HERALD_LIMIT` (a configured bound is
 * reached, e.g. a publication to a new channel while `max_channels` channels
 * exist; nothing was queued), `HERALD_IO` (e.g. port in use),
 * `HERALD_TIMEOUT`, `HERALD_STOPPED` (the server was closed), `HERALD_PANIC`,
 * `HERALD_UNAVAILABLE` (the Redis broker did not take a publication: unreachable,
 * or no confirmation in time, when it may have been made; never OK-and-lost).
 * Arguments of the wrong type throw a `TypeError` with code `ERR_INVALID_ARG_TYPE`.
 */
export interface HeraldError extends Error {
  code:
    | 'HERALD_NULL_ARGUMENT'
    | 'HERALD_INVALID_UTF8'
    | 'HERALD_INVALID_JSON'
    | 'HERALD_INVALID_ARGUMENT'
    | 'HERALD_INVALID_CONFIG'
    | 'HERALD_INVALID_HANDLE'
    | 'HERALD_UNKNOWN_CLIENT'
    | 'HERALD_QUEUE_FULL'
    | 'HERALD_LIMIT'
    | 'HERALD_IO'
    | 'HERALD_TIMEOUT'
    | 'HERALD_STOPPED'
    | 'HERALD_PANIC'
    | 'HERALD_UNAVAILABLE'
    | (string & {});
}

/**
 * A running Herald server: a WebSocket endpoint (`ws://host:port/ws`) plus
 * `GET /api/ws/stats` and `GET /healthz` on the same port, run by the native
 * core on its own threads. Obtain one with {@link start}.
 *
 * Like a listening `http.Server`, an open server keeps the process alive
 * (see {@link HeraldServer.unref}); a closed one never does.
 *
 * All sending methods only enqueue and return at once; they throw a
 * {@link HeraldError} on failure (`HERALD_STOPPED` once closed). With the Redis
 * broker they wait for Redis to confirm instead (one round trip, at most
 * `broker.redis.timeout_ms`), blocking the event loop meanwhile: use their
 * promise forms (`publishAsync`, `notifyAIProgressAsync`, ...) there.
 */
export declare class HeraldServer extends EventEmitter {
  private constructor();

  /** The bound port (useful with `port: 0`); still readable after close. */
  readonly port: number;
  /**
   * True while the host should slow down: a healthy client is over half of its
   * queue budget, or the publish queue is over half full. Cheap (two counters
   * in the core): check it after publishing and `await server.drain()` while
   * it is true. False once the server is closed.
   */
  readonly backpressure: boolean;
  /** True until `close()` is called. */
  readonly listening: boolean;

  /** Sends `{"type":"ai_start","sessionId","task",...}` to the session's subscribers. */
  notifyAIStart(sessionId: string, task: Message): void;
  /** Sends `{"type":"ai_progress","sessionId","progress",...}` to the session's subscribers. */
  notifyAIProgress(sessionId: string, progress: Message): void;
  /** Sends `{"type":"ai_complete","sessionId","result",...}` to the session's subscribers. */
  notifyAIComplete(sessionId: string, result: Message): void;
  /**
   * Sends `{"type":"ai_error","sessionId","error",...}` to the session's subscribers.
   * An `Error` instance is sent as `{message, code?}`.
   */
  notifyAIError(sessionId: string, error: Message | Error): void;
  /**
   * Sends `{"type":"ai_delta","sessionId","delta",...}`: a piece of a job's token stream,
   * `{jobId, text}` (`text` required), appended to the job's text. A subscriber that falls
   * behind gets a job's consecutive deltas merged instead of being evicted.
   */
  notifyAIDelta(sessionId: string, delta: Message): void;
  /** Sends `{"type":"ai_cancelled","sessionId","cancelled",...}`: the job ended cancelled. */
  notifyAICancelled(sessionId: string, cancelled: Message): void;
  /** Sends the message as given (plus `timestamp` if absent) to every connected client. */
  broadcast(message: Message): void;
  /** Sends the message to every client connected with `?userId=<userId>` (channel `user:<userId>`). */
  broadcastToUser(userId: string, message: Message): void;
  /** Sends the message (plus `channel`, `seq`, `epoch`) to the channel's subscribers, and keeps it in its history. */
  publish(channel: string, message: Message): void;
  /** Sends the message to one client; throws `HERALD_UNKNOWN_CLIENT` if it is not connected. */
  send(clientId: string, message: Message): void;

  /*
   * The sending methods as promises. With the Redis broker each waits for Redis to
   * confirm on a thread of the addon, never on the event loop, and the calls take effect
   * in the order they are made (one at a time); a promise resolves once Redis holds the
   * publication and rejects with a HeraldError (`HERALD_UNAVAILABLE` while Redis is down
   * or slower than `timeoutMs`, `HERALD_QUEUE_FULL` beyond 4096 calls waiting,
   * `HERALD_STOPPED` once closed; a bad argument rejects too). Without a broker they
   * settle at once, like the synchronous forms.
   */
  /** {@link notifyAIStart}, resolved once the broker holds it. */
  notifyAIStartAsync(sessionId: string, task: Message): Promise<void>;
  /** {@link notifyAIProgress}, resolved once the broker holds it. */
  notifyAIProgressAsync(sessionId: string, progress: Message): Promise<void>;
  /** {@link notifyAIComplete}, resolved once the broker holds it. */
  notifyAICompleteAsync(sessionId: string, result: Message): Promise<void>;
  /** {@link notifyAIError}, resolved once the broker holds it. */
  notifyAIErrorAsync(sessionId: string, error: Message | Error): Promise<void>;
  /** {@link broadcast}, resolved once the broker holds it. */
  broadcastAsync(message: Message): Promise<void>;
  /** {@link broadcastToUser}, resolved once the broker holds it. */
  broadcastToUserAsync(userId: string, message: Message): Promise<void>;
  /** {@link publish}, resolved once the broker holds it. */
  publishAsync(channel: string, message: Message): Promise<void>;
  /** {@link send}, resolved once the broker holds it (rejects with `HERALD_UNKNOWN_CLIENT` if no node has the client). */
  sendAsync(clientId: string, message: Message): Promise<void>;
  /** Connection and message counters, and the connected clients. */
  getStats(): Stats;
  /** The history kept for a channel ("session:<id>", "user:<id>" or a channel name), oldest first. */
  getHistory(channel: string): HistoryEntry[];
  /** A session's jobs as of a seq (the same as `GET /api/jobs/<sessionId>`), for server-side rendering. */
  getJobs(sessionId: string): JobsSnapshot;
  /**
   * Who is in a channel: every subscriber, with its user and the status it set.
   * With the Redis broker, every node's (the call then waits for Redis).
   */
  getPresence(channel: string): Presence;

  /**
   * Installs the host authorizer, or removes it with `null`; replaces any
   * previous one. Returns the server.
   *
   * While an authorizer is installed the server is in secure mode (see
   * {@link AuthOptions}). It is asked on every connect (before the client is
   * registered: a denial closes it with 1008 "Unauthorized") and on subscribes
   * to channels not already allowed (a denial is an error with code `forbidden`).
   * The core asks on a worker thread, never an I/O thread; the binding forwards
   * the request to the main thread without blocking, calls `authorizer(request)`
   * there, and answers when it returns or its Promise settles. A slow authorizer
   * delays only the client it is deciding about, but the answer must come within
   * `auth.authorizer_timeout_ms` (default 5000), else the request is denied;
   * requests wait for the main thread, so a busy event loop also runs into it.
   *
   * Errors never crash the process: a throw, a rejection or an unusable return
   * value denies the request and is passed to 'authorizerError' listeners (or
   * written with `console.error` if there are none).
   *
   * The authorizer never keeps the process alive by itself: that is decided by
   * the server alone (`ref`/`unref`/`close`).
   *
   * Removing it (`null`) takes a server without other `auth` settings back to
   * open mode, where clients name themselves with `?userId=`. Use
   * `auth: {required: true}` with an authorizer, so that clients connecting
   * before `setAuthorizer()` is called (right after `start()` resolves) are
   * refused rather than admitted.
   *
   * Throws `TypeError` (`ERR_INVALID_ARG_TYPE`) if `authorizer` is neither a
   * function nor `null`, `HERALD_STOPPED` once `close()` has been called.
   *
   * @example
   * server.setAuthorizer(async (req) => {
   *   if (req.type === 'connect') {
   *     const user = await sessions.lookup(req.headers.cookie);
   *     return user ? { allow: true, userId: user.id, channels: [`session:${user.id}-*`] } : false;
   *   }
   *   return req.channel.startsWith('team:') && (await teams.isMember(req.userId, req.channel));
   * });
   */
  setAuthorizer(authorizer: Authorizer | null): this;

  /** Keep the process alive while the server is open (the default). Returns the server. */
  ref(): this;
  /** Let the process exit even though the server is open. Returns the server. */
  unref(): this;

  /**
   * Flow control: resolves once every call made before it has been fanned out
   * and every healthy client's backlog is under a quarter of its queue budget
   * (`clientQueueSize` / `clientQueueBytes`). A host that publishes faster than
   * its clients read awaits it between batches, or whenever
   * `getStats().backpressure` is true, instead of getting them evicted. A client
   * being closed does not count; one that stopped reading counts until the
   * write-stall rule evicts it (`heartbeatTimeoutMs`). Waits off the JS thread
   * (on the libuv pool). With a broker, await the `…Async` calls first.
   * Rejects with `HERALD_TIMEOUT` after `options.timeoutMs` (default 5000),
   * `HERALD_STOPPED` if the server stops; throws `RangeError`
   * (`ERR_OUT_OF_RANGE`) for a bad `timeoutMs`.
   *
   * @example
   * for (const [i, message] of messages.entries()) {
   *   server.publish('feed', message);
   *   if (i % 500 === 499) await server.drain({ timeoutMs: 10000 });
   * }
   */
  drain(options?: DrainOptions): Promise<void>;

  /**
   * Gracefully stops the server: connections get a close frame (code 1001) and
   * queued messages are flushed for up to `options.timeoutMs` (default 5000),
   * after which the server stops forcibly. Resolves once the server is stopped
   * and every event (including the final 'disconnect's) has been emitted, then
   * emits 'close'. Never blocks the event loop. Calling it again returns the
   * same promise. Afterwards the server no longer keeps the process alive.
   */
  close(options?: CloseOptions): Promise<void>;

  on(event: 'connection', listener: (event: ConnectionEvent) => void): this;
  on(event: 'disconnect', listener: (event: DisconnectEvent) => void): this;
  on(event: 'subscribe', listener: (event: SubscribeEvent) => void): this;
  on(event: 'unsubscribe', listener: (event: UnsubscribeEvent) => void): this;
  on(event: 'message', listener: (event: MessageEvent) => void): this;
  on(event: 'cancel', listener: (event: CancelEvent) => void): this;
  on(event: 'close', listener: () => void): this;
  on(event: 'authorizerError', listener: (error: Error, request: AuthRequest) => void): this;
  on(event: string | symbol, listener: (...args: any[]) => void): this;

  once(event: 'connection', listener: (event: ConnectionEvent) => void): this;
  once(event: 'disconnect', listener: (event: DisconnectEvent) => void): this;
  once(event: 'subscribe', listener: (event: SubscribeEvent) => void): this;
  once(event: 'unsubscribe', listener: (event: UnsubscribeEvent) => void): this;
  once(event: 'message', listener: (event: MessageEvent) => void): this;
  once(event: 'cancel', listener: (event: CancelEvent) => void): this;
  once(event: 'close', listener: () => void): this;
  once(event: 'authorizerError', listener: (error: Error, request: AuthRequest) => void): this;
  once(event: string | symbol, listener: (...args: any[]) => void): this;

  addListener(event: 'connection', listener: (event: ConnectionEvent) => void): this;
  addListener(event: 'disconnect', listener: (event: DisconnectEvent) => void): this;
  addListener(event: 'subscribe', listener: (event: SubscribeEvent) => void): this;
  addListener(event: 'unsubscribe', listener: (event: UnsubscribeEvent) => void): this;
  addListener(event: 'message', listener: (event: MessageEvent) => void): this;
  addListener(event: 'cancel', listener: (event: CancelEvent) => void): this;
  addListener(event: 'close', listener: () => void): this;
  addListener(event: 'authorizerError', listener: (error: Error, request: AuthRequest) => void): this;
  addListener(event: string | symbol, listener: (...args: any[]) => void): this;

  prependListener(event: 'connection', listener: (event: ConnectionEvent) => void): this;
  prependListener(event: 'disconnect', listener: (event: DisconnectEvent) => void): this;
  prependListener(event: 'subscribe', listener: (event: SubscribeEvent) => void): this;
  prependListener(event: 'unsubscribe', listener: (event: UnsubscribeEvent) => void): this;
  prependListener(event: 'message', listener: (event: MessageEvent) => void): this;
  prependListener(event: 'cancel', listener: (event: CancelEvent) => void): this;
  prependListener(event: 'close', listener: () => void): this;
  prependListener(event: 'authorizerError', listener: (error: Error, request: AuthRequest) => void): this;
  prependListener(event: string | symbol, listener: (...args: any[]) => void): this;

  off(event: 'connection', listener: (event: ConnectionEvent) => void): this;
  off(event: 'disconnect', listener: (event: DisconnectEvent) => void): this;
  off(event: 'subscribe', listener: (event: SubscribeEvent) => void): this;
  off(event: 'unsubscribe', listener: (event: UnsubscribeEvent) => void): this;
  off(event: 'message', listener: (event: MessageEvent) => void): this;
  off(event: 'cancel', listener: (event: CancelEvent) => void): this;
  off(event: 'close', listener: () => void): this;
  off(event: 'authorizerError', listener: (error: Error, request: AuthRequest) => void): this;
  off(event: string | symbol, listener: (...args: any[]) => void): this;

  emit(event: 'connection', event_: ConnectionEvent): boolean;
  emit(event: 'disconnect', event_: DisconnectEvent): boolean;
  emit(event: 'subscribe', event_: SubscribeEvent): boolean;
  emit(event: 'unsubscribe', event_: UnsubscribeEvent): boolean;
  emit(event: 'message', event_: MessageEvent): boolean;
  emit(event: 'close'): boolean;
  emit(event: 'authorizerError', error: Error, request: AuthRequest): boolean;
  emit(event: string | symbol, ...args: any[]): boolean;
}

/**
 * Starts a Herald server and resolves once it is listening. Binding happens
 * off the event loop. Rejects with a {@link HeraldError}: `HERALD_INVALID_CONFIG`
 * for a bad option, `HERALD_IO` if the address cannot be bound.
 *
 * Events from clients that connect before the promise resolves are held and
 * emitted after the caller's continuation has run, so listeners attached right
 * after `await start()` see them.
 *
 * @example
 * const herald = require('herald');
 * const server = await herald.start({ port: 3001 });
 * server.on('connection', (e) => console.log('client', e.clientId, e.userId));
 * server.notifyAIStart('session-1', { id: 'job-1', prompt: 'Summarize' });
 * await server.close();
 */
export declare function start(options?: ServerOptions): Promise<HeraldServer>;

/** Version of the Herald core the addon was built from. */
export declare const version: string;

/** One log record of the core. */
export interface LogRecord {
  level: 'error' | 'warn' | 'info' | 'debug' | 'trace';
  /** The Rust module that logged, e.g. `herald::connection`. */
  target: string;
  /** The message, then its fields as ` key=value`. */
  message: string;
}

/**
 * Routes the core's log records at `level` (default `info`) and more severe to
 * `callback`, on the main thread; `onLog(null)` stops. Process-wide; never keeps
 * the process alive.
 */
export declare function onLog(
  callback: ((record: LogRecord) => void) | null,
  options?: { level?: LogRecord['level'] },
): void;
