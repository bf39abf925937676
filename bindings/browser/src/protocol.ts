// Herald wire protocol v1, as the server speaks it (src/protocol.rs in the core is the
// source of truth; test/protocol.test.mjs fails when these types drift from it).

/** A JSON object as the host sent it (task, progress, result, error payloads). */
export type JsonObject = { [key: string]: unknown };

/** Every server message carries its time, ISO-8601 UTC with milliseconds. */
interface Stamped {
  timestamp: string;
}

/** Where a publication sits in its channel: `seq` counts 1, 2, 3 … within `epoch`. */
export interface Position {
  seq: number;
  epoch: string;
}

/** Sent once, right after the WebSocket opens. */
export interface ConnectionMessage extends Stamped {
  type: 'connection';
  status: 'connected';
  clientId: string;
}

/** The answer to `{"type":"ping"}`. */
export interface PongMessage extends Stamped {
  type: 'pong';
}

/** Bad input, a refused subscription (`forbidden`), a rate limit (`rate_limited`) …; the connection stays open. */
export interface ErrorMessage extends Stamped {
  type: 'error';
  error: { code: string; message: string };
}

/** The reply to `subscribe`: the channel's current position, and with `since`, whether recovery worked. */
export interface SubscribedMessage extends Stamped, Position {
  type: 'subscribed';
  sessionId?: string;
  channel?: string;
  /** Present when the subscribe carried `since`: false means the missed publications are gone. */
  recovered?: boolean;
}

/** The reply to `unsubscribe`; `all` when it named no channel. */
export interface UnsubscribedMessage extends Stamped {
  type: 'unsubscribed';
  sessionId?: string;
  channel?: string;
  all?: true;
}

/** One member of a channel: a subscriber, its user (null if anonymous) and the status it set. */
export interface PresenceMember {
  clientId: string;
  userId: string | null;
  /** "online" until the client sets another (at most 32 bytes; never "offline"). */
  status: string;
}

/** The answer to `{"type":"presence", channel | sessionId, status?}`: who is in the channel. */
export interface PresenceMessage extends Stamped {
  type: 'presence';
  sessionId?: string;
  channel?: string;
  /** At most the server's `presence.max_members`. */
  members: PresenceMember[];
  /** Every member, listed or not. */
  total: number;
  truncated: boolean;
}

/**
 * A member joined, left (its status then reads "offline") or changed its status; sent to
 * the channel's subscribers that subscribed with `presence: true`.
 */
export interface UserPresenceMessage extends Stamped {
  type: 'user_presence';
  /** The channel's name (`session:ID` for a session). */
  channel: string;
  action: 'join' | 'leave' | 'update';
  data: PresenceMember;
}

interface AiMessage extends Stamped, Position {
  sessionId: string;
}

export interface AiStartMessage extends AiMessage {
  type: 'ai_start';
  task: JsonObject;
}

export interface AiProgressMessage extends AiMessage {
  type: 'ai_progress';
  progress: JsonObject;
}

export interface AiCompleteMessage extends AiMessage {
  type: 'ai_complete';
  result: JsonObject;
}

export interface AiErrorMessage extends AiMessage {
  type: 'ai_error';
  error: JsonObject;
}

/** A piece of a job's token stream; `merged` when it stands for several the client fell behind on. */
export interface AiDeltaMessage extends AiMessage {
  type: 'ai_delta';
  delta: { jobId?: string; text: string; [key: string]: unknown };
  /** How many deltas this one merges (the text concatenated; `seq` is the last one's). */
  merged?: number;
}

export interface AiCancelledMessage extends AiMessage {
  type: 'ai_cancelled';
  cancelled: JsonObject;
}

export type AiNotification =
  | AiStartMessage
  | AiProgressMessage
  | AiCompleteMessage
  | AiErrorMessage
  | AiDeltaMessage
  | AiCancelledMessage;

/** One job of a session as a snapshot gives it. */
export interface JobSnapshot {
  /** null for the session's implicit job (notifications without `jobId`). */
  jobId: string | null;
  state: 'running' | 'complete' | 'error' | 'cancelled';
  task: JsonObject | null;
  progress: JsonObject | null;
  /** The text of its `ai_delta`s so far. */
  text: string;
  truncated?: true;
  result?: JsonObject;
  error?: JsonObject;
  cancelled?: JsonObject;
  startedAt: string;
  endedAt: string | null;
}

/**
 * The state of a session's jobs as of `seq`: sent after `subscribed` when the client
 * starts without history (a new page, or a recovery that failed), before the live tail.
 */
export interface JobsSnapshotMessage extends Stamped, Position {
  type: 'jobs_snapshot';
  sessionId: string;
  jobs: JobSnapshot[];
}

/** Every message the protocol itself defines, discriminated by `type`. */
export type ProtocolMessage =
  | ConnectionMessage
  | PongMessage
  | ErrorMessage
  | SubscribedMessage
  | UnsubscribedMessage
  | JobsSnapshotMessage
  | PresenceMessage
  | UserPresenceMessage
  | AiNotification;

/**
 * A host's own message (broadcast, to a user, to a channel, to one client): the host's
 * object as given, plus `timestamp`, and for channels `channel`, `seq` and `epoch`.
 */
export interface HostMessage {
  type?: string;
  timestamp: string;
  channel?: string;
  seq?: number;
  epoch?: string;
  [key: string]: unknown;
}

/** Anything the server may send. Switch on `type` to narrow a {@link ProtocolMessage}. */
export type ServerMessage = ProtocolMessage | HostMessage;

/** A publication to a channel the client subscribed to (sessions' `ai_*` included). */
export type Publication = (AiNotification | HostMessage) & Position;

export const PROTOCOL_MESSAGE_TYPES = [
  'connection',
  'pong',
  'error',
  'subscribed',
  'unsubscribed',
  'presence',
  'user_presence',
  'ai_start',
  'ai_progress',
  'ai_complete',
  'ai_error',
  'ai_delta',
  'ai_cancelled',
  'jobs_snapshot',
] as const;

// Fails to compile when the list above and the union disagree, in either direction.
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
const listMatchesUnion: Same<(typeof PROTOCOL_MESSAGE_TYPES)[number], ProtocolMessage['type']> = true;
void listMatchesUnion;

/** A client request naming what to subscribe to. */
export type Target = string | { sessionId: string } | { channel: string };

/** The hub's channel name for a target: sessions are `session:ID`. */
export function channelOf(target: Target): string {
  if (typeof target === 'string') return target;
  return 'sessionId' in target ? `session:${target.sessionId}` : target.channel;
}
