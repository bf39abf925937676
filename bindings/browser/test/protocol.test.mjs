// The client's message types against the core: the type names are read from
// src/protocol.rs (the single source of truth), the TypeScript interfaces are read with
// the TypeScript compiler, and real messages from a real server must match them
// field by field. Adding, renaming or reshaping a server message in the core without
// updating src/protocol.ts here makes this fail.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import ts from 'typescript';
import WebSocket from 'ws';
import { PROTOCOL_MESSAGE_TYPES } from '../dist/esm/index.js';
import { REPO, ROOT, eventually, startServer, wsUrl } from './helpers.mjs';

const rust = readFileSync(join(REPO, 'src', 'protocol.rs'), 'utf8');

/** Message type names the core writes: `ObjectWriter::with_type("x")` and the `AiEvent` names. */
function rustMessageTypes() {
  const names = new Set();
  for (const m of rust.matchAll(/with_type(?:_capacity)?\(\s*"([a-z_]+)"/g)) names.add(m[1]);
  for (const m of rust.matchAll(/AiEvent::\w+\s*=>\s*"(ai_[a-z_]+)"/g)) names.add(m[1]);
  return names;
}

/** `ai_start` → `task` & co., from `AiEvent::payload_key`. */
function rustPayloadKeys() {
  const body = rust.slice(rust.indexOf('fn payload_key'));
  const variants = [...rust.matchAll(/AiEvent::(\w+)\s*=>\s*"(ai_[a-z_]+)"/g)].map((m) => [m[1], m[2]]);
  const keys = Object.fromEntries([...body.matchAll(/AiEvent::(\w+)\s*=>\s*"([a-zA-Z_]+)"/g)].map((m) => [m[1], m[2]]));
  return Object.fromEntries(variants.map(([variant, type]) => [type, keys[variant]]));
}

/** Each member of `ProtocolMessage` in src/protocol.ts: its `type` and its properties (name → {optional, kind}). */
function typescriptShapes() {
  const file = join(ROOT, 'src', 'protocol.ts');
  const program = ts.createProgram([file], { strict: true, noEmit: true, types: [] });
  const checker = program.getTypeChecker();
  const source = program.getSourceFile(file);
  const alias = source.statements.find((s) => ts.isTypeAliasDeclaration(s) && s.name.text === 'ProtocolMessage');
  const union = checker.getTypeAtLocation(alias.name);
  const shapes = {};
  for (const member of union.types) {
    const props = {};
    for (const symbol of checker.getPropertiesOfType(member)) {
      const type = checker.getTypeOfSymbolAtLocation(symbol, alias);
      props[symbol.name] = {
        optional: (symbol.flags & ts.SymbolFlags.Optional) !== 0,
        text: checker.typeToString(checker.getNonNullableType(type)),
      };
    }
    shapes[JSON.parse(props.type.text)] = props;
  }
  return shapes;
}

/** Whether a JSON value fits a property type as TypeScript prints it. */
function fits(value, text) {
  if (text.includes(' | ')) return text.split(' | ').some((alternative) => fits(value, alternative));
  if (text.endsWith('[]')) return Array.isArray(value) && value.every((item) => fits(item, text.slice(0, -2)));
  if (text.startsWith('"')) return JSON.stringify(value) === text;
  if (text === 'string') return typeof value === 'string';
  if (text === 'number') return Number.isInteger(value) && value >= 0;
  if (text === 'boolean') return typeof value === 'boolean';
  if (text === 'true') return value === true;
  if (text.endsWith('[]')) return Array.isArray(value);
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

test('the message type names are those of src/protocol.rs', () => {
  const fromRust = rustMessageTypes();
  assert.ok(fromRust.size >= 9, `found ${[...fromRust]} in protocol.rs`);
  assert.deepEqual([...PROTOCOL_MESSAGE_TYPES].sort(), [...fromRust].sort());
  assert.deepEqual(Object.keys(typescriptShapes()).sort(), [...fromRust].sort());
});

test('each ai_* type carries the payload key the core gives it', () => {
  const shapes = typescriptShapes();
  const payload = rustPayloadKeys();
  assert.equal(Object.keys(payload).length, 6);
  for (const [type, key] of Object.entries(payload)) {
    assert.ok(shapes[type][key] && !shapes[type][key].optional, `${type} declares a required ${key}`);
  }
});

test('real server messages match the TypeScript types field by field', async () => {
  const shapes = typescriptShapes();
  const server = await startServer();
  const ws = new WebSocket(`${wsUrl(server)}`);
  const inbox = [];
  ws.on('message', (data) => inbox.push(JSON.parse(data.toString())));
  await new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  });
  const send = (m) => ws.send(typeof m === 'string' ? m : JSON.stringify(m));
  const waitCount = (n, label) => eventually(() => inbox.length >= n, label);

  await waitCount(1, 'the welcome');
  send({ type: 'ping' });
  send('not json');
  send({ type: 'subscribe', sessionId: 's' });
  send({ type: 'subscribe', channel: 'c' });
  await waitCount(5, 'the replies');
  server.notifyAIStart('s', { prompt: 'x' });
  server.notifyAIProgress('s', { percent: 1 });
  server.notifyAIComplete('s', { output: 'y' });
  server.notifyAIError('s', { message: 'z' });
  server.notifyAIDelta('s', { jobId: 'j', text: 'tok' });
  server.notifyAICancelled('s', { jobId: 'j' });
  await waitCount(11, 'the ai_* notifications');
  const epoch = inbox.at(-1).epoch;
  send({ type: 'subscribe', sessionId: 's', since: { seq: 2, epoch } });
  send({ type: 'subscribe', channel: 'c', since: { seq: 0, epoch: 'another' } });
  // A failed recovery of a session: the jobs snapshot instead of what was missed.
  send({ type: 'subscribe', sessionId: 's', since: { seq: 0, epoch: 'another' } });
  send({ type: 'unsubscribe', sessionId: 's' });
  send({ type: 'unsubscribe', channel: 'c' });
  send({ type: 'unsubscribe' });
  await waitCount(11 + 5 + 1 + 2 + 3, 'recovery and unsubscribe replies');
  // Presence: the subscriber's own join, then its status change and the member list.
  send({ type: 'subscribe', channel: 'p', presence: true });
  send({ type: 'presence', channel: 'p', status: 'away' });
  await waitCount(11 + 5 + 1 + 2 + 3 + 4, 'presence replies and events');
  ws.close();
  await server.close();

  const seenTypes = new Set();
  for (const message of inbox) {
    const shape = shapes[message.type];
    assert.ok(shape, `a type for ${JSON.stringify(message)}`);
    seenTypes.add(message.type);
    for (const [key, value] of Object.entries(message)) {
      assert.ok(shape[key], `${message.type} declares "${key}" (in ${JSON.stringify(message)})`);
      assert.ok(fits(value, shape[key].text), `${message.type}.${key} = ${JSON.stringify(value)} fits ${shape[key].text}`);
    }
    for (const [key, { optional }] of Object.entries(shape)) {
      if (!optional) assert.ok(key in message, `${message.type} has its required "${key}" (in ${JSON.stringify(message)})`);
    }
  }
  assert.deepEqual([...seenTypes].sort(), [...PROTOCOL_MESSAGE_TYPES].sort(), 'every type was exercised');
  assert.ok(inbox.some((m) => m.type === 'subscribed' && m.recovered === true));
  assert.ok(inbox.some((m) => m.type === 'subscribed' && m.recovered === false));
  assert.ok(inbox.some((m) => m.type === 'unsubscribed' && m.all === true));
});
