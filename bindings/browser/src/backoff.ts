/**
 * Full-jitter exponential backoff: attempt n (0-based) waits a uniformly random time
 * in [0, min(maxMs, minMs * 2^n)], so clients cut off together do not return together.
 */
export function backoffDelay(attempt: number, minMs: number, maxMs: number, random: () => number = Math.random): number {
  const cap = Math.min(maxMs, minMs * 2 ** Math.min(attempt, 30));
  return Math.floor(random() * cap);
}
