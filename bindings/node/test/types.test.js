'use strict';

// index.d.ts is hand-written: check it declares exactly what index.js exports
// (a drift check without needing TypeScript installed).

const { it } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const herald = require('..');

const dts = fs.readFileSync(path.join(__dirname, '..', 'index.d.ts'), 'utf8');

function classBody(name) {
  const start = dts.indexOf(`export declare class ${name}`);
  assert.ok(start >= 0, `index.d.ts declares class ${name}`);
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
