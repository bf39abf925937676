#!/usr/bin/env python3
"""Three Herald nodes in three host processes of different languages (Python, Node, Go),
one emitter process, one redis-server of our own, real WebSocket clients on every node:
publications from the emitter and from each node reach every subscriber on every node
exactly once, in order per channel.

Run with the Python binding's test environment, after the core (cargo build --release)
and the Node addon are built:  bindings/python/.venv/bin/python tests/multiprocess/run.py
Every wait is bounded; every process it starts is stopped (or killed) at the end."""

from __future__ import annotations

import asyncio
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from websockets.asyncio.client import connect

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "bindings" / "python" / "tests"))
from _redis import RedisServer  # noqa: E402

#: Upper bound of any single wait (2 noisy cores).
WAIT = 30.0
PREFIX = "multiprocess:"
ROUNDS = 10  # "news": every publisher in turn, ROUNDS times
BURST = 15  # "from-<publisher>": each publisher's own channel, all publishers at once
CLIENTS_PER_NODE = 2


class Host:
    """One host process speaking the line protocol of README.md."""

    def __init__(self, name: str, argv: List[str], env: Dict[str, str], cwd: Path) -> None:
        self.name = name
        self.lines: "queue.Queue[Optional[str]]" = queue.Queue()
        self.process = subprocess.Popen(
            argv, cwd=cwd, env=env, text=True, bufsize=1,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=sys.stderr,
        )
        threading.Thread(target=self._read, daemon=True).start()
        ready = self.expect("ready ")
        self.port = int(ready.split()[1])

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def expect(self, prefix: str, timeout: float = WAIT) -> str:
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"{self.name}: no {prefix!r} line within {timeout} s") from None
        if line is None:
            raise AssertionError(f"{self.name}: exited ({self.process.wait(5)}) before {prefix!r}")
        if not line.startswith(prefix):
            raise AssertionError(f"{self.name}: expected {prefix!r}, got {line!r}")
        return line

    def send(self, command: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()

    def stop(self) -> None:
        """`stop`, then a bounded wait; SIGKILL if the host does not exit."""
        if self.process.poll() is None:
            try:
                self.send("stop")
                self.expect("stopped", timeout=15)
                self.process.wait(timeout=15)
            except (AssertionError, OSError, subprocess.TimeoutExpired) as err:
                print(f"{self.name}: killed ({err})", file=sys.stderr)
                self.process.kill()
                self.process.wait(timeout=10)


def build_go_host(out_dir: Path) -> Path:
    binary = out_dir / "herald-go-host"
    subprocess.run(
        ["go", "build", "-o", str(binary), "."], cwd=HERE / "go", check=True, timeout=600,
        env={**os.environ, "CGO_ENABLED": "1"},
    )
    return binary


def prerequisites() -> None:
    missing = [tool for tool in ("node", "go", "redis-server") if shutil.which(tool) is None]
    if missing:
        raise SystemExit(f"run.py: missing {', '.join(missing)}")
    release = REPO / "target" / "release"
    for built in (release / "libherald.a", release / "libherald.so", REPO / "bindings" / "node" / "herald.node"):
        if not built.is_file():
            raise SystemExit(f"run.py: {built} is missing: build the core and the Node addon first")


async def subscriber(port: int, channels: List[str]) -> Any:
    ws = await connect(f"ws://127.0.0.1:{port}/ws", open_timeout=WAIT, max_size=None)
    hello = json.loads(await asyncio.wait_for(ws.recv(), WAIT))
    assert hello["type"] == "connection", hello
    for channel in channels:
        await ws.send(json.dumps({"type": "subscribe", "channel": channel}))
        reply = json.loads(await asyncio.wait_for(ws.recv(), WAIT))
        assert reply["type"] == "subscribed" and reply["channel"] == channel, reply
    return ws


async def collect(ws: Any, count: int) -> List[Dict[str, Any]]:
    """`count` messages, then a ping: anything between them and the pong is a duplicate."""
    got = [json.loads(await asyncio.wait_for(ws.recv(), WAIT)) for _ in range(count)]
    await ws.send(json.dumps({"type": "ping"}))
    while True:
        extra = json.loads(await asyncio.wait_for(ws.recv(), WAIT))
        if extra["type"] == "pong":
            return got
        got.append(extra)


def check(label: str, got: List[Dict[str, Any]], publishers: List[str]) -> None:
    by_channel: Dict[str, List[Tuple[int, int, str]]] = {}
    broadcasts: List[str] = []
    for m in got:
        if m["type"] == "all":
            broadcasts.append(m["from"])
        else:
            assert m["type"] == "note", (label, m)
            by_channel.setdefault(m["channel"], []).append((m["seq"], m["i"], m["from"]))
    news = [(k, k, publishers[(k - 1) % len(publishers)]) for k in range(1, ROUNDS * len(publishers) + 1)]
    assert by_channel.pop("news") == news, (label, "news")
    for name in publishers:
        own = [(k, k, name) for k in range(1, BURST + 1)]
        assert by_channel.pop(f"from-{name}") == own, (label, name)
    assert not by_channel, (label, by_channel)
    assert sorted(broadcasts) == sorted(publishers), (label, broadcasts)


async def exercise(nodes: List[Host], publishers: List[Host]) -> int:
    names = [p.name for p in publishers]
    channels = ["news"] + [f"from-{n}" for n in names]
    clients = [await subscriber(node.port, channels) for node in nodes for _ in range(CLIENTS_PER_NODE)]
    labels = [f"{node.name}#{k}" for node in nodes for k in range(CLIENTS_PER_NODE)]
    expected = ROUNDS * len(names) + BURST * len(names) + len(names)
    readers = [asyncio.create_task(collect(ws, expected)) for ws in clients]

    def publish_all() -> None:
        # One channel fed by every publisher in turn: its order is the order of the calls.
        for k in range(1, ROUNDS * len(publishers) + 1):
            host = publishers[(k - 1) % len(publishers)]
            host.send(f'publish news {{"type":"note","i":{k},"from":"{host.name}"}}')
            host.expect("ok")
        # Every publisher at once, each on its own channel.
        for host in publishers:
            for k in range(1, BURST + 1):
                host.send(f'publish from-{host.name} {{"type":"note","i":{k},"from":"{host.name}"}}')
        for host in publishers:
            for _ in range(BURST):
                host.expect("ok")
        for host in publishers:
            host.send(f'broadcast {{"type":"all","from":"{host.name}"}}')
            host.expect("ok")

    started = time.monotonic()
    await asyncio.to_thread(publish_all)
    for label, got in zip(labels, await asyncio.gather(*readers)):
        check(label, got, names)
    elapsed = time.monotonic() - started
    for ws in clients:
        await ws.close()
    print(f"run.py: {len(clients)} clients on {len(nodes)} nodes each got {expected} messages "
          f"from {len(publishers)} publishers, exactly once and in order ({elapsed:.2f} s)")
    return expected


def main() -> None:
    prerequisites()
    redis = RedisServer()
    hosts: List[Host] = []
    with tempfile.TemporaryDirectory(prefix="herald-multiprocess-") as scratch:
        try:
            go_host = build_go_host(Path(scratch))
            env = {
                **os.environ,
                "HERALD_REDIS_URL": redis.url,
                "HERALD_REDIS_PREFIX": PREFIX,
                "PYTHONPATH": str(REPO / "bindings" / "python" / "src"),
                "HERALD_LIBRARY": str(REPO / "target" / "release" / "libherald.so"),
            }
            python_cmd = [sys.executable, str(HERE / "host.py")]
            hosts.append(Host("python", python_cmd, env, HERE))
            hosts.append(Host("node", ["node", str(HERE / "host.js")], env, HERE))
            hosts.append(Host("go", [str(go_host)], env, HERE))
            emitter = Host("emitter", python_cmd, {**env, "HERALD_LISTEN": "0"}, HERE)
            hosts.append(emitter)
            assert emitter.port == 0, "an emitter serves no socket"
            asyncio.run(asyncio.wait_for(exercise(hosts[:3], [emitter] + hosts[:3]), 180))
        finally:
            for host in hosts:
                host.stop()
            redis.kill()


if __name__ == "__main__":
    main()
