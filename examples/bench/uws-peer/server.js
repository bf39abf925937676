'use strict';

// The uWebSockets.js peer: the server a performance-minded team would pick instead of
// Herald, speaking Herald's wire protocol v1 for everything the benchmark uses (the same
// subset as ws-peer/server.js), with uWS's own pub/sub: each socket subscribes to its
// channel's topic, and a publication is one app.publish, framed once by uWS.
//
//   ws://127.0.0.1:PORT/ws?userId=&sessionId=
//   on connect            {"type":"connection","status":"connected","clientId":..,"timestamp":..}
//   {"type":"ping"}       -> {"type":"pong","timestamp":..}
//   {"type":"subscribe","sessionId":S} / {"channel":C}   -> {"type":"subscribed",...,"seq","epoch","timestamp"}
//   {"type":"unsubscribe",...}                            -> {"type":"unsubscribed",...}
//   ai_progress fan-out   {"type":"ai_progress","sessionId":S,"progress":{..},"timestamp":..,"seq":n,"epoch":e}
//   GET /healthz
//
// Backpressure is uWS's: a socket with more than BENCH_MAX_BUFFERED bytes waiting is
// closed (closeOnBackpressureLimit), as Herald evicts a slow client; heartbeats are
// uWS's automatic pings within idleTimeout. A flat-out push yields to the event loop
// every YIELD_EVERY publications so uWS can write what it batched.
//
// The prebuilt addon needs glibc 2.38; run.sh loads a patched copy with a small shim on
// older glibc (see README.md, "uWebSockets.js on glibc < 2.38"): BENCH_UWS_ADDON names it.
//
// Driven like every benchmark host: prints "READY <port>", then reads line commands on
// stdin (push <M> <rate> <size> | cost <K> <size> | quit); see loadgen/src/host.rs.

const readline = require('node:readline');
const { performance } = require('node:perf_hooks');

const uWS = process.env.BENCH_UWS_ADDON
  ? require(process.env.BENCH_UWS_ADDON)
  : require('@btc-vision/uwebsockets.js');

const SESSION = process.env.BENCH_SESSION || 'bench';
const MAX_BUFFERED = Number(process.env.BENCH_MAX_BUFFERED || 4 * 1024 * 1024);
const PORT = Number(process.env.BENCH_PORT || 0);
const IDLE_TIMEOUT_S = 60;
const YIELD_EVERY = 32;

const epoch = `${Math.floor(Math.random() * 0xffffffff).toString(16)}-`;
let epochsIssued = 0;
const channels = new Map(); // name -> { seq, epoch }
const sockets = new Set();
let nextClient = 1;
const decoder = new TextDecoder();

const nowIso = () => new Date().toISOString();
const nowUs = () => Math.round((performance.timeOrigin + performance.now()) * 1000);

function channel(name) {
  let ch = channels.get(name);
  if (!ch) {
    ch = { seq: 0, epoch: `${epoch}${++epochsIssued}` };
    channels.set(name, ch);
  }
  return ch;
}

const sendJson = (ws, obj) => ws.send(JSON.stringify(obj), false);

function subscribe(ws, name, reply) {
  const ch = channel(name);
  ws.subscribe(name);
  if (reply) sendJson(ws, { type: 'subscribed', ...reply, seq: ch.seq, epoch: ch.epoch, timestamp: nowIso() });
}

function error(ws, message) {
  sendJson(ws, { type: 'error', error: { code: 'invalid_message', message }, timestamp: nowIso() });
}

function onMessage(ws, data, isBinary) {
  if (isBinary) return error(ws, 'binary frames are not supported; send JSON text');
  let msg;
  try {
    msg = JSON.parse(decoder.decode(data));
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
      if (typeof msg.channel === 'string' && msg.channel) return subscribe(ws, msg.channel, { channel: msg.channel });
      return error(ws, 'subscribe needs a sessionId or a channel');
    case 'unsubscribe':
      if (typeof msg.sessionId === 'string') {
        ws.unsubscribe(`session:${msg.sessionId}`);
        return sendJson(ws, { type: 'unsubscribed', sessionId: msg.sessionId, timestamp: nowIso() });
      }
      if (typeof msg.channel === 'string') {
        ws.unsubscribe(msg.channel);
        return sendJson(ws, { type: 'unsubscribed', channel: msg.channel, timestamp: nowIso() });
      }
      for (const topic of ws.getTopics()) if (topic !== ws.getUserData().userChannel) ws.unsubscribe(topic);
      return sendJson(ws, { type: 'unsubscribed', all: true, timestamp: nowIso() });
    default:
      return undefined; // an application message: a host would handle it here
  }
}

