import { Emitter } from './emitter.js';
import type { GapEvent, Subscription } from './subscription.js';
import type { JsonObject, Publication } from './protocol.js';

/** What an AI job is doing, built from the session's `ai_*` notifications. */
export type JobState =
  | { status: 'idle' }
  | { status: 'running'; task?: JsonObject; progress?: JsonObject }
  | { status: 'complete'; task?: JsonObject; result: JsonObject }
  | { status: 'error'; task?: JsonObject; error: JsonObject };

export interface JobEvents {
  /** The state changed (also after a reload, as history is replayed). */
  change: JobState;
  /** Some notifications were lost (see Subscription `gap`); the state may be stale until the next one. */
  gap: GapEvent;
}

/** The next state after one notification; anything that is not `ai_*` leaves it as is. */
export function nextJobState(state: JobState, message: Publication): JobState {
  const task = state.status === 'idle' ? undefined : state.task;
  switch (message.type) {
    case 'ai_start':
      return { status: 'running', task: message.task as JsonObject };
    case 'ai_progress':
      return { status: 'running', task, progress: message.progress as JsonObject };
    case 'ai_complete':
      return { status: 'complete', task, result: message.result as JsonObject };
    case 'ai_error':
      return { status: 'error', task, error: message.error as JsonObject };
    default:
      return state;
  }
}

/**
 * The state machine of the AI job on one session: `idle` → `running` (with progress)
 * → `complete` (with result) | `error`; a new `ai_start` starts over.
 */
export class Job extends Emitter<JobEvents> {
  private current: JobState = { status: 'idle' };
  private readonly offs: Array<() => void>;

  constructor(
    readonly sessionId: string,
    private readonly subscription: Subscription,
  ) {
    super();
    this.offs = [
      subscription.on('publication', (message) => {
        const next = nextJobState(this.current, message);
        if (next !== this.current) {
          this.current = next;
          this.emit('change', next);
        }
      }),
      subscription.on('gap', (gap) => this.emit('gap', gap)),
    ];
  }

  get state(): JobState {
    return this.current;
  }

  /** Stops following the job (and unsubscribes when nothing else uses the session). */
  close(): void {
    for (const off of this.offs.splice(0)) off();
    this.removeAllHandlers();
    this.subscription.unsubscribe();
  }
}
