"""`GET /metrics` read with prometheus_client's own parser and checked against stats."""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from typing import Dict, Optional, Tuple

from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from _helpers import Client, TIMEOUT, poll_until, run

ADMIN_TOKEN = "metrics-admin-token-0123456789"
# Stats keys that change between two reads on an idle server: the scrape is a socket.
MOVING = {"openSockets", "uptimeMs"}


def scrape(port: int, token: Optional[str] = ADMIN_TOKEN) -> Tuple[int, str, str]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers["Content-Type"], e.read().decode()


def families(port: int) -> Dict[str, Metric]:
    status, content_type, body = scrape(port)
    assert status == 200, body
    assert content_type.startswith("text/plain; version=0.0.4"), content_type
    return {family.name: family for family in text_string_to_metric_families(body)}


def metric_name(stats_key: str) -> str:
    """`totalConnections` -> `herald_connections`, `messagesSent` -> `herald_messages_sent`."""
    snake = re.sub(r"([A-Z])", r"_\1", stats_key).lower()
    return "herald_" + snake.removeprefix("total_")


def test_every_numeric_stats_key_is_a_metric_with_the_same_value(make_server) -> None:
    server = make_server(admin_token=ADMIN_TOKEN)

    async def traffic() -> None:
        async with await Client.connect(server.port, sessionId="job") as client:
            for step in range(3):
                server.notify_ai_progress("job", {"step": step})
            assert [m["type"] for m in await client.recv_n(3)] == ["ai_progress"] * 3
            await client.send({"no": "type"})
            assert (await client.recv())["type"] == "error"
            # connection + 3 publications + the error reply, all written.
            poll_until(lambda: server.stats()["messagesSent"] == 5)
            stats = server.stats()
            metrics = families(server.port)

            numeric = {k: v for k, v in stats.items() if isinstance(v, int) and not isinstance(v, bool)}
            assert numeric["publications"] == 3 and numeric["invalidMessages"] == 1
            for key, value in numeric.items():
                if key in ("clientsListed", "port"):
                    continue
                name = metric_name(key)
                assert name in metrics, f"stats key {key} has no metric {name}"
                (sample,) = metrics[name].samples
                if key not in MOVING:
                    assert sample.value == value, (key, sample, value)
            assert metrics["herald_connections"].type == "counter"
            assert metrics["herald_connections"].samples[0].name == "herald_connections_total"
            assert metrics["herald_active_connections"].type == "gauge"
            assert metrics["herald_active_connections"].samples[0].value == 1

            latency = metrics["herald_publish_to_write_seconds"]
            assert latency.type == "histogram"
            samples = {s.name: s for s in latency.samples if not s.name.endswith("_bucket")}
            buckets = [s for s in latency.samples if s.name.endswith("_bucket")]
            count = samples["herald_publish_to_write_seconds_count"].value
            # At least one write completed a publication; at most one observation each.
            assert 1 <= count <= 3, count
            assert buckets[-1].labels["le"] == "+Inf" and buckets[-1].value == count
            values = [b.value for b in buckets]
            assert values == sorted(values)
            assert 0 <= samples["herald_publish_to_write_seconds_sum"].value < TIMEOUT * count

    run(traffic())


def test_metrics_are_protected_like_stats(make_server) -> None:
    server = make_server(admin_token=ADMIN_TOKEN)
    assert scrape(server.port, token=None)[0] == 401
    assert scrape(server.port, token="wrong-token-wrong-token-wrong")[0] == 401
    assert scrape(server.port)[0] == 200

    secure = make_server(auth={"required": True, "jwt_secret": "s" * 32})
    status, _, _ = scrape(secure.port, token=None)
    assert status == 401, "secure mode without an admin token never hands out metrics"
