"""Many threads and asyncio: nothing lost, nothing reordered per thread, errors stay per thread."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import defaultdict
from typing import Any, Dict, List

import herald
from _helpers import TIMEOUT, Client, run

THREADS = 8
PER_THREAD = 250


def test_eight_threads_notifying_at_once_lose_and_reorder_nothing(make_server: Any) -> None:
    total = THREADS * PER_THREAD
    server = make_server(client_queue_size=4 * total, publish_queue_size=4 * total)
    errors: List[BaseException] = []

    def worker(i: int, barrier: threading.Barrier) -> None:
        try:
            barrier.wait(TIMEOUT)
            for n in range(PER_THREAD):
                server.notify_ai_progress("load", {"thread": i, "n": n})
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    async def body() -> List[Dict[str, Any]]:
        c = await Client.connect(server.port, sessionId="load")
        barrier = threading.Barrier(THREADS)
        threads = [threading.Thread(target=worker, args=(i, barrier)) for i in range(THREADS)]
        for t in threads:
            t.start()
        got = await c.recv_n(total)
        for t in threads:
            await asyncio.to_thread(t.join, TIMEOUT)
            assert not t.is_alive()
        await c.close()
        return got

    got = run(body())
    assert errors == []
    per_thread: Dict[int, List[int]] = defaultdict(list)
    for msg in got:
        assert msg["type"] == "ai_progress" and msg["sessionId"] == "load", msg
        per_thread[msg["progress"]["thread"]].append(msg["progress"]["n"])
    assert sorted(per_thread) == list(range(THREADS))
    for i, ns in per_thread.items():
        assert ns == list(range(PER_THREAD)), f"thread {i} lost or reordered messages"
    seqs = [m["seq"] for m in got]
    assert seqs == sorted(seqs) and len(set(seqs)) == total


def test_errors_are_reported_to_the_thread_that_failed(server: herald.Server) -> None:
    # herald_last_error is per OS thread: each thread must see its own failure's message,
    # even while other threads fail differently or succeed at the same time.
    results: Dict[int, List[Any]] = defaultdict(list)
    barrier = threading.Barrier(THREADS)

    def worker(i: int) -> None:
        barrier.wait(TIMEOUT)
        for _ in range(50):
            try:
                if i % 2:
                    server.send(f"ghost-{i}", {"type": "x"})
                else:
                    server.publish(f"chan-{i}", "[not an object]")
            except herald.HeraldError as exc:
                results[i].append(exc)
            server.broadcast({"type": "noise", "from": i})  # a success in between

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT)
        assert not t.is_alive()
    for i in range(THREADS):
        assert len(results[i]) == 50
        first = results[i][0]
        for exc in results[i]:
            if i % 2:
                assert isinstance(exc, herald.UnknownClientError)
            else:
                assert isinstance(exc, herald.InvalidArgumentError) and not isinstance(exc, herald.UnknownClientError)
            assert exc.message == first.message and exc.message, (i, exc.message, first.message)


def test_usable_from_asyncio_and_worker_threads_at_once(server: herald.Server) -> None:
    async def body() -> None:
        c = await Client.connect(server.port, sessionId="mix")

        def from_thread(k: int) -> None:
            server.notify_ai_progress("mix", {"src": "thread", "k": k})

        for k in range(20):
            server.notify_ai_progress("mix", {"src": "loop", "k": k})
            await asyncio.to_thread(from_thread, k)
        got = await c.recv_n(40)
        loop_ks = [m["progress"]["k"] for m in got if m["progress"]["src"] == "loop"]
        thread_ks = [m["progress"]["k"] for m in got if m["progress"]["src"] == "thread"]
        assert loop_ks == list(range(20)) and thread_ks == list(range(20))
        await c.close()

    run(body())


def test_close_while_threads_are_notifying(make_server: Any) -> None:
    server = make_server()
    outcomes: Dict[int, List[str]] = defaultdict(list)
    started = threading.Barrier(THREADS + 1)

    def worker(i: int) -> None:
        started.wait(TIMEOUT)
        deadline = time.monotonic() + TIMEOUT
        n = 0
        while time.monotonic() < deadline:  # bounded: ends at close() (or fails the test)
            n += 1
            try:
                server.notify_ai_progress(f"s{i}", {"n": n})
            except herald.ServerClosedError:
                outcomes[i].append("closed")
                return
            except herald.QueueFullError:
                outcomes[i].append("full")  # allowed: the core may push back; keep going
            except BaseException as exc:  # noqa: BLE001
                outcomes[i].append(f"unexpected {exc!r}")
                return
        outcomes[i].append("never saw the close")

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    started.wait(TIMEOUT)
    server.close(timeout=10)
    for t in threads:
        t.join(TIMEOUT + 5)
        assert not t.is_alive()
    for i in range(THREADS):
        assert outcomes[i] and outcomes[i][-1] == "closed", outcomes[i][-3:]
