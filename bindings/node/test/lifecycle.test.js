'use strict';

// Process lifetime: an open server keeps the process alive like a listening
// http.Server; a closed (or unref'd) one never does. Each case runs a child
// process and only bounds how long it may take to exit.

const { describe, it } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const { Client, attempt, runNode, withTimeout } = require('./helpers');

/** A port that was free a moment ago. */
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

const HERALD = JSON.stringify(require.resolve('..'));

/** Runs `body` in a child with `herald` and `port0` in scope; top-level await allowed. */
function child(body, opts) {
  const script = `
    const herald = require(${HERALD});
    (async () => { ${body} })().catch((err) => {
      console.log('CHILD-ERROR ' + (err && err.code) + ' ' + (err && err.stack));
      process.exitCode = 99;
    });
  `;
  return runNode(script, opts);
}

function assertExitedCleanly(res, expectedStdout) {
  assert.equal(res.timedOut, false, `the child did not exit by itself (stdout: ${res.stdout} stderr: ${res.stderr})`);
  assert.equal(res.code, 0, `exit code (stdout: ${res.stdout} stderr: ${res.stderr})`);
  if (expectedStdout) assert.match(res.stdout, expectedStdout);
}

describe('process lifetime', () => {
  it('exits once the server is closed', async () => {
    const res = await child(`
      const s = await herald.start({ port: 0 });
      console.log('started ' + s.port);
      await s.close();
      console.log('closed');
    `);
    assertExitedCleanly(res, /started \d+\nclosed\n/);
  });

  it('exits after closing a server that had clients and events', async () => {
    // The child closes its server when a client asks; it must then exit by itself.
    let port;
    const ready = new Promise((resolve) => {
      port = resolve;
    });
    const running = child(
      `
      const s = await herald.start({ port: 0 });
      s.on('message', async (e) => {
        if (e.message.type === 'quit') {
          s.broadcast({ type: 'bye' });
          await s.close();
          console.log('closed');
        }
      });
      s.on('disconnect', () => console.log('disconnect'));
      console.log('port ' + s.port);
    `,
      {
        onLine: (line) => {
          const m = /^port (\d+)$/.exec(line);
          if (m) port(Number(m[1]));
        },
      },
    );
    const c = await Client.connect(await withTimeout(ready, 'the child to start'));
    // The child's main script finished long ago; it is still serving us.
    c.send({ type: 'ping' });
    await c.next({ type: 'pong' });
    c.send({ type: 'quit' });
    await c.next({ type: 'bye' });
    assert.equal((await withTimeout(c.closed, 'the close frame')).code, 1001);
    const res = await running;
    assertExitedCleanly(res, /disconnect\nclosed\n/);
  });

  it('stays alive while the server is open', async () => {
    // The child never closes: after serving a round trip it must still be
    // running; we end it ourselves.
    let done;
    const ready = new Promise((resolve) => {
      done = resolve;
    });
    let childProc;
    const running = child(`const s = await herald.start({ port: 0 }); console.log('port ' + s.port);`, {
      onLine: (line, proc) => {
        childProc = proc;
        const m = /^port (\d+)$/.exec(line);
        if (m) done(Number(m[1]));
      },
    });
    const port = await withTimeout(ready, 'the child to start');
    const c = await Client.connect(port);
    await c.sync();
    assert.equal(childProc.exitCode, null, 'the child is still running');
    childProc.kill('SIGTERM');
    const res = await running;
    assert.equal(res.signal, 'SIGTERM', 'the child had to be killed');
    c.terminate();
  });

  it('exits while the server is open after unref(), and ref() undoes it', async () => {
    const res = await child(`
      const s = await herald.start({ port: 0 });
      s.unref();
      console.log('unrefed');
    `);
    assertExitedCleanly(res, /unrefed/);

    let done;
    const ready = new Promise((resolve) => {
      done = resolve;
    });
    const running = child(
      `
      const s = await herald.start({ port: 0 });
      s.unref().ref();
      s.on('message', () => s.close());
      console.log('port ' + s.port);
    `,
      {
        onLine: (line) => {
          const m = /^port (\d+)$/.exec(line);
          if (m) done(Number(m[1]));
        },
      },
    );
    const c = await Client.connect(await withTimeout(ready, 'the child to start'));
    await c.sync(); // still alive after ref()
    c.send({ type: 'quit' });
    await withTimeout(c.closed, 'the close frame');
    assertExitedCleanly(await running);
  });

  it('a failed start() does not keep the process alive', async () => {
    const res = await child(`
      await herald.start({ port: 0, no_such_key: 1 }).catch((e) => console.log('rejected ' + e.code));
    `);
    assertExitedCleanly(res, /rejected HERALD_INVALID_CONFIG/);
  });

  it('exits after closing several servers', async () => {
    const res = await child(`
      const servers = await Promise.all([1, 2, 3].map(() => herald.start({ port: 0 })));
      console.log('ports ' + servers.map((s) => s.port).join(','));
      await Promise.all(servers.map((s) => s.close()));
      console.log('all closed');
    `);
    assertExitedCleanly(res, /all closed/);
  });

  it('a listener that throws surfaces as an uncaught exception', async () => {
    let done;
    const ready = new Promise((resolve) => {
      done = resolve;
    });
    const running = child(
      `
      const s = await herald.start({ port: 0 });
      s.on('connection', () => { throw new Error('listener exploded'); });
      console.log('port ' + s.port);
    `,
      {
        onLine: (line) => {
          const m = /^port (\d+)$/.exec(line);
          if (m) done(Number(m[1]));
        },
      },
    );
    const port = await withTimeout(ready, 'the child to start');
    const c = await Client.connect(port).catch(() => null); // the child may die mid-handshake
    const res = await running;
    assert.equal(res.timedOut, false);
    assert.notEqual(res.code, 0);
    assert.match(res.stderr, /listener exploded/);
    if (c) c.terminate();
  });

  it('emits events of clients that connected before start() resolved', async () => {
    // The child blocks its main thread right after calling start(), until we
    // have connected (the core serves the client on its own threads). The
    // 'connection' event is then emitted after the child attached its listener.
    const port = await freePort();
    const flag = path.join(os.tmpdir(), `herald-early-${process.pid}-${Date.now()}`);
    let started;
    const startedP = new Promise((resolve) => {
      started = resolve;
    });
    const running = child(
      `
      const fs = require('node:fs');
      const pending = herald.start({ port: ${port} });
      console.log('blocking');
      const deadline = Date.now() + 30000;
      while (!fs.existsSync(${JSON.stringify(flag)}) && Date.now() < deadline) {
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 10);
      }
      const s = await pending;
      s.on('connection', async (e) => {
        console.log('connection ' + e.clientId);
        await s.close();
      });
    `,
      { onLine: (line) => line === 'blocking' && started() },
    );
    await withTimeout(startedP, 'the child to start');
    let c;
    for (let attempt = 0; !c; attempt += 1) {
      c = await Client.connect(port).catch((err) => {
        if (attempt > 200) throw err;
        return new Promise((resolve) => setTimeout(() => resolve(null), 50));
      });
    }
    fs.writeFileSync(flag, '');
    try {
      const res = await running;
      assertExitedCleanly(res, new RegExp(`connection ${c.id}`));
    } finally {
      fs.rmSync(flag, { force: true });
      c.terminate();
    }
  });

  it('a worker thread that ends with its server open stops the server', async () => {
    const res = await child(`
      const { Worker } = require('node:worker_threads');
      const w = new Worker(\`
        const herald = require(${HERALD.replace(/\\/g, '\\\\')});
        const { parentPort } = require('node:worker_threads');
        herald.start({ port: 0 }).then((s) => parentPort.postMessage(s.port));
      \`, { eval: true });
      const port = await new Promise((r) => w.once('message', r));
      await w.terminate();
      // The port is free again: the server went away with its environment.
      const again = await herald.start({ port });
      console.log('rebound ' + (again.port === port));
      await again.close();
    `);
    assertExitedCleanly(res, /rebound true/);
  });

  it('a busy JS thread pushes back on the core, and ending it then does not hang', async () => {
    // The worker's JS thread stops draining events; thousands arrive, so the
    // binding's bounded event queue fills and the core's event thread waits on
    // it. Terminating the worker must still stop the server and finish.
    const res = await child(
      `
      const { Worker } = require('node:worker_threads');
      const w = new Worker(\`
        const herald = require(${HERALD.replace(/\\/g, '\\\\')});
        const { parentPort } = require('node:worker_threads');
        herald.start({ port: 0 }).then((s) => {
          s.on('subscribe', () => {});
          parentPort.postMessage(s.port);
          // Busy forever: events are never drained from now on.
          const cell = new Int32Array(new SharedArrayBuffer(4));
          for (;;) Atomics.wait(cell, 0, 0, 100);
        });
      \`, { eval: true });
      const port = await new Promise((r) => w.once('message', r));
      console.log('port ' + port);
      await new Promise((r) => process.stdin.once('data', r)); // the parent flooded the server
      process.stdin.destroy();
      await w.terminate();
      console.log('terminated');
      const again = await herald.start({ port });
      console.log('rebound ' + (again.port === port));
      await again.close();
    `,
      {
        stdin: true,
        onLine: async (line, proc) => {
          const m = /^port (\d+)$/.exec(line);
          if (!m) return;
          const port = Number(m[1]);
          // Each connection makes connected + 2 subscribed + disconnected
          // (+ unsubscribed) events: several times the binding's queue of 1024
          // (a teardown may discard up to a queue's worth before its cleanup
          // hooks run, so only a much larger backlog shows a hang).
          const N = 1000;
          for (let i = 0; i < N; i += 50) {
            const batch = await Promise.all(
              Array.from({ length: 50 }, (_, j) =>
                Client.connect(port, { userId: `flood-u${i + j}`, sessionId: `flood-s${i + j}` }),
              ),
            );
            for (const c of batch) c.terminate();
          }
          // The core holds events it cannot hand over: the binding's queue is full.
          for (let tries = 0; ; tries += 1) {
            const stats = await (await fetch(`http://127.0.0.1:${port}/api/ws/stats`)).json();
            if (stats.eventsQueued > 0) break;
            if (tries > 200) throw new Error('events never backed up in the core');
            await new Promise((r) => setTimeout(r, 50));
          }
          proc.stdin.end('go\n');
        },
      },
    );
    assertExitedCleanly(res, /terminated\nrebound true/);
  });

  it('works inside a worker thread, and the worker can exit', async () => {
    const res = await child(`
      const { Worker } = require('node:worker_threads');
      const w = new Worker(\`
        const herald = require(${HERALD.replace(/\\/g, '\\\\')});
        const { parentPort } = require('node:worker_threads');
        herald.start({ port: 0 }).then(async (s) => {
          parentPort.postMessage('port ' + s.port);
          await s.close();
        });
      \`, { eval: true });
      w.on('message', (m) => console.log(m));
      const code = await new Promise((r) => w.on('exit', r));
      console.log('worker exited ' + code);
    `);
    assertExitedCleanly(res, /port \d+\nworker exited 0/);
  });
});

