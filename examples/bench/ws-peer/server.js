'use strict';

// The benchmark peer: the WebSocket manager a team would write by hand with the npm
// `ws` package, speaking Herald's wire protocol v1 for everything the benchmark uses
// (and the rest of the client-facing protocol):
//
//   ws://127.0.0.1:PORT/ws?userId=&sessionId=&token=
//   on connect            {"type":"connection","status":"connected","clientId":..,"timestamp":..}
//   {"type":"ping"}       -> {"type":"pong","timestamp":..}
//   {"type":"subscribe","sessionId":S} / {"channel":C}   -> {"type":"subscribed",...,"seq","epoch","timestamp"}
//   {"type":"unsubscribe",...}                            -> {"type":"unsubscribed",...}
//   ai_progress fan-out   {"type":"ai_progress","sessionId":S,"progress":{..},"timestamp":..,"seq":n,"epoch":e}
//   GET /api/ws/stats, GET /healthz
//
// Written the way a competent engineer would: each message is JSON-serialized once and
// turned into one Buffer shared by every send; heartbeats with ping/pong; and sane
// backpressure: a client whose bufferedAmount exceeds BENCH_MAX_BUFFERED bytes is
// closed as a slow consumer (1013), and the producer yields to the event loop whenever
// some socket has more than HIGH_WATER bytes queued, so writes drain before it goes on.
//
// Driven like every benchmark host: prints "READY <port>", then reads line commands on
// stdin (push <M> <rate> <size> | cost <K> <size> | quit); see loadgen/src/host.rs.

const http = require('node:http');
const readline = require('node:readline');
const { performance } = require('node:perf_hooks');
const { WebSocketServer } = require('ws');

const SESSION = process.env.BENCH_SESSION || 'bench';
const MAX_BUFFERED = Number(process.env.BENCH_MAX_BUFFERED || 4 * 1024 * 1024);
const HIGH_WATER = 64 * 1024;
const HEARTBEAT_MS = 30000;
const HEARTBEAT_TIMEOUT_MS = 60000;
const PORT = Number(process.env.BENCH_PORT || 0);

const epoch = `${Math.floor(Math.random() * 0xffffffff).toString(16)}-`;
let epochsIssued = 0;
const channels = new Map(); // name -> { subscribers: Set<ws>, seq, epoch }
const clients = new Map(); // id -> ws
let nextClient = 1;
const stats = { totalConnections: 0, messagesSent: 0, messagesReceived: 0, evictions: 0 };

const nowIso = () => new Date().toISOString();
const nowUs = () => Math.round((performance.timeOrigin + performance.now()) * 1000);

function channel(name) {
  let ch = channels.get(name);
  if (!ch) {
    ch = { subscribers: new Set(), seq: 0, epoch: `${epoch}${++epochsIssued}` };
    channels.set(name, ch);
  }
  return ch;
}

function sendJson(ws, obj) {
  if (ws.readyState !== 1) return;
  ws.send(JSON.stringify(obj));
  stats.messagesSent++;
}

function subscribe(ws, name, reply) {
  const ch = channel(name);
  ch.subscribers.add(ws);
  ws.channels.add(name);
  if (reply) {
    const msg = { type: 'subscribed', ...reply, seq: ch.seq, epoch: ch.epoch, timestamp: nowIso() };
    sendJson(ws, msg);
  }
}

function unsubscribe(ws, name) {
  const ch = channels.get(name);
  if (ch) {
    ch.subscribers.delete(ws);
    if (ch.subscribers.size === 0) channels.delete(name);
  }
  ws.channels.delete(name);
}

function evict(ws) {
  stats.evictions++;
  ws.close(1013, 'slow consumer: outbound queue full');
  // A client too slow to read its close frame is dropped shortly after.
  setTimeout(() => ws.terminate(), 2000).unref();
  for (const name of [...ws.channels]) unsubscribe(ws, name);
}

function error(ws, message) {
  sendJson(ws, { type: 'error', error: { code: 'invalid_message', message }, timestamp: nowIso() });
}

function onMessage(ws, data, isBinary) {
  ws.lastSeen = Date.now();
  stats.messagesReceived++;
  if (isBinary) return error(ws, 'binary frames are not supported; send JSON text');
  let msg;
  try {
    msg = JSON.parse(data.toString('utf8'));
  } catch (e) {
    return error(ws, `not valid JSON: ${e.message}`);
  }
  if (msg === null || typeof msg !== 'object' || Array.isArray(msg)) return error(ws, 'a message must be a JSON object');
  if (typeof msg.type !== 'string') return error(ws, 'a message needs a string "type"');
  switch (msg.type) {
    case 'ping':
      return sendJson(ws, { type: 'pong', timestamp: nowIso() });
    case 'subscribe':
      if (typeof msg.sessionId === 'string' && msg.sessionId) {
        return subscribe(ws, `session:${msg.sessionId}`, { sessionId: msg.sessionId });
      }
      if (typeof msg.channel === 'string' && msg.channel) {
        return subscribe(ws, msg.channel, { channel: msg.channel });
      }
      return error(ws, 'subscribe needs a sessionId or a channel');
    case 'unsubscribe': {
      if (typeof msg.sessionId === 'string') {
        unsubscribe(ws, `session:${msg.sessionId}`);
        return sendJson(ws, { type: 'unsubscribed', sessionId: msg.sessionId, timestamp: nowIso() });
      }
      if (typeof msg.channel === 'string') {
        unsubscribe(ws, msg.channel);
        return sendJson(ws, { type: 'unsubscribed', channel: msg.channel, timestamp: nowIso() });
      }
      for (const name of [...ws.channels]) if (name !== ws.userChannel) unsubscribe(ws, name);
      return sendJson(ws, { type: 'unsubscribed', all: true, timestamp: nowIso() });
    }
    default:
      return undefined; // an application message: a host would handle it here
  }
}

