// The page the headless-Chromium tests drive (bundled with esbuild, React in its
// development build so StrictMode double-mounts). Everything it observes is kept on
// `window.report` for the test to read.

import { StrictMode, useState } from 'react';
import { createRoot } from 'react-dom/client';
import { HeraldClient } from '../../src/index.ts';
import { useChannel, useHeraldClient, useJob, usePresence } from '../../src/react.ts';

const report = (window.report = { seen: [], gaps: [], closes: [], states: [], connects: 0, react: { received: [] } });

/** A stream subscriber: records every publication it processes, every close and gap. */
window.startStream = (url, channel, options = { minReconnectDelayMs: 20, maxReconnectDelayMs: 250 }) => {
  const client = new HeraldClient(url, options);
  window.streamClient = client;
  client.on('state', (s) => report.states.push(s));
  client.on('connected', () => report.connects++);
  client.on('disconnected', (e) => {
    report.closes.push(e.code);
    report.lastRetryInMs = e.retryInMs;
  });
  const sub = client.subscribe(channel);
  sub.on('publication', (m) => report.seen.push({ n: m.n, seq: m.seq, epoch: m.epoch }));
  sub.on('gap', (g) => report.gaps.push(g));
};

function ReactProbe({ url }) {
  const { client, state } = useHeraldClient(url, { minReconnectDelayMs: 20, maxReconnectDelayMs: 250 });
  const channel = useChannel(client, 'react-chan', (m) => report.react.received.push(m.n));
  const job = useJob(client, 'react-job');
  return (
    <div id="probe">
      <span id="react-state">{state}</span>
      <span id="react-last">{channel.last ? String(channel.last.n) : ''}</span>
      <span id="react-subscribed">{String(channel.subscribed)}</span>
      <span id="job-status">{job.status}</span>
      <span id="job-percent">{job.status === 'running' && job.progress ? String(job.progress.percent) : ''}</span>
      <span id="job-result">{job.status === 'complete' ? job.result.output : ''}</span>
    </div>
  );
}

/** A streamed job under useJob: its status and text so far, and a Stop button. */
function JobProbe({ url, sessionId }) {
  const { client, state } = useHeraldClient(url, { minReconnectDelayMs: 20, maxReconnectDelayMs: 250 });
  const job = useJob(client, sessionId);
  return (
    <div id="job-probe">
      <span id="stream-state">{state}</span>
      <span id="stream-status">{job.status}</span>
      <pre id="stream-text">{job.status === 'idle' ? '' : (job.text ?? '')}</pre>
      <button id="stream-stop" onClick={() => job.cancel()}>
        Stop
      </button>
    </div>
  );
}

window.mountJob = (url, sessionId) => {
  const root = createRoot(document.getElementById('root'));
  root.render(
    <StrictMode>
      <JobProbe url={url} sessionId={sessionId} />
    </StrictMode>,
  );
};

function Toggle({ url }) {
  const [shown, setShown] = useState(true);
  window.hideProbe = () => setShown(false);
  window.showProbe = () => setShown(true);
  return shown ? <ReactProbe url={url} /> : <span id="probe-hidden">hidden</span>;
}

window.mountReact = (url) => {
  const root = createRoot(document.getElementById('root'));
  root.render(
    <StrictMode>
      <Toggle url={url} />
    </StrictMode>,
  );
  window.unmountReact = () => root.unmount();
};

/** Who is in `channel`, as usePresence sees it; `window.setPresenceStatus` changes our own status. */
function PresenceProbe({ url, channel, userId }) {
  const { client, state } = useHeraldClient(url, { userId, minReconnectDelayMs: 20, maxReconnectDelayMs: 250 });
  const [status, setStatus] = useState(undefined);
  window.setPresenceStatus = setStatus;
  const presence = usePresence(client, channel, { status });
  window.presenceClientId = client?.clientId;
  return (
    <div id="presence">
      <span id="presence-state">{state}</span>
      <span id="presence-ready">{String(presence.ready)}</span>
      <span id="presence-total">{String(presence.total)}</span>
      <ul>
        {presence.members.map((m) => (
          <li key={m.clientId} data-client={m.clientId} data-user={m.userId ?? ''} data-status={m.status}>
            {m.userId ?? 'anonymous'}: {m.status}
          </li>
        ))}
      </ul>
    </div>
  );
}

window.mountPresence = (url, channel, userId) => {
  const root = createRoot(document.getElementById('root'));
  root.render(
    <StrictMode>
      <PresenceProbe url={url} channel={channel} userId={userId} />
    </StrictMode>,
  );
  window.unmountPresence = () => root.unmount();
};