describe('process lifetime with an authorizer', () => {
  /** Runs a child and resolves with the port it prints as "port N", plus the running child. */
  function childWithPort(body, opts = {}) {
    let gotPort;
    const portP = new Promise((resolve) => {
      gotPort = resolve;
    });
    const running = child(body, {
      ...opts,
      onLine: (line, proc) => {
        const m = /^port (\d+)$/.exec(line);
        if (m) gotPort(Number(m[1]));
        if (opts.onLine) opts.onLine(line, proc);
      },
    });
    return { port: withTimeout(portP, 'the child to start'), running };
  }

  it('exits after close when an (async) authorizer was set and used', async () => {
    const { port, running } = childWithPort(`
      const s = await herald.start({ port: 0, auth: { required: true } });
      s.setAuthorizer(async (req) => {
        await new Promise((r) => setTimeout(r, 10));
        return { allow: true, userId: 'life' };
      });
      s.on('message', async (e) => {
        if (e.message.type === 'quit') {
          await s.close();
          console.log('closed');
        }
      });
      console.log('port ' + s.port);
    `);
    const c = await Client.connect(await port);
    await c.sync();
    c.send({ type: 'quit' });
    assert.equal((await withTimeout(c.closed, 'the close frame')).code, 1001);
    assertExitedCleanly(await running, /closed\n/);
  });

  it('exits after close when an authorizer was set but never asked, or removed', async () => {
    const res = await child(`
      const a = await herald.start({ port: 0 });
      a.setAuthorizer(() => true);
      await a.close();
      const b = await herald.start({ port: 0 });
      b.setAuthorizer(() => true).setAuthorizer(null).setAuthorizer(async () => false);
      await b.close();
      console.log('closed both');
    `);
    assertExitedCleanly(res, /closed both/);
  });

  it("an authorizer does not keep an unref'd server's process alive", async () => {
    const res = await child(`
      const s = await herald.start({ port: 0 });
      s.setAuthorizer(() => true);
      s.unref();
      console.log('unrefed');
    `);
    assertExitedCleanly(res, /unrefed/);
  });

  it('an authorizer that throws or rejects (no listener) is logged and denies; the process lives on and exits after close', async () => {
    const { port, running } = childWithPort(`
      const s = await herald.start({ port: 0, auth: { required: true } });
      let n = 0;
      s.setAuthorizer(async (req) => {
        n += 1;
        if (n === 1) throw new Error('kaboom-async');
        setTimeout(async () => { await s.close(); console.log('closed'); }, 50);
        return Promise.reject(new Error('kaboom-rejected'));
      });
      console.log('port ' + s.port);
    `);
    const p = await port;
    for (let i = 0; i < 2; i += 1) {
      const r = await attempt(`ws://127.0.0.1:${p}/ws`);
      assert.equal(r.outcome, 'closed');
      assert.equal(r.code, 1008);
    }
    const res = await running;
    assertExitedCleanly(res, /closed\n/);
    assert.match(res.stderr, /herald: the authorizer failed on a connect request; denied: Error: kaboom-async/);
    assert.match(res.stderr, /kaboom-rejected/);
  });

  it("a blocked JS thread: the core's timeout denies, the late answer is reported, nothing crashes", async () => {
    const flag = path.join(os.tmpdir(), `herald-busy-${process.pid}-${Date.now()}`);
    const { port, running } = childWithPort(`
      const fs = require('node:fs');
      const s = await herald.start({ port: 0, auth: { required: true, authorizer_timeout_ms: 200 } });
      s.setAuthorizer(() => { console.log('asked'); return true; });
      console.log('port ' + s.port);
      // Busy: the authorization request waits for this thread.
      const deadline = Date.now() + 30000;
      while (!fs.existsSync(${JSON.stringify(flag)}) && Date.now() < deadline) {
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 10);
      }
      console.log('unblocked');
      setTimeout(async () => { await s.close(); console.log('closed'); }, 100);
    `);
    try {
      const r = await attempt(`ws://127.0.0.1:${await port}/ws`);
      assert.equal(r.outcome, 'closed', JSON.stringify(r.outcome));
      assert.equal(r.code, 1008, 'denied by the timeout while the JS thread was blocked');
    } finally {
      fs.writeFileSync(flag, '');
    }
    try {
      const res = await running;
      assertExitedCleanly(res, /unblocked\nasked\nclosed\n/);
      assert.match(res.stderr, /answered after auth\.authorizer_timeout_ms/);
    } finally {
      fs.rmSync(flag, { force: true });
    }
  });

  it('a worker thread that ends with its server open and an authorizer set stops the server', async () => {
    const res = await child(`
      const { Worker } = require('node:worker_threads');
      const WebSocket = require('ws');
      const w = new Worker(\`
        const herald = require(${HERALD.replace(/\\/g, '\\\\')});
        const { parentPort } = require('node:worker_threads');
        herald.start({ port: 0, auth: { required: true } }).then((s) => {
          s.setAuthorizer(async () => ({ allow: true, userId: 'in-worker' }));
          parentPort.postMessage(s.port);
        });
      \`, { eval: true });
      const port = await new Promise((r) => w.once('message', r));
      const ws = new WebSocket('ws://127.0.0.1:' + port + '/ws');
      await new Promise((resolve, reject) => {
        ws.on('message', resolve); // the welcome: the worker's authorizer allowed it
        ws.on('error', reject);
      });
      console.log('connected');
      await w.terminate();
      ws.terminate();
      const again = await herald.start({ port });
      console.log('rebound ' + (again.port === port));
      await again.close();
    `);
    assertExitedCleanly(res, /connected\nrebound true/);
  });
});
