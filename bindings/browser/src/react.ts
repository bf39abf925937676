// React hooks over HeraldClient. Each hook acquires in an effect and releases in that
// effect's cleanup, so StrictMode's mount → unmount → mount leaves exactly one live
// subscription (or client), and unmounting leaves none.

import { useCallback, useEffect, useRef, useState } from 'react';
import { HeraldClient } from './client.js';
import type { ConnectionState, HeraldClientOptions } from './client.js';
import type { Job, JobOptions, JobState } from './job.js';
import type { Presence, PresenceState } from './presence.js';
import type { Publication, Target } from './protocol.js';
import { channelOf } from './protocol.js';
import type { GapEvent, SubscribeOptions } from './subscription.js';

/**
 * A client for the component's lifetime (a new one when `url` changes; `null` url: none).
 * Options are read when the client is made; pass `getToken` for tokens that change.
 */
export function useHeraldClient(
  url: string | null,
  options?: HeraldClientOptions,
): { client: HeraldClient | null; state: ConnectionState } {
  const optionsRef = useRef(options);
  optionsRef.current = options;
  const [client, setClient] = useState<HeraldClient | null>(null);
  const [state, setState] = useState<ConnectionState>('disconnected');
  useEffect(() => {
    if (!url) return;
    const c = new HeraldClient(url, { ...optionsRef.current, autoConnect: false });
    const off = c.on('state', setState);
    c.connect();
    setClient(c);
    setState(c.state);
    return () => {
      off();
      c.disconnect();
      setClient(null);
      setState('disconnected');
    };
  }, [url]);
  return { client, state };
}

export interface ChannelState {
  /** The server confirmed the subscription on the current connection. */
  subscribed: boolean;
  /** The last publication processed. */
  last: Publication | null;
  /** The last failed recovery, if any: refetch what the channel describes. */
  gap: GapEvent | null;
}

/**
 * Subscribes while mounted; `onPublication` sees each publication once, in order
 * (the latest function passed is called; it need not be memoized).
 */
export function useChannel(
  client: HeraldClient | null,
  target: Target | null,
  onPublication?: (message: Publication) => void,
  options?: SubscribeOptions,
): ChannelState {
  const handler = useRef(onPublication);
  handler.current = onPublication;
  const [state, setState] = useState<ChannelState>({ subscribed: false, last: null, gap: null });
  const key = target === null ? null : `${typeof target === 'string' ? 'c' : 'sessionId' in target ? 's' : 'c'}:${channelOf(target)}`;
  const history = options?.history;
  useEffect(() => {
    if (!client || target === null) return;
    const sub = client.subscribe(target, { history });
    const offs = [
      sub.on('publication', (message) => {
        setState((s) => ({ ...s, subscribed: true, last: message }));
        handler.current?.(message);
      }),
      sub.on('subscribed', () => setState((s) => ({ ...s, subscribed: true }))),
      sub.on('gap', (gap) => setState((s) => ({ ...s, gap }))),
      client.on('state', (st) => st !== 'connected' && setState((s) => ({ ...s, subscribed: false }))),
    ];
    setState({ subscribed: sub.isLive, last: null, gap: null });
    return () => {
      for (const off of offs) off();
      sub.unsubscribe();
    };
    // `key` stands for `target`: a new object literal each render must not resubscribe.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [client, key, history]);
  return state;
}

/** A job's state, and a way to ask the host to cancel it. */
export type JobView = JobState & {
  /** Sends `{"type":"cancel","sessionId","jobId"}`; false if it could not go out now (queued). */
  cancel: () => boolean;
};

/**
 * The AI job on `sessionId` (see `HeraldClient.job`): idle, running with progress and the
 * text streamed so far (after a reload too, from the session's snapshot), complete, error
 * or cancelled; `cancel()` asks the host to stop it.
 */
export function useJob(client: HeraldClient | null, sessionId: string | null, options?: JobOptions): JobView {
  const [state, setState] = useState<JobState>({ status: 'idle' });
  const jobRef = useRef<Job | null>(null);
  const history = options?.history;
  const jobId = options?.jobId;
  useEffect(() => {
    if (!client || !sessionId) return;
    const opts: JobOptions = {};
    if (history !== undefined) opts.history = history;
    if (jobId !== undefined) opts.jobId = jobId;
    const job = client.job(sessionId, opts);
    jobRef.current = job;
    setState(job.state);
    const off = job.on('change', setState);
    return () => {
      off();
      job.close();
      if (jobRef.current === job) jobRef.current = null;
      setState({ status: 'idle' });
    };
  }, [client, sessionId, history, jobId]);
  const cancel = useCallback(() => jobRef.current?.cancel() ?? false, []);
  return { ...state, cancel };
}

/**
 * Who is in a channel (or session) while mounted: its members with their user and
 * status, kept up to date. `options.status` is this client's own status there (e.g.
 * "away" while the tab is hidden); changing it updates the server.
 */
export function usePresence(
  client: HeraldClient | null,
  target: Target | null,
  options?: { status?: string },
): PresenceState {
  const [state, setState] = useState<PresenceState>({ ready: false, members: [], total: 0 });
  const presenceRef = useRef<Presence | null>(null);
  const status = options?.status;
  const statusRef = useRef(status);
  statusRef.current = status;
  const key = target === null ? null : `${typeof target === 'string' ? 'c' : 'sessionId' in target ? 's' : 'c'}:${channelOf(target)}`;
  useEffect(() => {
    if (!client || target === null) return;
    const presence = client.presence(target, { status: statusRef.current });
    presenceRef.current = presence;
    setState(presence.state);
    const off = presence.on('change', setState);
    return () => {
      off();
      presence.close();
      presenceRef.current = null;
      setState({ ready: false, members: [], total: 0 });
    };
    // `key` stands for `target`: a new object literal each render must not resubscribe.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [client, key]);
  useEffect(() => {
    if (status !== undefined) presenceRef.current?.setStatus(status);
  }, [status]);
  return state;
}
