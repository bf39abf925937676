import { createHmac } from 'node:crypto';

const b64 = (v) => Buffer.from(JSON.stringify(v)).toString('base64url');

/** A JWT signed with HS256. */
export function hs256(payload, secret) {
  const input = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64(payload)}`;
  return `${input}.${createHmac('sha256', secret).update(input).digest('base64url')}`;
}
