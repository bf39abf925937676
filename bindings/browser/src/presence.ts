import { Emitter } from './emitter.js';
import type { PresenceMember, PresenceMessage, UserPresenceMessage } from './protocol.js';
import type { Subscription } from './subscription.js';

export interface PresenceOptions {
  /** This client's own status in the channel (e.g. "away"); the server's default is "online". */
  status?: string;
}

/** Who is in a channel, as last known. */
export interface PresenceState {
  /** A member list has arrived (the client asks again on every reconnect). */
  ready: boolean;
  /** Members in the order they joined (at most the server's `presence.max_members` from its list, plus later joins). */
  members: PresenceMember[];
  /** How many members the server counted in its last list, adjusted by the joins and leaves since. */
  total: number;
}

export interface PresenceEvents {
  /** The member list changed (or arrived). */
  change: PresenceState;
  /** One member joined, left or changed its status. */
  event: UserPresenceMessage;
}

/**
 * A channel's members, kept up to date from the server's list (asked for on every
 * connect) and its `user_presence` events. Made by `HeraldClient.presence()`.
 */
export class Presence extends Emitter<PresenceEvents> {
  private members = new Map<string, PresenceMember>();
  private total = 0;
  private ready = false;
  /** Events since the list was asked for: applied over it when it comes. */
  private pending: UserPresenceMessage[] | null = null;
  private status: string | undefined;
  private closed = false;
  private readonly offs: Array<() => void>;

  constructor(
    private readonly sub: Subscription,
    options: PresenceOptions = {},
  ) {
    super();
    this.status = options.status;
    this.offs = [
      sub.on('subscribed', () => this.ask()),
      sub.on('presence', (message) => this.received(message)),
    ];
    // A subscription already live gets no new reply: ask now.
    if (sub.isLive) this.ask();
  }

  get state(): PresenceState {
    return { ready: this.ready, members: [...this.members.values()], total: this.total };
  }

  /** Sets this client's status in the channel (kept across reconnects). */
  setStatus(status: string): void {
    if (this.closed || status === this.status) return;
    this.status = status;
    this.ask();
  }

  /** Stops following the channel (and unsubscribes, unless someone else subscribed to it too). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const off of this.offs) off();
    this.removeAllHandlers();
    this.sub.unsubscribe();
  }

  /** Asks for the member list (and sets our status, if any); events until it comes are kept. */
  private ask(): void {
    const request: Record<string, unknown> = { type: 'presence', ...this.sub.target };
    if (this.status !== undefined) request.status = this.status;
    if (this.sub.sendNow(request)) this.pending ??= [];
    else this.ready = false;
  }

  private received(message: PresenceMessage | UserPresenceMessage): void {
    if (message.type === 'presence') {
      this.members = new Map(message.members.map((m) => [m.clientId, m]));
      this.total = message.total;
      // Events that arrived while the list was made may or may not be in it: a leave
      // wins, joins and updates are applied over it.
      for (const event of this.pending ?? []) this.apply(event);
      this.pending = null;
      this.ready = true;
      this.emit('change', this.state);
      return;
    }
    this.pending?.push(message);
    this.emit('event', message);
    if (this.pending === null) {
      this.apply(message);
      this.emit('change', this.state);
    }
  }

  private apply(event: UserPresenceMessage): void {
    const id = event.data.clientId;
    const known = this.members.has(id);
    if (event.action === 'leave') {
      if (known) {
        this.members.delete(id);
        this.total = Math.max(0, this.total - 1);
      }
      return;
    }
    if (!known && event.action === 'join') this.total++;
    if (known || event.action === 'join') this.members.set(id, event.data);
  }
}
