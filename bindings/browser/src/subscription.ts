import { Emitter } from './emitter.js';
import type {
  JobsSnapshotMessage,
  Position,
  PresenceMessage,
  Publication,
  SubscribedMessage,
  Target,
  UserPresenceMessage,
} from './protocol.js';

export interface SubscribeOptions {
  /**
   * On its first subscribe, replay up to this many past publications from the channel's
   * history (the server keeps `history.size`, default 256), e.g. to rebuild a job's state
   * after a page reload. Default 0: only what is published from now on.
   */
  history?: number;
  /** Ask for the channel's `user_presence` events (who joins, leaves, changes status). */
  presence?: boolean;
}

/** Recovery failed: publications between `from` and `to` are lost; refetch your state. */
export interface GapEvent {
  /** The last position this subscription processed. */
  from: Position;
  /** Where the channel stands now; publications continue after it. */
  to: Position;
}

export interface SubscriptionEvents {
  /** A publication, each exactly once and in order. */
  publication: Publication;
  /** The server confirmed the subscription (on every connect, with its reply). */
  subscribed: SubscribedMessage;
  /** Recovery after a reconnect failed (history too short, or the server restarted). */
  gap: GapEvent;
  /**
   * A session's jobs as of a position, sent (instead of history) when the subscription
   * starts fresh or its recovery failed; publications continue after it.
   */
  snapshot: JobsSnapshotMessage;
  /** A presence answer or event on this channel (see `HeraldClient.presence`). */
  presence: PresenceMessage | UserPresenceMessage;
}

/** What a subscription needs from its client. */
export interface SubscriptionLink {
  /** Sends now if connected; returns false (and drops it) otherwise. */
  sendNow(message: object): boolean;
  release(subscription: Subscription): void;
}

type Phase =
  /** Nothing sent on this connection yet. */
  | 'idle'
  /** Waiting for the reply of a subscribe; publications before it are stale or replayed after it. */
  | 'awaiting'
  /** Waiting for the reply of the one-time history request (see SubscribeOptions.history). */
  | 'awaiting-history'
  | 'live'
  | 'closed';

/**
 * One channel (or session) subscription. It survives reconnects: on each one it
 * subscribes again with `since` = the last position it processed, and drops any
 * publication it has already seen, so its handlers see every publication once, in order.
 */
export class Subscription extends Emitter<SubscriptionEvents> {
  readonly channel: string;
  private phase: Phase = 'idle';
  private last: Position | undefined;
  private historyWanted: number;
  private presenceWanted: boolean;
  /** The server was told of `presenceWanted` on this connection. */
  private presenceSent = false;
  private refs = 1;

  constructor(
    readonly target: Exclude<Target, string> | { channel: string },
    channel: string,
    private readonly link: SubscriptionLink,
    options: SubscribeOptions = {},
  ) {
    super();
    this.channel = channel;
    this.historyWanted = Math.max(0, Math.floor(options.history ?? 0));
    this.presenceWanted = options.presence === true;
  }

  /** The last publication processed, as `{seq, epoch}`; undefined before the first reply. */
  get position(): Position | undefined {
    return this.last && { ...this.last };
  }

  /** True once the server confirmed the subscription on the current connection. */
  get isLive(): boolean {
    return this.phase === 'live';
  }

  get closed(): boolean {
    return this.phase === 'closed';
  }

  /** Stops this subscription (once every caller of `subscribe` for it has called this). */
  unsubscribe(): void {
    if (this.phase === 'closed') return;
    if (--this.refs > 0) return;
    this.phase = 'closed';
    this.removeAllHandlers();
    this.link.release(this);
  }

  /** @internal another `subscribe()` of the same channel shares this one. */
  retain(): void {
    this.refs++;
  }

  /** @internal the connection is ready (or this subscription is new): subscribe. */
  start(): void {
    if (this.phase === 'closed') return;
    const since = this.last;
    const request: Record<string, unknown> = { type: 'subscribe', ...this.target };
    if (since) request.since = since;
    if (this.presenceWanted) request.presence = true;
    this.phase = this.link.sendNow(request) ? 'awaiting' : 'idle';
    this.presenceSent = this.presenceWanted && this.phase === 'awaiting';
  }

  /**
   * @internal from now on (and after every reconnect) ask for presence events. While
   * subscribed, the server takes a second subscribe as that wish (its reply is ignored).
   */
  wantPresence(): void {
    if (this.presenceWanted || this.phase === 'closed') return;
    this.presenceWanted = true;
    // While a subscribe awaits its reply, a second one would be taken for that reply:
    // it is sent once the subscription is live.
    if (this.phase === 'live') this.sendPresenceWish();
  }

  private sendPresenceWish(): void {
    if (this.presenceWanted && !this.presenceSent) {
      this.presenceSent = this.link.sendNow({ type: 'subscribe', ...this.target, presence: true });
    }
  }

  /** @internal sends a message about this channel now if connected. */
  sendNow(message: object): boolean {
    return this.phase !== 'closed' && this.link.sendNow(message);
  }

  /** @internal a presence answer or event for this channel. */
  handlePresence(message: PresenceMessage | UserPresenceMessage): void {
    if (this.phase !== 'closed') this.emit('presence', message);
  }

  /** @internal the connection dropped. */
  stop(): void {
    if (this.phase !== 'closed') this.phase = 'idle';
  }

  /** @internal the reply to our subscribe. */
  handleSubscribed(reply: SubscribedMessage): void {
    const now: Position = { seq: reply.seq, epoch: reply.epoch };
    if (this.phase === 'awaiting-history') {
      // The one-time history request: on success the replay follows; otherwise only what comes next.
      if (reply.recovered !== true) this.last = now;
      this.phase = 'live';
      this.sendPresenceWish();
      this.emit('subscribed', reply);
      return;
    }
    if (this.phase !== 'awaiting') return;
    const from = this.last;
    if (reply.recovered !== true) this.last = now;
    if (!from && this.historyWanted > 0 && now.seq > 0) {
      // Ask again, from up to `history` publications back; everything until that reply
      // is replayed after it, so publications arriving meanwhile are dropped.
      const since = { seq: Math.max(0, now.seq - this.historyWanted), epoch: now.epoch };
      this.historyWanted = 0;
      const request: Record<string, unknown> = { type: 'subscribe', ...this.target, since };
      if (this.presenceWanted) request.presence = true;
      if (this.link.sendNow(request)) {
        this.last = since;
        this.phase = 'awaiting-history';
        return;
      }
    }
    this.historyWanted = 0;
    this.phase = 'live';
    this.sendPresenceWish();
    this.emit('subscribed', reply);
    if (from && reply.recovered === false) this.emit('gap', { from, to: now });
  }

  /** @internal the jobs snapshot that follows our subscribe's reply. */
  handleSnapshot(message: JobsSnapshotMessage): void {
    // Its seq is the reply's: the position does not move. A history request in flight
    // still replays what came before it, for listeners that asked for history (a job
    // skips those: the snapshot holds them).
    if (this.phase !== 'live' && this.phase !== 'awaiting-history') return;
    this.emit('snapshot', message);
  }

  /** @internal a publication on this channel. */
  handlePublication(message: Publication): void {
    if (this.phase !== 'live') return;
    const last = this.last;
    if (last && last.epoch === message.epoch && message.seq <= last.seq) return; // already seen
    this.last = { seq: message.seq, epoch: message.epoch };
    this.emit('publication', message);
  }
}