const app = uWS.App();
app.get('/healthz', (res) => res.end('ok\n'));
app.ws('/ws', {
  compression: uWS.DISABLED,
  maxPayloadLength: 64 * 1024,
  maxBackpressure: MAX_BUFFERED,
  closeOnBackpressureLimit: true,
  idleTimeout: IDLE_TIMEOUT_S,
  sendPingsAutomatically: true,
  upgrade: (res, req, context) => {
    const q = new URLSearchParams(req.getQuery() || '');
    res.upgrade(
      { id: (nextClient++).toString(16).padStart(16, '0'), userId: q.get('userId'), sessionId: q.get('sessionId') },
      req.getHeader('sec-websocket-key'),
      req.getHeader('sec-websocket-protocol'),
      req.getHeader('sec-websocket-extensions'),
      context,
    );
  },
  open: (ws) => {
    const u = ws.getUserData();
    sockets.add(ws);
    sendJson(ws, { type: 'connection', status: 'connected', clientId: u.id, timestamp: nowIso() });
    if (u.userId) {
      u.userChannel = `user:${u.userId}`;
      subscribe(ws, u.userChannel, null);
    }
    if (u.sessionId) subscribe(ws, `session:${u.sessionId}`, null);
  },
  message: onMessage,
  close: (ws) => sockets.delete(ws),
});

/** Publishes one ai_progress to a session's topic: framed once by uWS for every subscriber. */
function notifyProgress(sessionId, progress) {
  const name = `session:${sessionId}`;
  const ch = channel(name);
  ch.seq++;
  const text = JSON.stringify({
    type: 'ai_progress',
    sessionId,
    progress,
    timestamp: nowIso(),
    seq: ch.seq,
    epoch: ch.epoch,
  });
  app.publish(name, text, false);
}

const yieldToLoop = () => new Promise((resolve) => setImmediate(resolve));
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function push(m, rate, size) {
  const pad = 'x'.repeat(Math.max(0, size - 40));
  const start = performance.now();
  for (let i = 0; i < m; i++) {
    if (rate > 0) {
      const wait = start + (i * 1000) / rate - performance.now();
      if (wait > 0) await sleep(wait);
    }
    const t = nowUs();
    // Same text as the other hosts: {"t":..,"i":..,"pad":"xx.."} of `size` bytes.
    const head = `{"t":${t},"i":${i},"pad":"`;
    notifyProgress(SESSION, { t, i, pad: pad.slice(0, Math.max(0, size - head.length - 2)) });
    if (rate === 0 && i % YIELD_EVERY === YIELD_EVERY - 1) await yieldToLoop();
  }
  return Math.round((performance.now() - start) * 1e6);
}

function cost(k, size) {
  const t = nowUs();
  const head = `{"t":${t},"i":0,"pad":"`;
  const progress = { t, i: 0, pad: 'x'.repeat(Math.max(0, size - head.length - 2)) };
  const start = performance.now();
  for (let i = 0; i < k; i++) notifyProgress(SESSION, progress);
  return Math.round((performance.now() - start) * 1e6);
}

app.listen('127.0.0.1', PORT, (token) => {
  if (!token) {
    process.stderr.write(`uws-peer: cannot listen on port ${PORT}\n`);
    process.exit(1);
  }
  process.stdout.write(`READY ${uWS.us_socket_local_port(token)}\n`);
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
      const ns = cost(Number(p[1]), Number(p[2]));
      process.stdout.write(`COST ${p[1]} ${ns} 0\n`);
    } else if (p[0] === 'quit') {
      for (const ws of sockets) ws.close();
      process.exit(0);
    }
  });
});
rl.on('close', () => process.exit(0));
