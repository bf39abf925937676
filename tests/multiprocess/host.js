'use strict';

// A Node host process for the multi-process test: starts a Herald node (or,
// with HERALD_LISTEN=0, an emitter) on the Redis broker named by
// HERALD_REDIS_URL and HERALD_REDIS_PREFIX, prints `ready <port>`, then obeys
// stdin (see README.md here).

const readline = require('node:readline');
const herald = require('../../bindings/node');

async function main() {
  const server = await herald.start({
    port: 0,
    listen: process.env.HERALD_LISTEN !== '0',
    broker: { redis: { url: process.env.HERALD_REDIS_URL, prefix: process.env.HERALD_REDIS_PREFIX } },
  });
  console.log(`ready ${server.getStats().port}`);
  const lines = readline.createInterface({ input: process.stdin });
  for await (const line of lines) {
    const [command, ...words] = line.trim().split(' ');
    if (command === 'stop') break;
    try {
      if (command === 'publish') server.publish(words[0], JSON.parse(words.slice(1).join(' ')));
      else if (command === 'broadcast') server.broadcast(JSON.parse(words.join(' ')));
      else throw new Error(`unknown command ${JSON.stringify(command)}`);
      console.log('ok');
    } catch (err) {
      console.log(`error ${err.code || err.name}: ${err.message}`); // the test fails on it
    }
  }
  await server.close();
  process.stdin.destroy(); // else the open pipe keeps the process alive
  console.log('stopped');
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
