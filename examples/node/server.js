'use strict';

// Herald + Express: POST /api/jobs starts a simulated AI job whose progress is
// streamed over WebSocket to every browser session subscribed to it.
//
//   npm install && npm start        then open http://127.0.0.1:3000
//
// Environment: HOST (127.0.0.1), PORT (3000, HTTP), HERALD_PORT (3001, WebSocket;
// 0 = any free port), JOB_STEP_MS (400, delay between progress steps).
//
// Browsers connect to ws://HOST:HERALD_PORT/ws?sessionId=<id>, which subscribes
// them to that session; every notifyAI* call for the session reaches them.

const crypto = require('node:crypto');
const path = require('node:path');
const express = require('express');
const herald = require('herald');

const HOST = process.env.HOST || '127.0.0.1';
const HTTP_PORT = Number(process.env.PORT ?? 3000);
const HERALD_PORT = Number(process.env.HERALD_PORT ?? 3001);
const STEP_MS = Number(process.env.JOB_STEP_MS ?? 400);

const MAX_STEPS = 100;

/** Running jobs, so shutdown can cancel their timers. */
const jobs = new Map();

/**
 * The simulated AI job: ai_start, one ai_progress per step, then ai_complete
 * (or ai_error when asked to fail halfway).
 */
function runJob(notifier, { jobId, sessionId, prompt, steps, fail }) {
  notifier.notifyAIStart(sessionId, { jobId, prompt, steps });
  let step = 0;
  const timer = setInterval(() => {
    step += 1;
    try {
      if (fail && step > steps / 2) {
        clearInterval(timer);
        jobs.delete(jobId);
        notifier.notifyAIError(sessionId, { jobId, message: 'the simulated model gave up', step });
        return;
      }
      notifier.notifyAIProgress(sessionId, {
        jobId,
        step,
        steps,
        percent: Math.round((step / steps) * 100),
        text: `thinking about "${prompt}" (${step}/${steps})`,
      });
      if (step === steps) {
        clearInterval(timer);
        jobs.delete(jobId);
        notifier.notifyAIComplete(sessionId, {
          jobId,
          output: `Done: ${steps} steps on "${prompt}".`,
        });
      }
    } catch (err) {
      // HERALD_STOPPED during shutdown, HERALD_QUEUE_FULL under overload: stop this job.
      clearInterval(timer);
      jobs.delete(jobId);
      console.error(`job ${jobId}: ${err.code}: ${err.message}`);
    }
  }, STEP_MS);
  jobs.set(jobId, timer);
}

async function main() {
  const notifier = await herald.start({ host: HOST, port: HERALD_PORT });

  notifier.on('connection', (e) => console.error(`connected ${e.clientId} session=${e.sessionId}`));
  notifier.on('disconnect', (e) => console.error(`disconnected ${e.clientId} code=${e.code}`));
  notifier.on('message', (e) => console.error(`client ${e.clientId} says ${JSON.stringify(e.message)}`));

  const app = express();
  app.use(express.json());
  app.use(express.static(path.join(__dirname, 'public')));
  // The page's WebSocket client: herald-client, as one ES module (bindings/browser).
  app.get('/herald-client.js', (req, res) => {
    res.type('text/javascript').sendFile(path.join(__dirname, '..', 'dashboard', 'herald-client.js'));
  });

  // The page needs to know where the WebSocket endpoint is.
  app.get('/api/config', (req, res) => {
    res.json({ wsPort: notifier.port, wsPath: '/ws' });
  });

  app.post('/api/jobs', (req, res) => {
    const { sessionId, prompt = 'the meaning of life', steps = 5, fail = false } = req.body ?? {};
    if (typeof sessionId !== 'string' || sessionId === '') {
      return res.status(400).json({ error: 'sessionId (a non-empty string) is required' });
    }
    if (!Number.isInteger(steps) || steps < 1 || steps > MAX_STEPS) {
      return res.status(400).json({ error: `steps must be an integer from 1 to ${MAX_STEPS}` });
    }
    const jobId = crypto.randomUUID();
    try {
      runJob(notifier, { jobId, sessionId, prompt: String(prompt), steps, fail: fail === true });
    } catch (err) {
      return res.status(err.code === 'HERALD_INVALID_ARGUMENT' ? 400 : 503).json({ error: err.message, code: err.code });
    }
    res.status(202).json({ jobId, sessionId });
  });

  app.get('/api/stats', (req, res) => res.json(notifier.getStats()));

  // Express 5 calls this with the error if listening fails (e.g. EADDRINUSE).
  const httpServer = app.listen(HTTP_PORT, HOST, (err) => {
    if (err) {
      console.error(`http server: ${err.message}`);
      process.exitCode = 1;
      shutdown();
      return;
    }
    const { port } = httpServer.address();
    // One JSON line on stdout, so scripts (and the tests) can find the ports.
    console.log(JSON.stringify({ event: 'listening', http: port, ws: notifier.port }));
    console.error(`open http://${HOST}:${port}/ (WebSocket ws://${HOST}:${notifier.port}/ws)`);
  });

  let stopping = false;
  async function shutdown() {
    if (stopping) return;
    stopping = true;
    for (const timer of jobs.values()) clearInterval(timer);
    jobs.clear();
    httpServer.close();
    httpServer.closeAllConnections?.();
    await notifier.close();
    // Nothing is left to keep the process alive: it exits by itself.
  }
  process.on('SIGINT', shutdown);
  process.on('SIGTERM', shutdown);
}

main().catch((err) => {
  console.error(`failed to start: ${err.code ? `${err.code}: ` : ''}${err.message}`);
  process.exitCode = 1;
});
