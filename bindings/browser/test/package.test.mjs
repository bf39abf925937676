// The package as users install it: ESM and CommonJS entry points (core and /react),
// its .d.ts files (a consumer with an exhaustive switch type-checks against them),
// and no runtime dependency.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { ROOT } from './helpers.mjs';

const require = createRequire(import.meta.url);

test('ESM and CommonJS entry points export the same API', async () => {
  const esm = await import('herald-client');
  const cjs = require('herald-client');
  for (const name of ['HeraldClient', 'Subscription', 'Job', 'nextJobState', 'backoffDelay', 'PROTOCOL_MESSAGE_TYPES', 'channelOf']) {
    assert.equal(typeof esm[name], typeof cjs[name], name);
    assert.ok(esm[name] !== undefined, `${name} is exported`);
  }
  const reactEsm = await import('herald-client/react');
  const reactCjs = require('herald-client/react');
  for (const name of ['useHeraldClient', 'useChannel', 'useJob']) {
    assert.equal(typeof reactEsm[name], 'function', name);
    assert.equal(typeof reactCjs[name], 'function', name);
  }
});

test('no runtime dependencies (react is an optional peer for /react only)', () => {
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'));
  assert.equal(pkg.dependencies, undefined);
  assert.deepEqual(Object.keys(pkg.peerDependencies), ['react']);
  assert.equal(pkg.peerDependenciesMeta.react.optional, true);
  const core = readFileSync(join(ROOT, 'dist', 'esm', 'client.js'), 'utf8');
  assert.doesNotMatch(core, /from ['"](?!\.)/, 'the core imports only its own modules');
});

test('an app type-checks against the .d.ts files (exhaustive switch over every message type)', () => {
  const tsc = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
  execFileSync(process.execPath, [tsc, '-p', join(ROOT, 'test', 'types', 'tsconfig.json')], { stdio: 'inherit' });
});

test('full-jitter backoff stays within [0, min(max, min * 2^n)]', async () => {
  const { backoffDelay } = await import('herald-client');
  assert.equal(backoffDelay(0, 100, 1000, () => 0.999), 99);
  assert.equal(backoffDelay(3, 100, 1000, () => 0.999), 799);
  assert.equal(backoffDelay(10, 100, 1000, () => 0.999), 999);
  assert.equal(backoffDelay(10, 100, 1000, () => 0), 0);
  assert.equal(backoffDelay(5000, 100, 1000, () => 0.5), 500, 'no overflow for large attempts');
});
