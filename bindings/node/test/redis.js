'use strict';

// A redis-server of the test's own: a free loopback port, no persistence,
// SIGKILL at the end.

const { spawn, spawnSync } = require('node:child_process');
const net = require('node:net');

const START_MS = 15_000;

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

function answersPing(port) {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    const done = (ok) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(1000, () => done(false));
    socket.once('error', () => done(false));
    socket.once('connect', () => socket.write('PING\r\n'));
    socket.once('data', (d) => done(d.toString().startsWith('+PONG')));
  });
}

class RedisServer {
  static async start() {
    if (spawnSync('redis-server', ['--version']).error) {
      throw new Error(
        'redis-server not found: the broker tests need it; install it with ' +
          '`apt-get install -y redis-server` (tests/run-all.sh does)',
      );
    }
    const redis = new RedisServer(await freePort());
    await redis.spawn();
    return redis;
  }

  constructor(port) {
    this.port = port;
    this.url = `redis://127.0.0.1:${port}`;
    this.child = null;
  }

  async spawn() {
    const args = ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'];
    this.child = spawn('redis-server', args, { stdio: 'ignore' });
    this.exited = new Promise((resolve) => this.child.once('exit', resolve));
    const deadline = Date.now() + START_MS;
    while (!(await answersPing(this.port))) {
      if (this.child.exitCode !== null) throw new Error(`redis-server exited with ${this.child.exitCode}`);
      if (Date.now() > deadline) {
        await this.kill();
        throw new Error(`redis-server did not answer on port ${this.port} within ${START_MS} ms`);
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /** SIGSTOP: Redis keeps its sockets but answers nothing until `resume()`. */
  pause() {
    if (this.child) this.child.kill('SIGSTOP');
  }

  /** SIGCONT after `pause()`. */
  resume() {
    if (this.child) this.child.kill('SIGCONT');
  }

  /** SIGKILL: no goodbye to any client, nothing saved. */
  async kill() {
    if (!this.child) return;
    const { child, exited } = this;
    this.child = null;
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      child.kill('SIGCONT'); // a paused process dies on SIGKILL anyway; this is belt and braces
    }
    await exited;
  }
}

module.exports = { RedisServer };
