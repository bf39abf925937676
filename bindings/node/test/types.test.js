'use strict';

// index.d.ts is hand-written: check it declares exactly what index.js exports
// (a drift check without needing TypeScript installed).

const { it } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const herald = require('..');
const { Client } = require('./helpers');

const dts = fs.readFileSync(path.join(__dirname, '..', 'index.d.ts'), 'utf8');

function classBody(name, kind = 'declare class') {
  const start = dts.indexOf(`export ${kind} ${name} `);
  assert.ok(start >= 0, `index.d.ts declares ${kind} ${name}`);
  let depth = 0;
  for (let i = dts.indexOf('{', start); i < dts.length; i += 1) {
    if (dts[i] === '{') depth += 1;
    if (dts[i] === '}' && (depth -= 1) === 0) return dts.slice(start, i);
  }
  throw new Error('unbalanced braces');
}

it('declares every module export', () => {
  for (const name of Object.keys(herald)) {
    assert.match(dts, new RegExp(`export declare (function|const|class) ${name}\\b`), `export ${name}`);
  }
});

it('declares exactly the public members of HeraldServer', () => {
  const body = classBody('HeraldServer');
  const declared = new Set([...body.matchAll(/^ {2}(?:readonly )?([a-zA-Z]+)\??[(:<]/gm)].map((m) => m[1]));
  const EventEmitter = require('node:events');
  const own = Object.getOwnPropertyNames(herald.HeraldServer.prototype).filter(
    (n) => n !== 'constructor' && !n.startsWith('_'),
  );
  // Methods and getters of the class itself must be declared...
  for (const name of own) assert.ok(declared.has(name), `index.d.ts declares HeraldServer.${name}`);
  // ...and everything declared must exist (own, or inherited from EventEmitter).
  for (const name of declared) {
    assert.ok(
      own.includes(name) || name in EventEmitter.prototype,
      `HeraldServer.${name} is declared but does not exist`,
    );
  }
});

/** Asserts every key of `obj` is a declared member of interface `name`. */
function assertDeclares(name, obj) {
  const body = classBody(name, 'interface');
  for (const key of Object.keys(obj)) {
    assert.match(body, new RegExp(`^ {2}(readonly )?${key}\\??:`, 'm'), `${name} declares ${key}`);
  }
}

it('declares every stats counter and client field the core reports', async () => {
  const server = await herald.start({ port: 0 });
  const c = await Client.connect(server.port, { userId: 'types' });
  try {
    const stats = server.getStats();
    assertDeclares('Stats', stats);
    assert.equal(stats.clients.length, 1);
    assertDeclares('ClientStats', stats.clients[0]);
  } finally {
    c.terminate();
    await server.close();
  }
});

it('declares every field of authorizer requests', async () => {
  const server = await herald.start({ port: 0 });
  const seen = {};
  server.setAuthorizer((req) => {
    seen[req.type] = req;
    return true;
  });
  const c = await Client.connect(server.port, { token: 't' });
  try {
    c.send({ type: 'subscribe', channel: 'types' });
    await c.next({ type: 'subscribed' });
    assertDeclares('ConnectAuthRequest', seen.connect);
    assertDeclares('SubscribeAuthRequest', seen.subscribe);
  } finally {
    c.terminate();
    await server.close();
  }
});

it('HeraldError.code lists exactly the error statuses of include/herald.h', () => {
  // The Node codes come from the core's error kinds, which match the C statuses one
  // for one: HERALD_ERR_QUEUE_FULL is HERALD_QUEUE_FULL here.
  const header = fs.readFileSync(path.join(__dirname, '..', '..', '..', 'include', 'herald.h'), 'utf8');
  const start = header.indexOf('typedef enum herald_status');
  const statuses = header.slice(start, header.indexOf('} herald_status;', start));
  const fromHeader = [...statuses.matchAll(/HERALD_ERR_([A-Z0-9_]+) = \d+/g)].map((m) => `HERALD_${m[1]}`);
  assert.ok(fromHeader.includes('HERALD_LIMIT'), 'the header declares HERALD_ERR_LIMIT');
  const body = classBody('HeraldError', 'interface');
  const declared = [...body.matchAll(/\| '(HERALD_[A-Z0-9_]+)'/g)].map((m) => m[1]);
  assert.deepEqual(new Set(declared), new Set(fromHeader));
  // The doc comment above the interface names each code too (except the binding-bug ones).
  const doc = dts.slice(dts.lastIndexOf('/**', dts.indexOf('export interface HeraldError')), dts.indexOf('export interface HeraldError'));
  for (const code of fromHeader) {
    if (code === 'HERALD_NULL_ARGUMENT' || code === 'HERALD_INVALID_HANDLE') continue;
    assert.ok(doc.includes(code), `the HeraldError doc names ${code}`);
  }
});
