"""Runs the quick-starts of the READMEs as pasted, against a real WebSocket client.

A README marks a runnable block with an HTML comment on the line before its fence:
`<!-- quickstart: KIND -->`, KIND one of python, node-cjs, node-esm, c, go. Each block is
a program that prints a ws:// URL and waits for a client; when one connects with
?sessionId=demo it streams an AI task to it. This script writes the block to a file,
builds it if needed, starts it, connects to the URL it printed (the `websockets` client
library) and requires `connection`, then `ai_start`, `ai_progress` and `ai_complete`.
The only change made to a block is its port: 3001 becomes a free port, so runs on a
shared machine cannot collide.

usage: quickstart.py --workdir DIR [--python PY] [--node-project DIR] [--pkg-config-path P]
                     [--go-module DIR] README.md...
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import websockets

MARKER = re.compile(r"^<!-- quickstart: ([a-z-]+) -->\s*$")
FENCE = re.compile(r"^```")
TIMEOUT_S = 20.0
EXPECTED = ["connection", "ai_start", "ai_progress", "ai_complete"]


def extract(readme: Path) -> list[tuple[str, str]]:
    """The (kind, code) of every block marked as a quick-start."""
    lines = readme.read_text(encoding="utf-8").splitlines()
    blocks = []
    i = 0
    while i < len(lines):
        marker = MARKER.match(lines[i])
        if marker and i + 1 < len(lines) and FENCE.match(lines[i + 1]):
            end = i + 2
            while end < len(lines) and not FENCE.match(lines[end]):
                end += 1
            blocks.append((marker.group(1), "\n".join(lines[i + 2 : end]) + "\n"))
            i = end
        i += 1
    return blocks


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prepare(kind: str, code: str, workdir: Path, args: argparse.Namespace) -> list[str]:
    """Writes the block where its toolchain expects it; returns the command that runs it."""
    if kind == "python":
        path = workdir / "quickstart.py"
        path.write_text(code)
        return [args.python, "-u", str(path)]
    if kind in ("node-cjs", "node-esm"):
        path = Path(args.node_project) / ("quickstart.cjs" if kind == "node-cjs" else "quickstart.mjs")
        path.write_text(code)
        return ["node", str(path)]
    if kind == "c":
        src = workdir / "quickstart.c"
        src.write_text(code)
        exe = workdir / "quickstart-c"
        env = dict(os.environ, PKG_CONFIG_PATH=args.pkg_config_path)
        flags = subprocess.run(
            ["pkg-config", "--cflags", "--libs", "herald"], env=env, check=True, capture_output=True, text=True
        ).stdout.split()
        subprocess.run(["cc", "-Wall", "-Werror", "-o", str(exe), str(src), *flags], check=True)
        return [str(exe)]
    if kind == "go":
        module = Path(args.go_module)
        (module / "main.go").write_text(code)
        exe = workdir / "quickstart-go"
        env = dict(os.environ, PKG_CONFIG_PATH=args.pkg_config_path)
        subprocess.run(
            ["go", "build", "-tags", "herald_pkgconfig", "-o", str(exe), "."], cwd=module, env=env, check=True
        )
        return [str(exe)]
    raise SystemExit(f"unknown quick-start kind {kind!r}")


async def watch(url: str) -> list[str]:
    """Connects like a browser would and collects message types until ai_complete."""
    seen: list[str] = []
    async with websockets.connect(url, open_timeout=TIMEOUT_S) as ws:
        deadline = time.monotonic() + TIMEOUT_S
        while "ai_complete" not in seen:
            raw = await asyncio.wait_for(ws.recv(), max(0.1, deadline - time.monotonic()))
            seen.append(json.loads(raw)["type"])
    return seen


def run(kind: str, code: str, workdir: Path, args: argparse.Namespace) -> None:
    port = free_port()
    command = prepare(kind, code.replace("3001", str(port)), workdir, args)
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=workdir)
    try:
        url = None
        deadline = time.monotonic() + TIMEOUT_S
        printed = []
        while url is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            printed.append(line.rstrip())
            match = re.search(r"ws://\S+", line)
            url = match.group(0) if match else None
        if url is None:
            raise AssertionError(f"{kind}: printed no ws:// URL (output: {printed})")
        if f":{port}/" not in url:
            raise AssertionError(f"{kind}: URL {url} is not on the port given ({port})")
        seen = asyncio.run(watch(url))
        order = [t for t in seen if t in EXPECTED]
        if order[:2] != ["connection", "ai_start"] or "ai_progress" not in order or order[-1] != "ai_complete":
            raise AssertionError(f"{kind}: unexpected messages {seen}")
        if proc.poll() is not None:
            raise AssertionError(f"{kind}: exited ({proc.returncode}) instead of waiting for more clients")
        print(f"ok  {kind}: printed {url}, a client received {seen}")
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--python")
    parser.add_argument("--node-project")
    parser.add_argument("--pkg-config-path")
    parser.add_argument("--go-module")
    parser.add_argument("--expect", type=int, required=True, help="number of quick-starts the READMEs must mark")
    parser.add_argument("readmes", nargs="+")
    args = parser.parse_args()
    workdir = Path(args.workdir)
    blocks = [(kind, code) for readme in args.readmes for kind, code in extract(Path(readme))]
    if len(blocks) != args.expect:
        print(f"expected {args.expect} marked quick-starts, found {[k for k, _ in blocks]}", file=sys.stderr)
        return 1
    failed = 0
    for kind, code in blocks:
        try:
            run(kind, code, workdir, args)
        except Exception as err:  # report every quick-start, then fail
            failed += 1
            print(f"FAIL {kind}: {type(err).__name__}: {err}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
