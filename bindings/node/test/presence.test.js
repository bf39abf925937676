'use strict';

// Presence through the binding: getPresence lists a channel's real subscribers
// (with the user and status each set), on one node and across two nodes that
// share a real redis-server.

const { describe, it, after } = require('node:test');
const assert = require('node:assert/strict');
const herald = require('..');
const { Client } = require('./helpers');
const { RedisServer } = require('./redis');

describe('presence', () => {
  const cleanup = [];
  after(async () => {
    for (const step of cleanup.reverse()) await step();
  });

  it('lists members with their user and status', async () => {
    const server = await herald.start({ port: 0, presence: { maxMembers: 10 } });
    cleanup.push(() => server.close());
    const ann = await Client.connect(server.port, { userId: 'ann' });
    cleanup.push(() => ann.terminate());
    const anon = await Client.connect(server.port);
    cleanup.push(() => anon.terminate());
    for (const client of [ann, anon]) {
      client.send({ type: 'subscribe', channel: 'room' });
      await client.next({ type: 'subscribed', channel: 'room' });
    }
    anon.send({ type: 'presence', channel: 'room', status: 'busy' });
    await anon.next({ type: 'presence', channel: 'room' });

    const presence = server.getPresence('room');
    assert.equal(presence.channel, 'room');
    assert.equal(presence.total, 2);
    assert.equal(presence.truncated, false);
    const byId = Object.fromEntries(presence.members.map((m) => [m.clientId, m]));
    assert.deepEqual(byId[ann.id], { clientId: ann.id, userId: 'ann', status: 'online' });
    assert.deepEqual(byId[anon.id], { clientId: anon.id, userId: null, status: 'busy' });

    assert.deepEqual(server.getPresence('empty'), { channel: 'empty', members: [], total: 0, truncated: false });
    assert.throws(() => server.getPresence(''), { code: 'HERALD_INVALID_ARGUMENT' });
  });

  it('spans nodes through Redis', async () => {
    const redis = await RedisServer.start();
    cleanup.push(() => redis.kill());
    const broker = { redis: { url: redis.url, prefix: 'node-presence:', timeoutMs: 1000 } };
    const a = await herald.start({ port: 0, broker });
    cleanup.push(() => a.close());
    const b = await herald.start({ port: 0, broker });
    cleanup.push(() => b.close());

    const ann = await Client.connect(a.port, { userId: 'ann' });
    cleanup.push(() => ann.terminate());
    ann.send({ type: 'subscribe', channel: 'room', presence: true });
    await ann.next({ type: 'subscribed', channel: 'room' });
    const bob = await Client.connect(b.port, { userId: 'bob' });
    cleanup.push(() => bob.terminate());
    bob.send({ type: 'subscribe', channel: 'room' });
    await bob.next({ type: 'subscribed', channel: 'room' });
    await ann.next({ type: 'user_presence', action: 'join', data: { clientId: bob.id } });

    for (const node of [a, b]) {
      const users = node.getPresence('room').members.map((m) => m.userId).sort();
      assert.deepEqual(users, ['ann', 'bob']);
    }
  });
});
