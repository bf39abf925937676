'use strict';

// AI jobs from Node: token streams (notifyAIDelta), the jobs snapshot a late subscriber
// gets first, getJobs(), and a client's cancel reaching the host as a 'cancel' event.

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const herald = require('..');
const { Recorder, Client, eventually, expectThrow } = require('./helpers');

describe('jobs', () => {
  let server;
  let rec;
  const clients = [];
  const connect = async (query) => {
    const c = await Client.connect(server.port, query);
    clients.push(c);
    return c;
  };

  before(async () => {
    server = await herald.start({ port: 0, jobs: { ttlMs: 300 } });
    rec = new Recorder(server, ['cancel', 'message']);
  });

  after(async () => {
    for (const c of clients) c.terminate();
    await server.close();
  });

  it('streams deltas; a late subscriber starts from the snapshot, with no gap', async () => {
    const words = Array.from({ length: 30 }, (_, n) => `w${n} `);
    const early = await connect({ sessionId: 'node-s' });
    server.notifyAIStart('node-s', { jobId: 'j', prompt: 'write' });
    for (const text of words.slice(0, 15)) server.notifyAIDelta('node-s', { jobId: 'j', text });
    let seen = '';
    for (let i = 0; i < 16; i++) {
      const m = await early.next();
      if (m.type === 'ai_delta') seen += m.delta.text;
    }
    assert.equal(seen, words.slice(0, 15).join(''));

    const late = await connect({});
    late.send({ type: 'subscribe', sessionId: 'node-s' });
    const reply = await late.next({ type: 'subscribed' });
    const snapshot = await late.next();
    assert.equal(snapshot.type, 'jobs_snapshot');
    assert.equal(snapshot.seq, reply.seq);
    assert.equal(snapshot.jobs[0].jobId, 'j');
    assert.equal(snapshot.jobs[0].state, 'running');
    let text = snapshot.jobs[0].text;
    let last = snapshot.seq;
    for (const t of words.slice(15)) server.notifyAIDelta('node-s', { jobId: 'j', text: t });
    server.notifyAICancelled('node-s', { jobId: 'j' });
    for (;;) {
      const m = await late.next();
      assert.equal(m.seq, last + 1);
      last = m.seq;
      if (m.type === 'ai_cancelled') break;
      text += m.delta.text;
    }
    assert.equal(text, words.join(''));
    const jobs = server.getJobs('node-s');
    assert.equal(jobs.seq, last);
    assert.equal(jobs.jobs[0].state, 'cancelled');
    assert.equal(jobs.jobs[0].text, words.join(''));
  });

  it('refuses a delta without text', () => {
    expectThrow(assert, () => server.notifyAIDelta('node-s', { jobId: 'j' }), 'HERALD_INVALID_ARGUMENT');
  });

  it("a client's cancel is a 'cancel' event; the host answers with ai_cancelled", async () => {
    const c = await connect({ sessionId: 'node-c', userId: 'u' });
    server.notifyAIStart('node-c', { jobId: 'long' });
    await c.next({ type: 'ai_start' });
    c.send({ type: 'cancel', sessionId: 'node-c', jobId: 'long' });
    const event = await rec.wait('cancel', { clientId: c.id });
    assert.equal(event.type, 'cancel_requested');
    assert.equal(event.sessionId, 'node-c');
    assert.equal(event.jobId, 'long');
    assert.equal(event.userId, 'u');
    server.notifyAICancelled(event.sessionId, { jobId: event.jobId });
    const ended = await c.next({ type: 'ai_cancelled' });
    assert.deepEqual(ended.cancelled, { jobId: 'long' });
  });

  it('ended jobs expire after jobs.ttl_ms', async () => {
    server.notifyAIStart('node-t', {});
    server.notifyAIComplete('node-t', { ok: true });
    await eventually(() => server.getJobs('node-t').jobs[0]?.state === 'complete', 'the completed job');
    await eventually(() => server.getJobs('node-t').jobs.length === 0, 'its expiry');
  });
});
