#!/usr/bin/env python3
"""An aiohttp web app whose HTTP endpoint starts an "LLM job" that notifies over Herald.

    pip install ./bindings/python -r examples/python/requirements.txt
    python examples/python/webapp.py            # http://127.0.0.1:8080, Herald on :3001

    # 1. watch a session          python -m websockets "ws://127.0.0.1:3001/ws?sessionId=s1"
    # 2. start a job for it       curl -X POST localhost:8080/jobs -d '{"prompt": "hi", "session_id": "s1"}'
    # 3. cancel it from the socket: type {"type": "cancel", "jobId": "<job_id>"} in the client

or open http://127.0.0.1:8080/ in a browser. Herald runs its own threads next to the asyncio
loop; notify calls only enqueue, so they are safe to call from coroutines.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import uuid
from typing import Any, Dict

from aiohttp import web

import herald

log = logging.getLogger("webapp")

HERALD = web.AppKey("herald", herald.Server)
JOBS = web.AppKey("jobs", Dict[str, Dict[str, Any]])
SETTINGS = web.AppKey("settings", argparse.Namespace)

PAGE = """<!doctype html><meta charset=utf-8><title>Herald + aiohttp</title>
<h1>Herald + aiohttp</h1>
<form id=f><input id=p size=50 value="Write a haiku about websockets"> <button>Start job</button></form>
<pre id=log></pre>
<script>
const log = (m) => document.getElementById('log').textContent += m + '\\n';
document.getElementById('f').onsubmit = async (e) => {
  e.preventDefault();
  const session = crypto.randomUUID();
  const ws = new WebSocket(HERALD_URL + '?sessionId=' + session);
  ws.onmessage = (m) => log(m.data);
  await new Promise((ok) => ws.onopen = ok);
  const r = await fetch('/jobs', {method: 'POST', headers: {'content-type': 'application/json'},
    body: JSON.stringify({prompt: document.getElementById('p').value, session_id: session})});
  log('POST /jobs -> ' + JSON.stringify(await r.json()));
};
</script>"""


async def run_job(app: web.Application, job: Dict[str, Any]) -> None:
    """The "LLM call": streams tokens as ai_progress, then ai_complete (or ai_error)."""
    server = app[HERALD]
    session, job_id = job["session_id"], job["job_id"]
    server.notify_ai_start(session, {"jobId": job_id, "prompt": job["prompt"]})
    words = job["prompt"].split() or ["..."]
    tokens = []
    try:
        for step in range(1, job["steps"] + 1):
            await asyncio.sleep(job["delay"])  # waiting for the model
            token = words[(step - 1) % len(words)]
            tokens.append(token)
            server.notify_ai_progress(
                session, {"jobId": job_id, "step": step, "of": job["steps"], "token": token}
            )
        job["status"] = "complete"
        server.notify_ai_complete(session, {"jobId": job_id, "text": " ".join(tokens)})
    except asyncio.CancelledError:
        job["status"] = "cancelled"
        server.notify_ai_error(session, {"jobId": job_id, "message": "cancelled by the client"})
        raise
    except herald.ServerClosedError:
        job["status"] = "aborted"  # shutting down
    except Exception as exc:  # the model failed: tell the session
        job["status"] = "failed"
        log.exception("job %s failed", job_id)
        server.notify_ai_error(session, {"jobId": job_id, "message": str(exc)})


async def start_job(request: web.Request) -> web.Response:
    try:
        body = await request.json()
    except ValueError:
        raise web.HTTPBadRequest(text="expected a JSON body")
    if not isinstance(body, dict) or not isinstance(body.get("prompt"), str):
        raise web.HTTPBadRequest(text='expected {"prompt": "...", "session_id"?: "...", "steps"?: n}')
    settings = request.app[SETTINGS]
    job_id = uuid.uuid4().hex
    steps = body.get("steps", settings.steps)
    delay = body.get("delay", settings.step_delay)
    if not isinstance(steps, int) or not 1 <= steps <= 10_000 or not isinstance(delay, (int, float)) or not 0 <= delay <= 10:
        raise web.HTTPBadRequest(text="steps must be 1..10000 and delay 0..10 seconds")
    job = {
        "job_id": job_id,
        "session_id": str(body.get("session_id") or job_id),
        "prompt": body["prompt"],
        "steps": steps,
        "delay": float(delay),
        "status": "running",
    }
    request.app[JOBS][job_id] = job
    job["task"] = asyncio.create_task(run_job(request.app, job))
    ws_url = f"ws://{settings.host}:{request.app[HERALD].port}/ws?sessionId={job['session_id']}"
    return web.json_response(
        {"job_id": job_id, "session_id": job["session_id"], "status": "running", "websocket": ws_url}, status=202
    )


async def get_job(request: web.Request) -> web.Response:
    job = request.app[JOBS].get(request.match_info["job_id"])
    if job is None:
        raise web.HTTPNotFound()
    return web.json_response({k: v for k, v in job.items() if k != "task"})


async def index(request: web.Request) -> web.Response:
    url = f"ws://{request.app[SETTINGS].host}:{request.app[HERALD].port}/ws"
    return web.Response(text=PAGE.replace("HERALD_URL", repr(url)), content_type="text/html")


async def handle_events(app: web.Application, events: herald.EventStream) -> None:
    """Herald events, consumed on the asyncio loop: log connections, honour cancel requests."""
    async with events:
        async for event in events:
            if event["type"] in ("connected", "disconnected"):
                log.info("%s %s session=%s", event["type"], event["clientId"], event.get("sessionId"))
            elif event["type"] == "client_message" and event["message"].get("type") == "cancel":
                job = app[JOBS].get(str(event["message"].get("jobId")))
                if job is not None and not job["task"].done():
                    log.info("client %s cancels job %s", event["clientId"], job["job_id"])
                    job["task"].cancel()


async def herald_ctx(app: web.Application):  # type: ignore[no-untyped-def]
    settings = app[SETTINGS]
    async with herald.Server(host=settings.host, port=settings.herald_port, history={"size": 200}) as server:
        app[HERALD] = server
        # The stream is opened now (not inside the task) so no event is missed before it runs.
        events = asyncio.create_task(handle_events(app, server.events()))
        yield
        for job in app[JOBS].values():
            job["task"].cancel()
        await asyncio.gather(*(j["task"] for j in app[JOBS].values()), return_exceptions=True)
        events.cancel()
    # leaving `async with` closed Herald (flushing pending notifications); the events
    # iterator ends by itself at that point.


def make_app(settings: argparse.Namespace) -> web.Application:
    app = web.Application()
    app[SETTINGS] = settings
    app[JOBS] = {}
    app.cleanup_ctx.append(herald_ctx)
    app.router.add_get("/", index)
    app.router.add_post("/jobs", start_job)
    app.router.add_get("/jobs/{job_id}", get_job)
    return app


async def serve(settings: argparse.Namespace) -> None:
    runner = web.AppRunner(make_app(settings))
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port)
    await site.start()
    http_port = runner.addresses[0][1]
    herald_port = runner.app[HERALD].port
    print(f"webapp on http://{settings.host}:{http_port}/ ; Herald on ws://{settings.host}:{herald_port}/ws", flush=True)
    print(f"READY http_port={http_port} herald_port={herald_port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except NotImplementedError:  # Windows
            pass
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: "list[str] | None" = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080, help="HTTP port (0 = any free port)")
    parser.add_argument("--herald-port", type=int, default=3001, help="Herald WebSocket port (0 = any free port)")
    parser.add_argument("--steps", type=int, default=8, help="default number of steps per job")
    parser.add_argument("--step-delay", type=float, default=0.3, help="default seconds per step")
    settings = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    asyncio.run(serve(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
