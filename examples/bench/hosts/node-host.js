'use strict';

// Benchmark host: Herald embedded in Node through the napi binding (bindings/node).
// The addon is loaded as bindings/node/index.js does: $HERALD_NODE_ADDON, else
// bindings/node/herald.node.
//
// Prints "READY <port>", then obeys line commands on stdin (see loadgen/src/host.rs):
//   push <M> <rate> <size>  -> PUSHED <M> <elapsed_ns> <retries>
//   cost <K> <size>         -> COST <K> <elapsed_ns> <errors>
//   quit

const path = require('node:path');
const readline = require('node:readline');
const { performance } = require('node:perf_hooks');
const herald = require(path.join(__dirname, '..', '..', '..', 'bindings', 'node'));

const SESSION = process.env.BENCH_SESSION || 'bench';
const QUEUE = Number(process.env.BENCH_CLIENT_QUEUE || 4096);

const nowUs = () => Math.round((performance.timeOrigin + performance.now()) * 1000);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function payload(t, i, size) {
  const head = `{"t":${t},"i":${i},"pad":"`;
  return `${head}${'x'.repeat(Math.max(0, size - head.length - 2))}"}`;
}

async function main() {
  const server = await herald.start({ port: 0, client_queue_size: QUEUE });
  // Events are emitted on the server; nothing listens, like a host that ignores them.

  async function push(m, rate, size) {
    let retries = 0;
    const start = performance.now();
    for (let i = 0; i < m; i++) {
      if (rate > 0) {
        const wait = start + (i * 1000) / rate - performance.now();
        if (wait > 0) await sleep(wait);
      }
      const text = payload(nowUs(), i, size);
      for (;;) {
        try {
          server.notifyAIProgress(SESSION, text);
          break;
        } catch (e) {
          if (e.code !== 'HERALD_QUEUE_FULL') throw e;
          retries++;
          await sleep(1);
        }
      }
    }
    return [Math.round((performance.now() - start) * 1e6), retries];
  }

  function cost(k, size) {
    const text = payload(nowUs(), 0, size);
    let errors = 0;
    const start = process.hrtime.bigint();
    for (let i = 0; i < k; i++) {
      try {
        server.notifyAIProgress(SESSION, text);
      } catch (e) {
        errors++;
      }
    }
    return [Number(process.hrtime.bigint() - start), errors];
  }

  process.stdout.write(`READY ${server.port}\n`);
  const rl = readline.createInterface({ input: process.stdin });
  let queue = Promise.resolve();
  const quit = async () => {
    await server.close({ timeoutMs: 2000 }).catch(() => {});
    process.exit(0);
  };
  rl.on('line', (line) => {
    queue = queue.then(async () => {
      const p = line.trim().split(/\s+/);
      if (p[0] === 'push' && p.length === 4) {
        const [ns, retries] = await push(Number(p[1]), Number(p[2]), Number(p[3]));
        process.stdout.write(`PUSHED ${p[1]} ${ns} ${retries}\n`);
      } else if (p[0] === 'cost' && p.length === 3) {
        const [ns, errors] = cost(Number(p[1]), Number(p[2]));
        process.stdout.write(`COST ${p[1]} ${ns} ${errors}\n`);
      } else if (p[0] === 'quit') {
        await quit();
      }
    });
  });
  rl.on('close', () => {
    queue = queue.then(quit);
  });
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
