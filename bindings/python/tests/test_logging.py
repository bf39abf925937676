"""The core's log records reach Python's `logging` under `herald.<module>`."""

from __future__ import annotations

import logging
from typing import List

import herald
from herald import _ffi

from _helpers import Client, poll_until, run


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.records: List[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def find(self, prefix: str, detail: str) -> List[logging.LogRecord]:
        return [r for r in self.records if r.getMessage().startswith(prefix) and detail in r.getMessage()]


def test_core_debug_lines_reach_python_logging(make_server) -> None:
    collect = Collect()
    logger = logging.getLogger("herald")
    logger.addHandler(collect)
    logger.setLevel(logging.DEBUG)
    try:
        herald.forward_logs(logging.DEBUG)
        server = make_server()

        async def connect_and_leave() -> str:
            async with await Client.connect(server.port, sessionId="logged") as client:
                return client.client_id

        client_id = run(connect_and_leave())
        detail = f"client={client_id}"
        (connected,) = poll_until(lambda: collect.find("client connected", detail))
        assert connected.name == "herald.connection"
        assert connected.levelno == logging.DEBUG
        assert "session=logged" in connected.getMessage()
        poll_until(lambda: collect.find("client closed", detail))

        # At WARNING, connects are no longer forwarded.
        herald.forward_logs(logging.WARNING)
        before = len(collect.records)
        run(connect_and_leave())
        poll_until(lambda: server.stats()["activeConnections"] == 0)
        assert not [r for r in collect.records[before:] if r.levelno < logging.WARNING]
    finally:
        herald.forward_logs(None)
        logger.removeHandler(collect)
        logger.setLevel(logging.NOTSET)


def test_an_invalid_level_is_refused_by_the_core() -> None:
    status = _ffi.lib().herald_set_log_handler(9, _ffi.LOG_CALLBACK(), None, _ffi.DROP_CALLBACK())
    assert status == _ffi.Status.ERR_INVALID_ARGUMENT
    assert "max_level" in _ffi.last_error()
