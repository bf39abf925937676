"""Run examples/python/*.py for real: subprocesses, real HTTP, real websockets clients."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import pytest

from _helpers import TIMEOUT, Client, run

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "python"


class Proc:
    """A subprocess whose stdout lines are collected by a reader thread (bounded waits)."""

    def __init__(self, *args: str) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.popen = subprocess.Popen(
            [sys.executable, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=EXAMPLES,
        )
        self.lines: List[str] = []
        self.stderr = ""
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._err_reader = threading.Thread(target=self._read_err, daemon=True)
        self._err_reader.start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self.lines.append("<EOF>")
            self._cond.notify_all()

    def _read_err(self) -> None:
        assert self.popen.stderr is not None
        self.stderr = self.popen.stderr.read()

    def wait_line(self, pattern: str, timeout: float = 120.0) -> "re.Match[str]":
        regex = re.compile(pattern)

        def find() -> Optional["re.Match[str]"]:
            for line in self.lines:
                m = regex.search(line)
                if m:
                    return m
            return None

        with self._cond:
            found = self._cond.wait_for(lambda: find() or "<EOF>" in self.lines, timeout)
            m = find()
        if not m:
            self.kill()
            raise AssertionError(f"no line matching {pattern!r}: stdout={self.lines!r} (found={found!r})")
        return m

    def finish(self, timeout: float = 60.0) -> int:
        code = self.popen.wait(timeout)
        self._err_reader.join(timeout)
        return code

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(30)


@pytest.fixture
def procs() -> Iterator[List[Proc]]:
    started: List[Proc] = []
    yield started
    for p in started:
        p.kill()


def test_agent_example_streams_a_session(procs: List[Proc]) -> None:
    agent = Proc("agent.py", "--port", "0", "--session", "demo", "--steps", "4", "--delay", "0.01", "--wait", "120")
    procs.append(agent)
    url = agent.wait_line(r"SESSION_URL (ws://\S+)").group(1)
    port = int(re.search(r":(\d+)/ws", url).group(1))  # type: ignore[union-attr]

    async def body() -> List[Dict[str, Any]]:
        c = await Client.connect(port, sessionId="demo")
        got = await c.recv_n(6)
        await asyncio.wait_for(c.ws.wait_closed(), TIMEOUT)  # the agent closes when done
        return got

    try:
        got = run(body())
    except BaseException:
        agent.kill()
        print("agent stdout:", agent.lines, "\nagent stderr:", agent.stderr)
        raise
    assert [m["type"] for m in got] == ["ai_start"] + ["ai_progress"] * 4 + ["ai_complete"]
    assert [m["progress"]["step"] for m in got[1:5]] == [1, 2, 3, 4]
    assert got[5]["result"]["tokens"] == 4
    assert agent.finish() == 0, agent.stderr


def post_json(url: str, body: Dict[str, Any]) -> Dict[str, Any]:
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"content-type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(req, timeout=TIMEOUT) as resp:
        assert resp.status == 202
        return json.loads(resp.read())


def get_json(url: str) -> Dict[str, Any]:
    with urllib.request.urlopen(url, timeout=TIMEOUT) as resp:
        return json.loads(resp.read())


def test_webapp_example_job_notifies_over_herald(procs: List[Proc]) -> None:
    app = Proc("webapp.py", "--port", "0", "--herald-port", "0", "--step-delay", "0.01")
    procs.append(app)
    m = app.wait_line(r"READY http_port=(\d+) herald_port=(\d+)")
    http = f"http://127.0.0.1:{m.group(1)}"
    herald_port = int(m.group(2))

    async def body() -> None:
        c = await Client.connect(herald_port, sessionId="job-session")
        job = await asyncio.to_thread(
            post_json, f"{http}/jobs", {"prompt": "tell me a story", "session_id": "job-session", "steps": 3}
        )
        assert job["session_id"] == "job-session"
        assert job["websocket"].endswith(f":{herald_port}/ws?sessionId=job-session")
        got = await c.recv_n(5)
        assert [x["type"] for x in got] == ["ai_start", "ai_progress", "ai_progress", "ai_progress", "ai_complete"]
        assert got[0]["task"] == {"jobId": job["job_id"], "prompt": "tell me a story"}
        assert [x["progress"]["token"] for x in got[1:4]] == ["tell", "me", "a"]
        assert got[4]["result"] == {"jobId": job["job_id"], "text": "tell me a"}
        status = await asyncio.to_thread(get_json, f"{http}/jobs/{job['job_id']}")
        assert status["status"] == "complete"

        # A client cancels a long job through Herald: client_message -> async events -> cancel.
        long_job = await asyncio.to_thread(
            post_json, f"{http}/jobs", {"prompt": "long", "session_id": "job-session", "steps": 10_000, "delay": 0.05}
        )
        assert (await c.recv())["type"] == "ai_start"
        await c.send({"type": "cancel", "jobId": long_job["job_id"]})
        for _ in range(10_000):
            msg = await c.recv()
            if msg["type"] != "ai_progress":
                break
        assert msg["type"] == "ai_error", msg
        assert msg["error"] == {"jobId": long_job["job_id"], "message": "cancelled by the client"}
        await c.close()

    run(body())
    app.popen.send_signal(signal.SIGTERM)
    assert app.finish() == 0, app.stderr
    assert "Traceback" not in app.stderr, app.stderr
