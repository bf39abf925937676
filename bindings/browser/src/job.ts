import { Emitter } from './emitter.js';
import type { GapEvent, SubscribeOptions, Subscription } from './subscription.js';
import type { JobSnapshot, JobsSnapshotMessage, JsonObject, Position, Publication } from './protocol.js';

/** What every non-idle state may carry besides its own fields. */
interface Followed {
  /** The job's id; absent for the session's implicit job (notifications without `jobId`). */
  jobId?: string;
  task?: JsonObject;
  /** The text its `ai_delta`s streamed so far; absent until some arrived. */
  text?: string;
}

/** What an AI job is doing, built from the session's jobs snapshot and `ai_*` notifications. */
export type JobState =
  | { status: 'idle' }
  | (Followed & { status: 'running'; progress?: JsonObject })
  | (Followed & { status: 'complete'; result: JsonObject })
  | (Followed & { status: 'error'; error: JsonObject })
  | (Followed & { status: 'cancelled'; cancelled: JsonObject });

export interface JobEvents {
  /** The state changed (also when a snapshot arrives, e.g. after a reload). */
  change: JobState;
  /** Some notifications were lost (see Subscription `gap`); the state may be stale until the next one. */
  gap: GapEvent;
}

export interface JobOptions extends SubscribeOptions {
  /** Follow this job of the session; default: the session's latest job. */
  jobId?: string;
}

const PAYLOAD_KEY: Record<string, string> = {
  ai_start: 'task',
  ai_progress: 'progress',
  ai_delta: 'delta',
  ai_complete: 'result',
  ai_error: 'error',
  ai_cancelled: 'cancelled',
};

/** The job a notification is about: its payload's `jobId`, or undefined for the implicit job. */
function jobIdOf(message: Publication): string | undefined {
  const key = PAYLOAD_KEY[message.type as string];
  const payload = key ? (message as Record<string, unknown>)[key] : undefined;
  const id = payload && typeof payload === 'object' ? (payload as JsonObject).jobId : undefined;
  return typeof id === 'string' ? id : undefined;
}

/** The fields every state of one job keeps: its id, task and text. */
function followed(state: JobState): Followed {
  if (state.status === 'idle') return {};
  const kept: Followed = {};
  if (state.jobId !== undefined) kept.jobId = state.jobId;
  if (state.task !== undefined) kept.task = state.task;
  if (state.text !== undefined) kept.text = state.text;
  return kept;
}

/**
 * The next state after one notification. A notification of another job than the one
 * followed leaves it as is; `ai_start` starts over (with `follow`, only for that job).
 */
export function nextJobState(state: JobState, message: Publication, follow?: string): JobState {
  if (!(message.type as string in PAYLOAD_KEY)) return state;
  const id = jobIdOf(message);
  if (follow !== undefined && id !== follow) return state;
  const current = state.status === 'idle' ? undefined : state.jobId;
  if (message.type !== 'ai_start' && state.status !== 'idle' && id !== current) return state;
  const base: Followed = message.type === 'ai_start' ? {} : followed(state);
  if (id !== undefined) base.jobId = id;
  const m = message as Record<string, unknown>;
  switch (message.type) {
    case 'ai_start':
      return { ...base, status: 'running', task: m.task as JsonObject };
    case 'ai_progress':
      return { ...base, status: 'running', progress: m.progress as JsonObject };
    case 'ai_delta': {
      const text = (m.delta as { text?: unknown }).text;
      const running: JobState =
        state.status === 'running' ? { ...state, ...base } : { ...base, status: 'running' };
      return typeof text === 'string' ? { ...running, text: (base.text ?? '') + text } : running;
    }
    case 'ai_complete':
      return { ...base, status: 'complete', result: m.result as JsonObject };
    case 'ai_error':
      return { ...base, status: 'error', error: m.error as JsonObject };
    case 'ai_cancelled':
      return { ...base, status: 'cancelled', cancelled: m.cancelled as JsonObject };
    default:
      return state;
  }
}

/** The state a snapshot gives the followed job (the latest when none is named). */
export function jobStateFromSnapshot(snapshot: JobsSnapshotMessage, follow?: string): JobState {
  const jobs = snapshot.jobs;
  const job: JobSnapshot | undefined =
    follow === undefined ? jobs[jobs.length - 1] : jobs.find((j) => j.jobId === follow);
  if (!job) return { status: 'idle' };
  const base: Followed = {};
  if (job.jobId !== null) base.jobId = job.jobId;
  if (job.task) base.task = job.task;
  if (job.text) base.text = job.text;
  switch (job.state) {
    case 'complete':
      return { ...base, status: 'complete', result: job.result ?? {} };
    case 'error':
      return { ...base, status: 'error', error: job.error ?? {} };
    case 'cancelled':
      return { ...base, status: 'cancelled', cancelled: job.cancelled ?? {} };
    default:
      return job.progress ? { ...base, status: 'running', progress: job.progress } : { ...base, status: 'running' };
  }
}

/**
 * An AI job on one session: `idle` → `running` (with progress and streamed text) →
 * `complete` | `error` | `cancelled`; a new `ai_start` starts over. After a reload it
 * starts from the session's jobs snapshot, then follows live, with no gap or duplicate.
 */
export class Job extends Emitter<JobEvents> {
  private current: JobState = { status: 'idle' };
  /** The last snapshot's position: publications up to it are in the snapshot already. */
  private snapshotAt: Position | undefined;
  private readonly offs: Array<() => void>;

  constructor(
    readonly sessionId: string,
    private readonly subscription: Subscription,
    private readonly send: (message: { type: string; [key: string]: unknown }) => boolean = () => false,
    readonly jobId?: string,
  ) {
    super();
    this.offs = [
      subscription.on('snapshot', (snapshot) => {
        this.snapshotAt = { seq: snapshot.seq, epoch: snapshot.epoch };
        this.set(jobStateFromSnapshot(snapshot, this.jobId));
      }),
      subscription.on('publication', (message) => {
        const at = this.snapshotAt;
        if (at && message.epoch === at.epoch && message.seq <= at.seq) return; // in the snapshot
        this.set(nextJobState(this.current, message, this.jobId));
      }),
      subscription.on('gap', (gap) => this.emit('gap', gap)),
    ];
  }

  private set(next: JobState): void {
    if (next === this.current) return;
    this.current = next;
    this.emit('change', next);
  }

  get state(): JobState {
    return this.current;
  }

  /**
   * Asks the host to cancel the job (`{"type":"cancel","sessionId","jobId"}`); the host
   * decides, and its `ai_cancelled` ends the job. Queued while offline, like `send`.
   * Returns whether it went out now.
   */
  cancel(): boolean {
    const jobId = this.jobId ?? (this.current.status === 'idle' ? undefined : this.current.jobId);
    const message: { type: string; [key: string]: unknown } = { type: 'cancel', sessionId: this.sessionId };
    if (jobId !== undefined) message.jobId = jobId;
    return this.send(message);
  }

  /** Stops following the job (and unsubscribes when nothing else uses the session). */
  close(): void {
    for (const off of this.offs.splice(0)) off();
    this.removeAllHandlers();
    this.subscription.unsubscribe();
  }
}
