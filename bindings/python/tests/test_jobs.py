"""AI jobs: token streams (notify_ai_delta), the jobs snapshot a late subscriber gets first,
server.jobs(), and a browser-style cancel reaching the host as a cancel_requested event."""

from __future__ import annotations

import asyncio
from typing import Any, Dict, List

import herald
from _helpers import TIMEOUT, Client, poll_until, run


def test_a_token_stream_reaches_subscribers_and_a_late_one_starts_from_the_snapshot(server: herald.Server) -> None:
    async def body() -> None:
        early = await Client.connect(server.port, sessionId="py-s")
        server.notify_ai_start("py-s", {"jobId": "j", "prompt": "write"})
        words = [f"w{n} " for n in range(30)]
        for word in words[:15]:
            server.notify_ai_delta("py-s", {"jobId": "j", "text": word})
        got = await early.recv_n(16)
        assert [m["type"] for m in got] == ["ai_start"] + ["ai_delta"] * 15
        assert "".join(m["delta"]["text"] for m in got[1:]) == "".join(words[:15])

        late = await Client.connect(server.port)
        reply = await late.subscribe(sessionId="py-s")
        snapshot = await late.recv()
        assert snapshot["type"] == "jobs_snapshot" and snapshot["seq"] == reply["seq"], snapshot
        job = snapshot["jobs"][0]
        assert (job["jobId"], job["state"], job["task"]) == ("j", "running", {"jobId": "j", "prompt": "write"})
        text, last = job["text"], snapshot["seq"]
        for word in words[15:]:
            server.notify_ai_delta("py-s", {"jobId": "j", "text": word})
        server.notify_ai_cancelled("py-s", {"jobId": "j", "reason": "user"})
        while True:
            m = await late.recv()
            assert m["seq"] == last + 1, (m, last)
            last = m["seq"]
            if m["type"] == "ai_cancelled":
                assert m["cancelled"] == {"jobId": "j", "reason": "user"}
                break
            text += m["delta"]["text"]
        assert text == "".join(words)
        jobs = server.jobs("py-s")
        assert jobs["sessionId"] == "py-s" and jobs["seq"] == last
        assert jobs["jobs"][0]["state"] == "cancelled" and jobs["jobs"][0]["text"] == "".join(words)
        await early.close()
        await late.close()

    run(body())


def test_bad_deltas_raise(server: herald.Server) -> None:
    for bad in ({"jobId": "j"}, {"jobId": 3, "text": "x"}):
        try:
            server.notify_ai_delta("s", bad)
        except herald.InvalidArgumentError:
            continue
        raise AssertionError(f"{bad} was accepted")


def test_a_cancel_from_a_client_reaches_the_host_in_an_asyncio_stream(server: herald.Server) -> None:
    async def body() -> None:
        async with server.events() as events:
            client = await Client.connect(server.port, sessionId="py-c", userId="u")
            server.notify_ai_start("py-c", {"jobId": "long"})
            assert (await client.recv())["type"] == "ai_start"
            await client.send({"type": "cancel", "sessionId": "py-c", "jobId": "long"})
            async def cancel_requested() -> Dict[str, Any]:
                async for event in events:
                    if event["type"] == "cancel_requested":
                        return event
                raise AssertionError("the stream ended")
            event = await asyncio.wait_for(cancel_requested(), TIMEOUT)
            assert (event["sessionId"], event["jobId"], event["userId"]) == ("py-c", "long", "u")
            assert event["clientId"] == client.client_id
            # The host stops the job and says so.
            server.notify_ai_cancelled(event["sessionId"], {"jobId": event["jobId"]})
            ended = await client.recv()
            assert ended["type"] == "ai_cancelled" and ended["cancelled"] == {"jobId": "long"}
            await client.close()

    run(body())


def test_jobs_expire_after_their_ttl(make_server: Any) -> None:
    server = make_server(jobs={"ttl_ms": 200, "max_per_session": 4})
    server.notify_ai_start("py-t", {})
    server.notify_ai_complete("py-t", {"ok": True})
    poll_until(lambda: server.jobs("py-t")["jobs"] and server.jobs("py-t")["jobs"][0]["state"] == "complete")
    poll_until(lambda: server.jobs("py-t")["jobs"] == [])
