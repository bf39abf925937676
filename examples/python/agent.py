#!/usr/bin/env python3
"""A simulated AI agent streaming its progress to a session over Herald.

    pip install ./bindings/python
    python examples/python/agent.py --session demo

then, in another terminal, watch the session (any WebSocket client works):

    python -m websockets "ws://127.0.0.1:3001/ws?sessionId=demo"

The agent waits for a subscriber of the session (``--wait`` seconds), then sends ``ai_start``,
one ``ai_progress`` per step and ``ai_complete``, and exits.
"""

from __future__ import annotations

import argparse
import random
import sys
import time

import herald

WORDS = "Herald streams every token of the answer to the browser while the model is still thinking".split()


def wait_for_subscriber(events: herald.EventStream, session: str, timeout: float) -> bool:
    """Block until a client subscribes to `session` (with ?sessionId= or a subscribe message)."""
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        try:
            event = events.get(timeout=remaining)
        except TimeoutError:
            return False
        # `subscribed` is emitted once the subscription exists, whether it came from the URL's
        # ?sessionId= or from a subscribe message (and not if a secured server refused it).
        if event["type"] == "subscribed" and event.get("channel") == f"session:{session}":
            return True


def run_agent(server: herald.Server, session: str, steps: int, delay: float) -> None:
    task = {"agent": "demo-agent", "prompt": "Explain Herald in one sentence", "steps": steps}
    server.notify_ai_start(session, task)
    print(f"ai_start    -> session {session!r}", flush=True)
    answer = []
    for step in range(1, steps + 1):
        time.sleep(delay * random.uniform(0.5, 1.5))  # "thinking"
        token = WORDS[(step - 1) % len(WORDS)]
        answer.append(token)
        progress = {"step": step, "of": steps, "percent": round(100 * step / steps), "token": token}
        server.notify_ai_progress(session, progress)
        print(f"ai_progress -> {progress}", flush=True)
    server.notify_ai_complete(session, {"text": " ".join(answer), "tokens": len(answer)})
    print("ai_complete -> done", flush=True)


def main(argv: "list[str] | None" = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3001, help="Herald port (0 = any free port)")
    parser.add_argument("--session", default="demo")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--delay", type=float, default=0.4, help="average seconds per step")
    parser.add_argument("--wait", type=float, default=120.0, help="seconds to wait for a subscriber (0: don't wait)")
    args = parser.parse_args(argv)

    with herald.Server(host=args.host, port=args.port) as server, server.events() as events:
        # The event stream exists before the URL is printed, so no subscription is missed.
        url = f"ws://{args.host}:{server.port}/ws?sessionId={args.session}"
        print(f"Herald {herald.core_version()} listening on port {server.port}", flush=True)
        print(f"Watch the agent with:  python -m websockets \"{url}\"", flush=True)
        print(f"SESSION_URL {url}", flush=True)
        if args.wait > 0:
            print(f"waiting up to {args.wait:g} s for a subscriber of session {args.session!r}...", flush=True)
            if not wait_for_subscriber(events, args.session, args.wait):
                print("nobody subscribed; streaming anyway", flush=True)
        events.close()
        run_agent(server, args.session, args.steps, args.delay)
        # close() (by the with block) flushes the queued notifications before disconnecting.
    return 0


if __name__ == "__main__":
    sys.exit(main())
