// Compiled by test/package.test.mjs against the built .d.ts files, as an app would use them.
import { HeraldClient } from 'herald-client';
import type { JobState, ProtocolMessage, ServerMessage } from 'herald-client';
import { useJob, usePresence } from 'herald-client/react';

function describeMessage(message: ProtocolMessage): string {
  switch (message.type) {
    case 'connection':
      return message.clientId;
    case 'pong':
      return message.timestamp;
    case 'error':
      return message.error.code;
    case 'subscribed':
      return `${message.seq}@${message.epoch} ${message.recovered ?? ''}`;
    case 'unsubscribed':
      return message.channel ?? message.sessionId ?? 'all';
    case 'presence':
      return `${message.total} ${message.members.map((m) => `${m.userId ?? m.clientId}:${m.status}`).join()}`;
    case 'user_presence':
      return `${message.action} ${message.data.clientId}`;
    case 'ai_start':
      return JSON.stringify(message.task);
    case 'ai_progress':
      return JSON.stringify(message.progress);
    case 'ai_complete':
      return JSON.stringify(message.result);
    case 'ai_error':
      return JSON.stringify(message.error);
    case 'ai_delta':
      return `${message.delta.text} (${message.merged ?? 1})`;
    case 'ai_cancelled':
      return JSON.stringify(message.cancelled);
    case 'jobs_snapshot':
      return message.jobs.map((job) => `${job.jobId ?? '-'} ${job.state} ${job.text}`).join('\n');
    default: {
      // Every type is handled: adding one to the union without a case fails here.
      const unhandled: never = message;
      return unhandled;
    }
  }
}

function describeJob(state: JobState): string {
  switch (state.status) {
    case 'idle':
      return 'idle';
    case 'running':
      return `running ${String(state.progress?.percent ?? 0)}`;
    case 'complete':
      return JSON.stringify(state.result);
    case 'error':
      return JSON.stringify(state.error);
    case 'cancelled':
      return `cancelled after ${state.text ?? ''}`;
  }
}

const client = new HeraldClient('ws://127.0.0.1:1/ws', { autoConnect: false, getToken: async () => 't' });
client.on('message', (m: ServerMessage) => void m);
client.on('state', (s) => void s);
const sub = client.subscribe({ sessionId: 's' });
sub.on('gap', ({ from, to }) => void (from.seq + to.seq));
const job = client.job('s', { jobId: 'j' });
job.on('change', (state) => void describeJob(state));
const stop: () => boolean = () => job.cancel();
void stop;
const lobby = client.presence('lobby', { status: 'away' });
lobby.on('change', ({ members, total, ready }) => void (members.length + total + Number(ready)));
lobby.setStatus('busy');
export { describeMessage, describeJob, useJob, usePresence, sub, lobby };
