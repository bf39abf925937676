"""Events: the dispatcher the core's event callback feeds, and :class:`EventStream`."""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import threading
from typing import TYPE_CHECKING, Any, AsyncIterator, Callable, Deque, Dict, Iterator, List, Optional, Tuple

from .errors import InvalidArgumentError, StoppedError

if TYPE_CHECKING:  # pragma: no cover
    from ._server import Server

logger = logging.getLogger("herald")

#: An event delivered to the host, e.g. ``{"type": "connected", "clientId": ..., ...}``.
Event = Dict[str, Any]


class _Dispatcher:
    """Fans an event out to the ``on_event`` callback and the open :class:`EventStream` s."""

    def __init__(self) -> None:
        self.callback: Optional[Callable[[Event], Any]] = None
        self._lock = threading.Lock()
        self._streams: List["EventStream"] = []
        self.ended = False

    def add(self, stream: "EventStream") -> bool:
        with self._lock:
            if self.ended:
                return False
            self._streams.append(stream)
            return True

    def remove(self, stream: "EventStream") -> None:
        with self._lock:
            try:
                self._streams.remove(stream)
            except ValueError:
                pass

    def dispatch(self, raw: bytes) -> None:
        text = raw.decode("utf-8", "replace")
        with self._lock:
            streams = list(self._streams)
        for stream in streams:
            # Each consumer gets its own parsed copy, so one cannot mutate another's event.
            stream._push(json.loads(text))
        callback = self.callback
        if callback is not None:
            try:
                callback(json.loads(text))
            except Exception:
                logger.exception("herald: on_event callback %r raised; the event is dropped", callback)

    def end(self) -> None:
        with self._lock:
            self.ended = True
            streams = list(self._streams)
            self._streams.clear()
        for stream in streams:
            stream._end()


def _wake(fut: "asyncio.Future[None]") -> None:
    if not fut.done():
        fut.set_result(None)


class EventStream:
    """Events of one :class:`Server`, as an iterator *and* an async iterator.

    Created by :meth:`Server.events`; it buffers every event from the moment it is created, so
    nothing is missed between creating it and starting to iterate. Iteration ends when the
    server is closed (after the buffered events are consumed) or when the stream is closed.

    Synchronous use (blocks the calling thread)::

        with server.events() as events:
            for event in events:
                ...

    Asynchronous use (never blocks the event loop; works with any number of loops/threads)::

        async with server.events() as events:
            async for event in events:
                ...

    Events are pushed from Herald's event thread without blocking it. If more than
    ``max_pending`` events are waiting, the oldest are dropped (counted in :attr:`dropped`,
    with a warning logged).
    """

    def __init__(self, server: "Server", max_pending: int = 10_000) -> None:
        if max_pending < 1:
            raise InvalidArgumentError("max_pending must be >= 1")
        self._server = server  # keeps the server alive while the stream is in use
        self._max_pending = max_pending
        self._cond = threading.Condition(threading.Lock())
        self._items: Deque[Event] = collections.deque()
        self._waiters: List[Tuple[asyncio.AbstractEventLoop, "asyncio.Future[None]"]] = []
        self._ended = False
        self._closed = False
        #: Number of events dropped because more than ``max_pending`` were waiting.
        self.dropped = 0
        if not server._dispatcher.add(self):
            self._ended = True

    # -- producer side (Herald's event thread) --------------------------------------------

    def _push(self, event: Event) -> None:
        with self._cond:
            if self._ended or self._closed:
                return
            overflow = len(self._items) >= self._max_pending
            if overflow:
                self._items.popleft()
                self.dropped += 1
            self._items.append(event)
            self._cond.notify_all()
            waiters, self._waiters = self._waiters, []
        if overflow:
            logger.warning("herald: event stream overflow (max_pending=%d); oldest event dropped", self._max_pending)
        self._wake_async(waiters)

    def _end(self) -> None:
        with self._cond:
            self._ended = True
            self._cond.notify_all()
            waiters, self._waiters = self._waiters, []
        self._wake_async(waiters)

    @staticmethod
    def _wake_async(waiters: List[Tuple[asyncio.AbstractEventLoop, "asyncio.Future[None]"]]) -> None:
        for loop, fut in waiters:
            try:
                loop.call_soon_threadsafe(_wake, fut)
            except RuntimeError:  # that loop is closed; nobody is waiting any more
                pass

    # -- consumer side --------------------------------------------------------------------

    def get(self, timeout: Optional[float] = None) -> Event:
        """Return the next event, blocking the calling thread.

        Raises:
            TimeoutError: no event arrived within ``timeout`` seconds.
            StoppedError: the stream is exhausted (server closed, or stream closed).
        """
        with self._cond:
            ready = self._cond.wait_for(lambda: self._items or self._ended or self._closed, timeout)
            if not ready:
                raise TimeoutError(f"no Herald event within {timeout} s")
            if self._items:
                return self._items.popleft()
        raise StoppedError("event stream is closed")

    async def aget(self, timeout: Optional[float] = None) -> Event:
        """Return the next event without blocking the running event loop.

        Cancelling the awaiting task never loses an event.

        Raises:
            TimeoutError: no event arrived within ``timeout`` seconds.
            StoppedError: the stream is exhausted (server closed, or stream closed).
        """
        if timeout is None:
            return await self._next_async()
        return await asyncio.wait_for(self._next_async(), timeout)

    async def _next_async(self) -> Event:
        loop = asyncio.get_running_loop()
        while True:
            with self._cond:
                if self._items:
                    return self._items.popleft()
                if self._ended or self._closed:
                    raise StoppedError("event stream is closed")
                fut: "asyncio.Future[None]" = loop.create_future()
                self._waiters.append((loop, fut))
            try:
                await fut
            finally:
                if not fut.done():  # cancelled: unregister so the producer does not wake it
                    with self._cond:
                        try:
                            self._waiters.remove((loop, fut))
                        except ValueError:
                            pass

    def __iter__(self) -> Iterator[Event]:
        return self

    def __next__(self) -> Event:
        try:
            return self.get()
        except StoppedError:
            raise StopIteration from None

    def __aiter__(self) -> AsyncIterator[Event]:
        return self

    async def __anext__(self) -> Event:
        try:
            return await self._next_async()
        except StoppedError:
            raise StopAsyncIteration from None

    def pending(self) -> int:
        """Number of buffered events not consumed yet."""
        with self._cond:
            return len(self._items)

    def close(self) -> None:
        """Stop receiving events; iteration ends once the buffered events are consumed."""
        self._server._dispatcher.remove(self)
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            waiters, self._waiters = self._waiters, []
        self._wake_async(waiters)

    async def aclose(self) -> None:
        """Async alias of :meth:`close`."""
        self.close()

    def __enter__(self) -> "EventStream":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    async def __aenter__(self) -> "EventStream":
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        self.close()