const server = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://localhost');
  if (req.method === 'GET' && url.pathname === '/healthz') {
    res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' });
    return res.end('ok\n');
  }
  if (req.method === 'GET' && url.pathname === '/api/ws/stats') {
    const body = {
      ...stats,
      activeConnections: clients.size,
      clients: [...clients.values()].slice(0, 1000).map((ws) => ({
        id: ws.id,
        userId: ws.userId,
        sessionId: ws.sessionId,
        isAlive: ws.isAlive,
        state: ws.readyState,
      })),
    };
    res.writeHead(200, { 'content-type': 'application/json' });
    return res.end(JSON.stringify(body));
  }
  res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' });
  return res.end('not found\n');
});

const wss = new WebSocketServer({ server, path: '/ws', perMessageDeflate: false, maxPayload: 65536, clientTracking: false });

wss.on('connection', (ws, req) => {
  const url = new URL(req.url, 'http://localhost');
  ws.id = (nextClient++).toString(16).padStart(16, '0');
  ws.userId = url.searchParams.get('userId') || null;
  ws.sessionId = url.searchParams.get('sessionId') || null;
  ws.channels = new Set();
  ws.isAlive = true;
  ws.lastSeen = Date.now();
  clients.set(ws.id, ws);
  stats.totalConnections++;
  sendJson(ws, { type: 'connection', status: 'connected', clientId: ws.id, timestamp: nowIso() });
  if (ws.userId) {
    ws.userChannel = `user:${ws.userId}`;
    subscribe(ws, ws.userChannel, null);
  }
  if (ws.sessionId) subscribe(ws, `session:${ws.sessionId}`, null);
  ws.on('message', (data, isBinary) => onMessage(ws, data, isBinary));
  ws.on('pong', () => {
    ws.isAlive = true;
    ws.lastSeen = Date.now();
  });
  ws.on('close', () => {
    clients.delete(ws.id);
    for (const name of [...ws.channels]) unsubscribe(ws, name);
  });
  ws.on('error', () => {});
});

setInterval(() => {
  const now = Date.now();
  for (const ws of clients.values()) {
    if (now - ws.lastSeen > HEARTBEAT_TIMEOUT_MS) {
      ws.terminate();
      continue;
    }
    ws.isAlive = false;
    ws.ping();
  }
}, HEARTBEAT_MS).unref();

/**
 * Sends one ai_progress to a session's subscribers: serialized once, one Buffer for
 * every socket. Returns the largest bufferedAmount seen, for the producer's pacing.
 */
function notifyProgress(sessionId, progress) {
  const ch = channels.get(`session:${sessionId}`);
  if (!ch) return 0;
  ch.seq++;
  const text = JSON.stringify({
    type: 'ai_progress',
    sessionId,
    progress,
    timestamp: nowIso(),
    seq: ch.seq,
    epoch: ch.epoch,
  });
  const data = Buffer.from(text);
  let maxBuffered = 0;
  for (const ws of ch.subscribers) {
    if (ws.readyState !== 1) continue;
    const buffered = ws.bufferedAmount;
    if (buffered > MAX_BUFFERED) {
      evict(ws);
      continue;
    }
    ws.send(data, { binary: false });
    stats.messagesSent++;
    if (buffered > maxBuffered) maxBuffered = buffered;
  }
  return maxBuffered;
}

const yieldToLoop = () => new Promise((resolve) => setImmediate(resolve));
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function push(m, rate, size) {
  const pad = 'x'.repeat(Math.max(0, size - 40));
  const start = performance.now();
  for (let i = 0; i < m; i++) {
    if (rate > 0) {
      const target = start + (i * 1000) / rate;
      const wait = target - performance.now();
      if (wait > 0) await sleep(wait);
    }
    const t = nowUs();
    // Same text as the other hosts: {"t":..,"i":..,"pad":"xx.."} of `size` bytes.
    const head = `{"t":${t},"i":${i},"pad":"`;
    const progress = { t, i, pad: pad.slice(0, Math.max(0, size - head.length - 2)) };
    const backlog = notifyProgress(SESSION, progress);
    if (backlog > HIGH_WATER) await yieldToLoop();
  }
  return Math.round((performance.now() - start) * 1e6);
}

async function cost(k, size) {
  const t = nowUs();
  const head = `{"t":${t},"i":0,"pad":"`;
  const progress = { t, i: 0, pad: 'x'.repeat(Math.max(0, size - head.length - 2)) };
  const start = performance.now();
  for (let i = 0; i < k; i++) notifyProgress(SESSION, progress);
  return Math.round((performance.now() - start) * 1e6);
}

server.listen(PORT, '127.0.0.1', () => {
  process.stdout.write(`READY ${server.address().port}\n`);
});

const rl = readline.createInterface({ input: process.stdin });
let queue = Promise.resolve();
rl.on('line', (line) => {
  queue = queue.then(async () => {
    const p = line.trim().split(/\s+/);
    if (p[0] === 'push' && p.length === 4) {
      const ns = await push(Number(p[1]), Number(p[2]), Number(p[3]));
      process.stdout.write(`PUSHED ${p[1]} ${ns} 0\n`);
    } else if (p[0] === 'cost' && p.length === 3) {
      const ns = await cost(Number(p[1]), Number(p[2]));
      process.stdout.write(`COST ${p[1]} ${ns} 0\n`);
    } else if (p[0] === 'quit') {
      for (const ws of clients.values()) ws.terminate();
      server.close();
      process.exit(0);
    }
  });
});
rl.on('close', () => process.exit(0));
