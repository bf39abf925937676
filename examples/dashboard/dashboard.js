// The demo's live dashboard, built on herald-client (served from the same port as the
// WebSocket, embedded in the demo binary). ?session=ID watches another session.

import { HeraldClient } from '/herald-client.js';

const $ = (id) => document.getElementById(id);
const MAX_CARDS = 6;
const STATS_EVERY_MS = 2000;

const sessionId = new URLSearchParams(location.search).get('session') || 'demo';
$('session').textContent = sessionId;

const client = new HeraldClient(`${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`, {
  minReconnectDelayMs: 250,
  maxReconnectDelayMs: 5000,
  pingIntervalMs: 10000,
  pongTimeoutMs: 5000,
});
// For the browser console (and the tests).
window.herald = { client };

// -- connection state ------------------------------------------------------

function showState() {
  const badge = $('state');
  badge.dataset.state = client.state;
  badge.textContent = client.state;
  $('connects').textContent = String(client.connectCount);
}
client.on('state', showState);
client.on('connected', showState);
client.on('unauthorized', (e) => notice(`The server refused this page (${e.code} ${e.reason}).`, 'warn'));
showState();

$('outage').onclick = () => {
  client.disconnect();
  notice('Disconnected on purpose; reconnecting in 3 s, then recovering what was missed…', 'warn');
  setTimeout(() => client.connect(), 3000);
};

function notice(text, kind) {
  const p = $('notice');
  p.textContent = text;
  p.dataset.kind = kind;
  p.hidden = false;
}

// -- jobs ------------------------------------------------------------------

// The job state machine (idle → running → complete | error) for the session, rebuilt
// from recent history on load; the cards below come from the same subscription.
const job = client.job(sessionId, { history: 60 });
const sub = client.subscribe({ sessionId });
let firstReply = true;

job.on('change', (state) => {
  const extra = state.status === 'running' && state.progress ? ` ${state.progress.percent ?? ''}%` : '';
  $('current').textContent = `${state.status}${extra}`;
  $('current').dataset.status = state.status;
});

sub.on('subscribed', (reply) => {
  const before = sub.position;
  if (firstReply) {
    firstReply = false;
    return;
  }
  if (reply.recovered && before) {
    const missed = reply.seq - before.seq;
    notice(`Reconnected: recovered ${missed} missed notification${missed === 1 ? '' : 's'}, no gap.`, 'ok');
  }
});
sub.on('gap', ({ from, to }) => {
  const lost = from.epoch === to.epoch ? `${to.seq - from.seq} notifications were` : 'the server restarted and its history was';
  notice(`Gap: ${lost} lost while away; showing what comes next.`, 'warn');
});
sub.on('publication', (message) => {
  log(message);
  updateCard(message);
});

const cards = new Map();

function jobKey(message) {
  const payload = message.task || message.progress || message.result || message.error || {};
  return String(payload.taskId ?? payload.jobId ?? payload.id ?? 'job');
}

function cardFor(key) {
  let card = cards.get(key);
  if (card) return card;
  $('jobs').querySelector('.empty')?.remove();
  const el = document.createElement('article');
  el.className = 'card';
  el.innerHTML =
    '<div class="top"><span class="title"></span><span class="status"></span></div>' +
    '<div class="detail"></div><div class="bar"><div></div></div><div class="outcome"></div>';
  el.querySelector('.title').textContent = key;
  $('jobs').prepend(el);
  card = { el, percent: 0 };
  cards.set(key, card);
  while (cards.size > MAX_CARDS) {
    const [oldest] = cards.keys();
    cards.get(oldest).el.remove();
    cards.delete(oldest);
  }
  return card;
}

function setCard(card, status, percent, detail, outcome) {
  card.percent = percent ?? card.percent;
  const { el } = card;
  el.dataset.status = status;
  el.dataset.percent = String(card.percent);
  el.querySelector('.status').textContent = status === 'running' ? `running ${card.percent}%` : status;
  el.querySelector('.bar > div').style.width = `${card.percent}%`;
  if (detail !== undefined) el.querySelector('.detail').textContent = detail;
  if (outcome !== undefined) el.querySelector('.outcome').textContent = outcome;
}

function updateCard(message) {
  const card = cardFor(jobKey(message));
  switch (message.type) {
    case 'ai_start': {
      const t = message.task;
      setCard(card, 'running', 0, [t.model, t.prompt].filter(Boolean).join(' · '), '');
      break;
    }
    case 'ai_progress': {
      const p = message.progress;
      const percent = Math.max(0, Math.min(100, Number(p.percent) || 0));
      setCard(card, 'running', percent, [p.stage, p.tokens && `${p.tokens} tokens`].filter(Boolean).join(' · '));
      break;
    }
    case 'ai_complete':
      setCard(card, 'complete', 100, undefined, message.result.output ?? JSON.stringify(message.result));
      break;
    case 'ai_error':
      setCard(card, 'error', undefined, undefined, `${message.error.code ? `${message.error.code}: ` : ''}${message.error.message ?? JSON.stringify(message.error)}`);
      break;
  }
}

function log(message) {
  const pre = $('log');
  const lines = pre.textContent ? pre.textContent.split('\n') : [];
  lines.unshift(`#${message.seq} ${message.type} ${JSON.stringify(message.task || message.progress || message.result || message.error)}`);
  pre.textContent = lines.slice(0, 30).join('\n');
}

// -- stats -----------------------------------------------------------------

const SHOWN = [
  ['activeConnections', 'active connections'],
  ['totalConnections', 'connections so far'],
  ['messagesSent', 'messages sent'],
  ['messagesReceived', 'messages received'],
  ['channels', 'channels'],
  ['subscriptions', 'subscriptions'],
  ['recoveries', 'recoveries'],
  ['recoveriesFailed', 'failed recoveries'],
  ['evictions', 'evicted slow clients'],
  ['heartbeatTimeouts', 'heartbeat timeouts'],
  ['historyBytes', 'history bytes'],
  ['uptimeMs', 'uptime'],
];

async function refreshStats() {
  try {
    const response = await fetch('/api/ws/stats', { cache: 'no-store' });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const stats = await response.json();
    const dl = $('stats');
    dl.replaceChildren();
    for (const [key, label] of SHOWN) {
      const dt = document.createElement('dt');
      const dd = document.createElement('dd');
      dt.textContent = label;
      dd.id = `stat-${key}`;
      const value = stats[key];
      dd.textContent = key === 'uptimeMs' ? `${Math.round(value / 1000)} s` : String(value ?? '–');
      dl.append(dt, dd);
    }
    $('stats-updated').textContent = `updated ${new Date().toLocaleTimeString()}`;
  } catch (error) {
    $('stats-updated').textContent = `stats unavailable (${error.message})`;
  }
}
refreshStats();
setInterval(refreshStats, STATS_EVERY_MS);
client.on('connected', () => refreshStats());
