'use strict';

// The binding against the core's contract (include/herald.schema.json, generated
// from the Rust types): every config key, event and event field, stats key,
// authorizer field and error code the schema has must be declared in index.d.ts
// (and events mapped in index.js).

const { describe, it } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');

const ROOT = path.join(__dirname, '..', '..', '..');
const defs = JSON.parse(fs.readFileSync(path.join(ROOT, 'include', 'herald.schema.json'), 'utf8')).$defs;
const dts = fs.readFileSync(path.join(__dirname, '..', 'index.d.ts'), 'utf8');
const indexJs = fs.readFileSync(path.join(__dirname, '..', 'index.js'), 'utf8');

/** The property names an interface of index.d.ts declares, its base's included. */
function declared(name) {
  const start = dts.search(new RegExp(`export interface ${name}\\b`));
  assert.notEqual(start, -1, `index.d.ts has no interface ${name}`);
  const header = dts.slice(start, dts.indexOf('{', start));
  const body = dts.slice(dts.indexOf('{', start), dts.indexOf('\n}', start));
  const keys = new Set([...body.matchAll(/^ {2}(\w+)\??:/gm)].map((m) => m[1]));
  const base = header.match(/extends (\w+)/);
  if (base) for (const k of declared(base[1])) keys.add(k);
  return keys;
}

const camel = (key) => key.replace(/_([a-z])/g, (_, c) => c.toUpperCase());

/** The definition a property refers to, directly or as an optional value. */
function defName(prop) {
  if (prop.$ref) return prop.$ref.split('/').pop();
  for (const alt of prop.anyOf || []) {
    const name = defName(alt);
    if (name) return name;
  }
  if (prop.items) return defName(prop.items);
  return null;
}

const CONFIG_INTERFACES = {
  Config: 'ServerOptions',
  HistoryConfig: 'HistoryOptions',
  JobsConfig: 'JobsOptions',
  AiConfig: 'AiOptions',
  AuthConfig: 'AuthOptions',
  RateLimitConfig: 'RateLimitOptions',
  TlsConfig: 'TlsOptions',
  BrokerConfig: 'BrokerOptions',
  RedisConfig: 'RedisOptions',
  PresenceConfig: 'PresenceOptions',
};

describe('the contract', () => {
  it('every config key is an option (in camelCase)', () => {
    const pending = ['Config'];
    while (pending.length) {
      const def = pending.pop();
      assert.ok(CONFIG_INTERFACES[def], `config table ${def} has no options interface`);
      const keys = declared(CONFIG_INTERFACES[def]);
      for (const [key, prop] of Object.entries(defs[def].properties)) {
        assert.ok(keys.has(camel(key)), `${CONFIG_INTERFACES[def]} lacks ${camel(key)} (${def}.${key})`);
        const inner = defName(prop);
        if (inner) pending.push(inner);
      }
    }
  });

  it('every event is declared with its fields and mapped to an emitter event', () => {
    for (const variant of defs.Event.oneOf) {
      const type = variant.properties.type.const;
      const match = dts.match(new RegExp(`export interface (\\w+) extends BaseEvent \\{\\n {2}type: '${type}';`));
      assert.ok(match, `index.d.ts declares no event of type '${type}'`);
      const keys = declared(match[1]);
      for (const key of Object.keys(variant.properties)) assert.ok(keys.has(key), `${match[1]} lacks ${key}`);
      assert.match(indexJs, new RegExp(`^ {2}${type}: '\\w+',$`, 'm'), `index.js EVENT_NAMES lacks ${type}`);
    }
  });

  it('every stats key is declared', () => {
    for (const [def, iface] of [['Stats', 'Stats'], ['ClientSnapshot', 'ClientStats']]) {
      const keys = declared(iface);
      for (const key of Object.keys(defs[def].properties)) assert.ok(keys.has(key), `${iface} lacks ${key}`);
    }
  });

  it('every authorizer field is declared', () => {
    for (const variant of defs.AuthRequest.oneOf) {
      const iface = variant.properties.type.const === 'connect' ? 'ConnectAuthRequest' : 'SubscribeAuthRequest';
      const keys = declared(iface);
      for (const key of Object.keys(variant.properties)) assert.ok(keys.has(key), `${iface} lacks ${key}`);
    }
    const keys = declared('AuthDecision');
    for (const key of Object.keys(defs.AuthDecision.properties)) assert.ok(keys.has(key), `AuthDecision lacks ${key}`);
  });

  it('every error status is a HeraldError code', () => {
    for (const status of defs.Status.oneOf.filter((s) => s.const !== 0)) {
      const code = `HERALD_${status['x-error-code'].toUpperCase()}`;
      assert.match(dts, new RegExp(`\\| '${code}'`), `HeraldError's code lacks ${code}`);
    }
  });
});
