from __future__ import annotations

from typing import Any, Callable, Iterator, List

import pytest

import herald


@pytest.fixture
def make_server() -> Iterator[Callable[..., herald.Server]]:
    """Factory starting real servers on free ports; every one is closed at teardown."""
    servers: List[herald.Server] = []

    def make(**config: Any) -> herald.Server:
        config.setdefault("port", 0)
        server = herald.Server(**config)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.close(timeout=10)


@pytest.fixture
def server(make_server: Callable[..., herald.Server]) -> herald.Server:
    return make_server()
