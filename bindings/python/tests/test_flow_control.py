"""Flow control: a host that publishes faster than its clients read waits with
``drain()`` / ``wait_drained()`` instead of getting its clients evicted."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Callable, List

import pytest

import herald
from _helpers import Client, run

QUEUE = 64
MESSAGES = 2000
# A quarter of the queue: after a drain a client holds at most that many, so one more
# batch keeps it at half of its budget, far from eviction.
BATCH = QUEUE // 4


def test_drain_paces_a_burst_to_a_slow_reader(make_server: Callable[..., herald.Server]) -> None:
    server = make_server(client_queue_size=QUEUE)

    async def body() -> None:
        client = await Client.connect(server.port)
        await client.subscribe(channel="burst")

        async def read_slowly() -> List[int]:
            seen: List[int] = []
            while len(seen) < MESSAGES:
                seen.append((await client.recv())["n"])
                if len(seen) % 100 == 0:
                    await asyncio.sleep(0.01)  # a reader slower than the host
            return seen

        reader = asyncio.create_task(read_slowly())
        started = time.monotonic()
        for n in range(1, MESSAGES + 1):
            server.publish("burst", {"n": n, "pad": "x" * 200})
            if n % BATCH == 0:
                await server.drain(timeout=10)
        await server.drain(timeout=10)
        seen = await asyncio.wait_for(reader, 30)
        assert seen == list(range(1, MESSAGES + 1))
        stats: Any = server.stats()
        assert stats["evictions"] == 0, stats
        assert stats["backpressure"] is False, stats
        assert stats["backloggedClients"] == 0, stats
        assert server.backpressure is False
        assert time.monotonic() - started < 30
        await client.close()

    run(body())


def test_wait_drained_looks_waits_and_checks_its_arguments(make_server: Callable[..., herald.Server]) -> None:
    server = make_server(client_queue_size=QUEUE)
    assert server.backpressure is False
    server.wait_drained(timeout=0)  # nothing published: drained at once
    server.wait_drained()  # the default timeout
    with pytest.raises(herald.InvalidArgumentError):
        server.wait_drained(timeout=-1)
    server.close()
    with pytest.raises(herald.StoppedError):
        server.wait_drained(timeout=1)
    with pytest.raises(herald.StoppedError):
        server.backpressure
