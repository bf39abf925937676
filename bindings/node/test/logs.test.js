'use strict';

// The core's log records reach a Node callback, on the main thread.

const { describe, it } = require('node:test');
const assert = require('node:assert/strict');
const herald = require('..');
const { Client, eventually, expectThrow } = require('./helpers');

describe('onLog', () => {
  it('delivers debug lines for connects and closes, then stops', async () => {
    const records = [];
    herald.onLog((record) => records.push(record), { level: 'debug' });
    const server = await herald.start({ port: 0 });
    try {
      const client = await Client.connect(server.port, { sessionId: 'noded' });
      const mine = (prefix) => records.find((r) => r.message.startsWith(prefix) && r.message.includes(`client=${client.id}`));
      const connected = await eventually(() => mine('client connected'), 'the connect record');
      assert.deepEqual(Object.keys(connected).sort(), ['level', 'message', 'target']);
      assert.equal(connected.level, 'debug');
      assert.equal(connected.target, 'herald::connection');
      assert.match(connected.message, /session=noded/);
      await client.close(1000, 'bye');
      const closed = await eventually(() => mine('client closed'), 'the close record');
      assert.match(closed.message, /code=1000 reason=bye$/);

      herald.onLog(null);
      const seen = records.length;
      const again = await Client.connect(server.port);
      await again.close();
      await eventually(() => server.getStats().activeConnections === 0, 'the close');
      await new Promise((r) => setTimeout(r, 200));
      assert.equal(records.length, seen, 'no record after onLog(null)');
    } finally {
      herald.onLog(null);
      await server.close();
    }
  });

  it('refuses unknown levels and non-functions', () => {
    expectThrow(assert, () => herald.onLog(() => {}, { level: 'loud' }), 'ERR_INVALID_ARG_TYPE', TypeError);
    expectThrow(assert, () => herald.onLog(42), 'ERR_INVALID_ARG_TYPE', TypeError);
  });
});
