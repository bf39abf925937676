"""Issue 7 through the Python binding: JWTs, channel rules, the host authorizer, origins, TLS,
rate and connection limits. Real servers, real `websockets` clients, real HS256 tokens.

Every wait is bounded; nothing asserts how fast something happens.
"""

from __future__ import annotations

import asyncio
import json
import logging
import queue
import ssl
import threading
import time
import urllib.error
import urllib.request
from email.message import Message
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple
from urllib.parse import urlencode

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

import herald
from _helpers import TIMEOUT, Client, poll_until, run
from _jwt import SECRET, have_openssl, sign_rs256, token

REPO = Path(__file__).resolve().parents[3]
FIXTURES = REPO / "tests" / "fixtures"

JWT_AUTH: Dict[str, Any] = {"jwt_secret": SECRET, "required": True}


# -- helpers ---------------------------------------------------------------------------------


async def open_ws(
    port: int,
    *,
    scheme: str = "ws",
    ssl_ctx: Optional[ssl.SSLContext] = None,
    origin: Optional[str] = None,
    headers: Optional[Dict[str, str]] = None,
    **params: str,
) -> ClientConnection:
    url = f"{scheme}://127.0.0.1:{port}/ws"
    if params:
        url += "?" + urlencode(params)
    extra: Dict[str, Any] = {"ssl": ssl_ctx} if ssl_ctx is not None else {}
    return await connect(
        url,
        open_timeout=TIMEOUT,
        close_timeout=5,
        max_size=None,
        proxy=None,
        origin=origin,  # type: ignore[arg-type]
        additional_headers=headers,
        **extra,
    )


async def connect_ok(port: int, **kw: Any) -> Client:
    """Connect and read the `connection` hello (the client was let in)."""
    ws = await open_ws(port, **kw)
    hello = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
    assert hello["type"] == "connection", hello
    return Client(ws, hello)


async def expect_unauthorized(port: int, **kw: Any) -> None:
    """The WebSocket handshake completes, then the server closes with 1008 "Unauthorized"."""
    ws = await open_ws(port, **kw)
    try:
        msg = await asyncio.wait_for(ws.recv(), TIMEOUT)
    except ConnectionClosed:
        pass
    else:
        raise AssertionError(f"an unauthorized client received {msg!r}")
    assert (ws.close_code, ws.close_reason) == (1008, "Unauthorized")


async def expect_refused(port: int, **kw: Any) -> None:
    """The connection or its handshake fails (not a hang: a timeout is a failure)."""
    try:
        ws = await open_ws(port, **kw)
    except asyncio.TimeoutError:
        raise AssertionError("the connection attempt hung instead of being refused") from None
    except (WebSocketException, OSError, EOFError):
        return
    await ws.close()
    raise AssertionError("the connection was accepted")


async def next_event(events: herald.EventStream, kind: str, **match: Any) -> Dict[str, Any]:
    """The next event of type `kind` whose fields include `match` (bounded wait)."""
    seen: List[Dict[str, Any]] = []
    while True:
        try:
            event = await events.aget(TIMEOUT)
        except TimeoutError:
            raise AssertionError(f"no {kind} event matching {match}; saw {seen}") from None
        if event["type"] == kind and all(event.get(k) == v for k, v in match.items()):
            return event
        seen.append(event)


async def expect_error(client: Client, code: str) -> Dict[str, Any]:
    msg = await client.recv()
    assert msg["type"] == "error" and msg["error"]["code"] == code, msg
    return msg


async def still_served(client: Client) -> None:
    await client.send({"type": "ping"})
    assert (await client.recv())["type"] == "pong"


def stat(server: herald.Server, key: str, at_least: int = 1) -> int:
    """Wait until a stats counter reaches `at_least` (counters may trail the client's view)."""
    value: int = poll_until(lambda: server.stats()[key] >= at_least and server.stats()[key])
    return value


# -- JWT -------------------------------------------------------------------------------------


def test_valid_token_connects_and_gets_broadcast_to_user_for_its_sub(make_server: Any) -> None:
    server = make_server(auth=JWT_AUTH)

    async def body() -> None:
        async with server.events() as events:
            # ?userId is ignored in secure mode: the token's sub decides.
            alice = await connect_ok(server.port, token=token("alice"), userId="mallory")
            connected = await next_event(events, "connected", clientId=alice.client_id)
            assert connected["userId"] == "alice", connected
            # `connected` comes after the user channel subscription exists: no race.
            server.broadcast_to_user("mallory", {"type": "dm", "text": "not for alice"})
            server.broadcast_to_user("alice", {"type": "dm", "text": "hi alice"})
            msg = await alice.recv()
            assert msg["type"] == "dm" and msg["text"] == "hi alice" and msg["channel"] == "user:alice", msg

            # The same token in an Authorization header works too.
            bob = await connect_ok(server.port, headers={"Authorization": f"Bearer {token('bob')}"})
            connected = await next_event(events, "connected", clientId=bob.client_id)
            assert connected["userId"] == "bob", connected
            server.broadcast_to_user("bob", {"type": "dm", "text": "hi bob"})
            assert (await bob.recv())["text"] == "hi bob"
            await alice.close()
            await bob.close()

    run(body())
    assert server.stats()["authFailures"] == 0


# The JWT rules (expiry, nbf, algorithms, tampering, issuer and audience, channel patterns) are
# tested in the core (tests/auth.rs); these tests check that the settings reach it.


def test_a_token_the_core_refuses_is_closed_with_1008_unauthorized(make_server: Any) -> None:
    server = make_server(auth=JWT_AUTH)
    forged = token("alice", secret="some-other-secret-0123456789")

    async def body() -> None:
        await expect_unauthorized(server.port, sessionId="s")  # auth.required
        await expect_unauthorized(server.port, token=forged)  # auth.jwt_secret
        good = await connect_ok(server.port, token=token("alice"))
        await still_served(good)
        await good.close()

    run(body())
    assert stat(server, "authFailures", 2) == 2
    assert server.stats()["totalConnections"] == 1  # only the good one


def test_without_required_a_client_without_token_is_anonymous(make_server: Any) -> None:
    server = make_server(auth={"jwt_secret": SECRET, "public_channels": ["news"]})

    async def body() -> None:
        async with server.events() as events:
            anon = await connect_ok(server.port, userId="mallory")  # ?userId is still ignored
            assert (await next_event(events, "connected", clientId=anon.client_id))["userId"] is None
            await anon.subscribe(channel="news")
            await anon.send({"type": "subscribe", "channel": "user:mallory"})
            await expect_error(anon, "forbidden")
            await anon.close()
        await expect_unauthorized(server.port, token="not-a-jwt")  # a bad token is still refused

    run(body())


ISSUER_AUDIENCE = {**JWT_AUTH, "jwt_issuer": "https://login.example", "jwt_audience": "herald"}
GOOD_ISS_AUD = {"iss": "https://login.example", "aud": "herald"}


def test_issuer_and_audience_reach_the_core(make_server: Any) -> None:
    server = make_server(auth=ISSUER_AUDIENCE)

    async def body() -> None:
        c = await connect_ok(server.port, token=token("alice", **GOOD_ISS_AUD))
        await c.close()
        await expect_unauthorized(server.port, token=token("alice", **{**GOOD_ISS_AUD, "iss": "https://evil.example"}))

    run(body())


@pytest.mark.skipif(not have_openssl(), reason="needs the openssl command to sign RS256")
def test_rs256_token_verified_with_the_public_key(make_server: Any) -> None:
    public_pem = (FIXTURES / "rsa_public.pem").read_text()
    server = make_server(auth={"jwt_public_key": public_pem, "required": True})
    now = int(time.time())
    rs256 = sign_rs256({"sub": "rita", "exp": now + 3600}, FIXTURES / "rsa_private.pem")

    async def body() -> None:
        async with server.events() as events:
            c = await connect_ok(server.port, token=rs256)
            assert (await next_event(events, "connected", clientId=c.client_id))["userId"] == "rita"
            await c.close()

    run(body())


def test_the_tokens_channels_and_public_channels_reach_the_core(make_server: Any) -> None:
    server = make_server(auth={**JWT_AUTH, "public_channels": ["news"]})

    async def body() -> None:
        alice = await connect_ok(server.port, token=token("alice", channels=["session:alice-*"]))
        await alice.subscribe(sessionId="alice-1")  # the token's channels claim
        await alice.subscribe(channel="news")  # auth.public_channels
        await alice.send({"type": "subscribe", "channel": "secret"})
        await expect_error(alice, "forbidden")
        await still_served(alice)
        await alice.close()

    run(body())
    assert stat(server, "forbidden") == 1


# -- the host authorizer ---------------------------------------------------------------------


def test_authorizer_allows_and_denies_connect_and_subscribe(make_server: Any) -> None:
    server = make_server()
    requests: List[herald.AuthRequest] = []
    threads: List[int] = []
    event_threads: List[int] = []

    def authorize(req: herald.AuthRequest) -> Any:
        requests.append(req)
        threads.append(threading.get_ident())
        if req.type == "connect":
            if req.query.get("key") == "open-sesame":
                return herald.AuthDecision(True, user_id="carol", channels=["team:*"])
            return herald.AuthDecision(False, reason="bad key")
        assert req.type == "subscribe"
        if req.channel == "vip":
            return False
        return {"allow": True}  # the core's JSON form works too

    server.on_event(lambda event: event_threads.append(threading.get_ident()))
    server.set_authorizer(authorize)

    async def body() -> None:
        async with server.events() as events:
            carol = await connect_ok(
                server.port,
                origin="https://app.example",
                headers={"X-Api-Key": "k1"},
                key="open-sesame",
                token="opaque",
                userId="ignored",
            )
            connected = await next_event(events, "connected", clientId=carol.client_id)
            assert connected["userId"] == "carol", connected  # from the decision
            server.broadcast_to_user("carol", {"type": "dm"})
            assert (await carol.recv())["type"] == "dm"

            await carol.subscribe(channel="team:blue")  # granted on connect: not asked again
            await carol.send({"type": "subscribe", "channel": "vip"})
            await expect_error(carol, "forbidden")
            await carol.subscribe(channel="lobby")
            await still_served(carol)

            await expect_unauthorized(server.port, key="wrong")
            await carol.close()

    run(body())
    kinds = [(r.type, r.channel) for r in requests]
    assert kinds == [("connect", None), ("subscribe", "vip"), ("subscribe", "lobby"), ("connect", None)], kinds
    connect_req, vip = requests[0], requests[1]
    assert isinstance(connect_req.id, int) and connect_req.id != vip.id
    assert connect_req.token == "opaque" and connect_req.token_user_id is None
    assert connect_req.query["key"] == "open-sesame" and connect_req.query["userId"] == "ignored"
    assert connect_req.headers["x-api-key"] == "k1"  # names in lower case
    assert connect_req.origin == "https://app.example"
    assert connect_req.remote_addr and connect_req.remote_addr.startswith("127.0.0.1:")
    assert "opaque" not in repr(connect_req)  # credentials stay out of repr()
    assert vip.client_id and vip.user_id == "carol" and vip.remote_addr is None
    # A Herald worker thread: neither this thread nor the event thread.
    assert threading.get_ident() not in threads
    assert event_threads and not set(threads) & set(event_threads)


def test_authorizer_sees_the_verified_token_user(make_server: Any) -> None:
    server = make_server(auth={"jwt_secret": SECRET})
    seen: "queue.Queue[herald.AuthRequest]" = queue.Queue()

    def authorize(req: herald.AuthRequest) -> bool:
        seen.put(req)
        return req.token_user_id == "alice"

    server.set_authorizer(authorize)

    async def body() -> None:
        alice = await connect_ok(server.port, token=token("alice"))
        await expect_unauthorized(server.port, token=token("bob"))
        await alice.close()

    run(body())
    assert seen.get(timeout=TIMEOUT).token_user_id == "alice"


def test_deferred_answers_from_another_thread(make_server: Any) -> None:
    server = make_server()
    asked: "queue.Queue[herald.AuthRequest]" = queue.Queue()
    errors: List[BaseException] = []
    server.set_authorizer(lambda req: asked.put(req))  # returns None: answered later

    def answer() -> None:  # the host's own thread, e.g. after a database lookup
        try:
            for _ in range(2):
                req = asked.get(timeout=TIMEOUT)
                if req.query.get("who") == "dave":
                    server.authorize_reply(req, herald.AuthDecision(True, user_id="dave"))
                else:
                    server.authorize_reply(req.id, False)
                # A second answer is refused: the request is settled.
                with pytest.raises(herald.InvalidArgumentError):
                    server.authorize_reply(req, True)
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            errors.append(exc)

    worker = threading.Thread(target=answer)
    worker.start()

    async def body() -> None:
        async with server.events() as events:
            dave = await connect_ok(server.port, who="dave")
            connected = await next_event(events, "connected", clientId=dave.client_id)
            assert connected["userId"] == "dave"
            await expect_unauthorized(server.port, who="eve")
            await dave.close()

    run(body())
    worker.join(TIMEOUT)
    assert not worker.is_alive() and not errors, errors


def test_unanswered_request_is_denied_after_the_timeout(make_server: Any) -> None:
    server = make_server(auth={"authorizer_timeout_ms": 300})
    asked: "queue.Queue[herald.AuthRequest]" = queue.Queue()
    server.set_authorizer(lambda req: asked.put(req))  # never answers

    run(expect_unauthorized(server.port))
    req = asked.get(timeout=TIMEOUT)
    with pytest.raises(herald.InvalidArgumentError) as info:
        server.authorize_reply(req, True)  # too late
    assert info.value.status == herald.Status.ERR_INVALID_ARGUMENT


def test_an_authorizer_that_raises_denies_and_logs(make_server: Any, caplog: pytest.LogCaptureFixture) -> None:
    server = make_server()

    def authorize(req: herald.AuthRequest) -> bool:
        if req.type == "connect" and req.query.get("ok") != "1":
            raise RuntimeError("database is down")
        if req.type == "subscribe":
            raise KeyError(req.channel)
        return True

    server.set_authorizer(authorize)

    async def body() -> None:
        await expect_unauthorized(server.port)
        ok = await connect_ok(server.port, ok="1")
        await ok.send({"type": "subscribe", "channel": "anything"})
        await expect_error(ok, "forbidden")
        await still_served(ok)
        await ok.close()

    with caplog.at_level(logging.ERROR, logger="herald"):
        run(body())
    raised = [r for r in caplog.records if r.name == "herald" and "raised" in r.getMessage()]
    assert len(raised) == 2, [r.getMessage() for r in caplog.records]
    assert raised[0].exc_info and isinstance(raised[0].exc_info[1], RuntimeError)
    assert "denied" in raised[0].getMessage()


def test_invalid_decisions_are_denied_and_logged(make_server: Any, caplog: pytest.LogCaptureFixture) -> None:
    server = make_server()
    answers: Dict[str, Any] = {
        "str": "yes",  # not a decision
        "empty-user": herald.AuthDecision(True, user_id=""),  # rejected by the core
        "int-allow": {"allow": 1},  # rejected by the core
    }
    server.set_authorizer(lambda req: answers[req.query["case"]])

    async def body() -> None:
        for case in answers:
            await expect_unauthorized(server.port, case=case)

    with caplog.at_level(logging.ERROR, logger="herald"):
        run(body())
    assert len([r for r in caplog.records if r.name == "herald" and "denied" in r.getMessage()]) == 3

    # The same mistakes in authorize_reply raise.
    with pytest.raises(herald.InvalidArgumentError):
        server.authorize_reply(1, "yes")
    with pytest.raises(herald.InvalidJsonError):
        server.authorize_reply(1, {"allow": 1})
    with pytest.raises(herald.InvalidArgumentError):
        server.authorize_reply(True, True)
    with pytest.raises(herald.InvalidArgumentError):
        server.authorize_reply(-1, True)
    with pytest.raises(herald.InvalidArgumentError) as info:
        server.authorize_reply(987654321, True)  # no such request
    assert info.value.status == herald.Status.ERR_INVALID_ARGUMENT


def test_async_authorizer_runs_on_the_event_loop(make_server: Any, caplog: pytest.LogCaptureFixture) -> None:
    server = make_server()
    loops: List[asyncio.AbstractEventLoop] = []

    async def authorize(req: herald.AuthRequest) -> Any:
        loops.append(asyncio.get_running_loop())
        await asyncio.sleep(0)  # e.g. an async database call
        if req.query.get("who") == "boom":
            raise ValueError("async failure")
        return herald.AuthDecision(req.query.get("who") == "frank", user_id="frank")

    with pytest.raises(herald.InvalidArgumentError):
        server.set_authorizer(authorize)  # no running loop here, and none given

    async def body() -> None:
        server.set_authorizer(authorize)  # uses the running loop
        async with server.events() as events:
            frank = await connect_ok(server.port, who="frank")
            assert (await next_event(events, "connected", clientId=frank.client_id))["userId"] == "frank"
            await expect_unauthorized(server.port, who="grace")
            await expect_unauthorized(server.port, who="boom")
            await frank.close()

    with caplog.at_level(logging.ERROR, logger="herald"):
        run(body())
    assert loops and all(loop is loops[0] for loop in loops)
    assert any("async authorizer raised" in r.getMessage() for r in caplog.records)


def test_async_authorizer_on_a_given_loop_with_a_deferred_answer(make_server: Any) -> None:
    server = make_server()
    loop = asyncio.new_event_loop()
    runner = threading.Thread(target=loop.run_forever, daemon=True)
    runner.start()
    pending: "queue.Queue[herald.AuthRequest]" = queue.Queue()

    async def authorize(req: herald.AuthRequest) -> None:
        assert asyncio.get_running_loop() is loop
        pending.put(req)  # answered later, from another thread
        return None

    try:
        server.set_authorizer(authorize, loop=loop)

        async def body() -> None:
            async def answer() -> None:
                req = await asyncio.to_thread(pending.get, True, TIMEOUT)
                server.authorize_reply(req, True)

            answering = asyncio.create_task(answer())
            c = await connect_ok(server.port)
            await answering
            await c.close()

        run(body())
    finally:
        server.close()
        loop.call_soon_threadsafe(loop.stop)
        runner.join(TIMEOUT)
        loop.close()


def test_clearing_the_authorizer_returns_to_open_mode(make_server: Any) -> None:
    server = make_server()
    with pytest.raises(herald.InvalidArgumentError):
        server.set_authorizer("not callable")
    server.set_authorizer(lambda req: False)

    async def body() -> None:
        await expect_unauthorized(server.port)
        server.set_authorizer(None)
        async with server.events() as events:
            c = await connect_ok(server.port, userId="zed")  # open mode: ?userId is honoured
            assert (await next_event(events, "connected", clientId=c.client_id))["userId"] == "zed"
            await c.close()

    run(body())
    server.close()
    with pytest.raises(herald.ServerClosedError):
        server.set_authorizer(lambda req: True)
    with pytest.raises(herald.ServerClosedError):
        server.authorize_reply(1, True)


def test_close_from_inside_the_authorizer(make_server: Any) -> None:
    server = make_server()
    outcome: List[Any] = []
    done = threading.Event()

    def authorize(req: herald.AuthRequest) -> bool:
        try:
            outcome.append(server.close(timeout=5))
        except BaseException as exc:  # noqa: BLE001 - reported below
            outcome.append(exc)
        done.set()
        return True

    server.set_authorizer(authorize)

    async def body() -> None:
        ws = await open_ws(server.port)
        assert await asyncio.to_thread(done.wait, TIMEOUT), "close() from the authorizer did not return"
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), TIMEOUT)  # nothing is sent to it: the server stops

    run(body())
    assert outcome == [True], outcome
    assert server.closed
    with pytest.raises(herald.ServerClosedError):
        server.broadcast({"type": "x"})


def test_server_collected_with_an_authorizer_referencing_it() -> None:
    import gc
    import weakref

    def authorizer_for(s: herald.Server) -> Callable[[herald.AuthRequest], bool]:
        return lambda req: s.port > 0

    server = herald.Server(port=0)
    server.set_authorizer(authorizer_for(server))  # a reference cycle through the closure
    ref = weakref.ref(server)
    del server
    gc.collect()
    assert ref() is None, "the authorizer kept the server alive"


# -- origins, limits -------------------------------------------------------------------------


def test_disallowed_origin_is_refused_with_403(make_server: Any) -> None:
    server = make_server(allowed_origins=["https://app.example"])

    async def body() -> None:
        with pytest.raises(InvalidStatus) as info:
            await open_ws(server.port, origin="https://evil.example")
        assert info.value.response.status_code == 403
        ok = await connect_ok(server.port, origin="https://app.example")
        no_origin = await connect_ok(server.port)  # non-browser clients send none: allowed
        await ok.close()
        await no_origin.close()

    run(body())
    assert stat(server, "originRejected") == 1


def test_connections_per_ip_and_subscriptions_per_client(make_server: Any) -> None:
    server = make_server(max_connections_per_ip=1, max_subscriptions_per_client=2)

    async def body() -> None:
        first = await connect_ok(server.port)
        await expect_refused(server.port)
        await first.subscribe(channel="a")
        await first.subscribe(channel="b")
        await first.send({"type": "subscribe", "channel": "c"})
        await expect_error(first, "subscribe_failed")
        await still_served(first)
        await first.close()

    run(body())
    assert stat(server, "rejectedPerIp") >= 1


RATE_LIMIT = {"messages_per_second": 1, "burst": 5, "max_violations": 5}


def test_rate_limit_flood_gets_rate_limited_then_1008(make_server: Any) -> None:
    """Messages far above the rate, each answer read before the next message is sent."""
    server = make_server(rate_limit=RATE_LIMIT)

    async def body() -> None:
        flooder = await connect_ok(server.port)
        other = await connect_ok(server.port)
        answers: List[str] = []
        for i in range(300):  # bounded; the close comes after burst + max_violations + 1
            try:
                await flooder.send({"type": "ping", "n": i})
                msg = await flooder.recv()
            except ConnectionClosed:
                break
            answers.append(msg["error"]["code"] if msg["type"] == "error" else msg["type"])
            if i == 10:
                await still_served(other)  # served while the flood goes on
        assert (flooder.ws.close_code, flooder.ws.close_reason) == (1008, "rate limit exceeded")
        first_refusal = answers.index("rate_limited")
        assert first_refusal >= 1 and set(answers[:first_refusal]) == {"pong"}, answers  # the burst
        assert set(answers[first_refusal:]) <= {"rate_limited", "pong"}, answers  # pongs: refills
        assert answers.count("rate_limited") == RATE_LIMIT["max_violations"], answers
        await still_served(other)
        server.send(other.client_id, {"type": "still-here"})
        assert (await other.recv())["type"] == "still-here"
        await other.close()

    run(body())
    assert stat(server, "rateLimitCloses") == 1
    assert server.stats()["rateLimited"] == RATE_LIMIT["max_violations"]


async def blind_flood(server: herald.Server) -> ClientConnection:
    """300 messages sent without reading (bounded); returns the flooder, closed by the server."""
    flooder = await connect_ok(server.port)
    other = await connect_ok(server.port)
    for i in range(300):
        try:
            await flooder.send({"type": "ping", "n": i})
        except ConnectionClosed:
            break
    try:
        while True:  # drain whatever arrived until the connection is gone
            await flooder.recv()
    except ConnectionClosed:
        pass
    await still_served(other)
    await other.close()
    return flooder.ws


def test_rate_limit_blind_flood_is_disconnected_and_others_are_served(make_server: Any) -> None:
    server = make_server(rate_limit=RATE_LIMIT)
    ws = run(blind_flood(server))
    assert ws.close_code is not None
    assert stat(server, "rateLimitCloses") == 1


def test_rate_limit_blind_flood_sees_1008(make_server: Any) -> None:
    server = make_server(rate_limit=RATE_LIMIT)
    ws = run(blind_flood(server))
    assert ws.close_code == 1008, (ws.close_code, ws.close_reason)


# -- TLS -------------------------------------------------------------------------------------


def test_wss_with_the_test_ca(make_server: Any) -> None:
    assert (FIXTURES / "ca_cert.pem").is_file(), FIXTURES
    # Path objects are accepted for the PEM files.
    server = make_server(tls={"cert": FIXTURES / "server_cert.pem", "key": FIXTURES / "server_key.pem"})
    trusting = ssl.create_default_context(cafile=str(FIXTURES / "ca_cert.pem"))

    async def body() -> None:
        c = await connect_ok(server.port, scheme="wss", ssl_ctx=trusting)
        await c.subscribe(sessionId="s")
        server.notify_ai_complete("s", {"text": "over TLS"})
        msg = await c.recv()
        assert msg["type"] == "ai_complete" and msg["result"]["text"] == "over TLS", msg
        await c.close()

        with pytest.raises(ssl.SSLCertVerificationError):  # the test CA is not trusted by default
            await open_ws(server.port, scheme="wss", ssl_ctx=ssl.create_default_context())
        await expect_refused(server.port)  # plain ws:// to a TLS port

    run(body())
    assert stat(server, "tlsFailures") >= 1


def test_wss_with_jwt(make_server: Any) -> None:
    server = make_server(
        auth=JWT_AUTH,
        tls={"cert": str(FIXTURES / "server_cert.pem"), "key": str(FIXTURES / "server_key.pem")},
    )
    ctx = ssl.create_default_context(cafile=str(FIXTURES / "ca_cert.pem"))

    async def body() -> None:
        await expect_unauthorized(server.port, scheme="wss", ssl_ctx=ctx, token=token("alice", ttl=-3600))
        c = await connect_ok(server.port, scheme="wss", ssl_ctx=ctx, token=token("alice"))
        await still_served(c)
        await c.close()

    run(body())


# -- configuration ---------------------------------------------------------------------------

FULL_CONFIG: Dict[str, Any] = {
    "host": "127.0.0.1",
    "port": 0,
    "path": "/ws",
    "heartbeat_interval_ms": 30_000,
    "heartbeat_timeout_ms": 60_000,
    "max_message_size": 65_536,
    "client_queue_size": 1024,
    "max_connections": 1000,
    "worker_threads": 2,
    "publish_queue_size": 1000,
    "event_queue_size": 1000,
    "handshake_timeout_ms": 10_000,
    "max_channels": 10_000,
    "stats_client_limit": 100,
    "history": {"size": 10, "ttl_ms": 60_000, "max_bytes": 1 << 20},
    "jobs": {"ttl_ms": 60_000, "max_per_session": 8, "max_text_bytes": 1 << 16, "max_bytes": 1 << 22},
    "ai": {"delta_rollup_ms": 0},
    "auth": {
        "required": True,
        "jwt_secret": SECRET,
        "jwt_public_key": None,
        "jwt_issuer": "https://issuer.example",
        "jwt_audience": "herald",
        "jwt_leeway_s": 5,
        "public_channels": ["news", "public:*"],
        "authorizer_timeout_ms": 2000,
    },
    "allowed_origins": ["https://app.example"],
    "max_connections_per_ip": 10,
    "max_subscriptions_per_client": 64,
    "rate_limit": {"messages_per_second": 20, "burst": 40, "max_violations": 10},
    "tls": {"cert": str(FIXTURES / "server_cert.pem"), "key": str(FIXTURES / "server_key.pem")},
    "client_queue_bytes": 1 << 20,
    "socket_send_buffer": 1 << 16,
    "io_uring": False,
    "max_memory": 1 << 28,
    "admin_token": "admin-token-for-the-tests",
    "event_queue_bytes": 1 << 22,
    "listen": True,
    # None keeps the in-memory broker; the Redis one is covered by test_broker.py.
    "broker": None,
    "presence": {"enabled": True, "ttl_ms": 30_000, "max_members": 100},
}


def test_every_typed_config_key_is_accepted_by_the_core(make_server: Any) -> None:
    """The TypedDicts name exactly the core's keys: a typo would be rejected at start."""
    typed = herald.ServerConfig.__annotations__
    assert set(FULL_CONFIG) == set(typed)
    nested = {
        "history": herald.HistoryConfig,
        "jobs": herald.JobsConfig,
        "ai": herald.AiConfig,
        "auth": herald.AuthConfig,
        "rate_limit": herald.RateLimitConfig,
        "tls": herald.TlsConfig,
        "presence": herald.PresenceConfig,
    }
    for key, cls in nested.items():
        assert set(FULL_CONFIG[key]) == set(cls.__annotations__), key
    server = make_server(**FULL_CONFIG)
    assert server.port > 0
    stats = server.stats()
    for counter in (
        "authFailures",
        "forbidden",
        "originRejected",
        "rateLimited",
        "rateLimitCloses",
        "rejectedPerIp",
        "openSockets",
        "handshakeTimeouts",
        "tlsFailures",
    ):
        assert isinstance(stats[counter], int), counter


@pytest.mark.parametrize(
    "config",
    [
        {"auth": {"jwt_secret": "too-short"}},
        {"auth": {"authorizer_timeout_ms": 0}},
        {"auth": {"no_such_key": True}},
        {"rate_limit": {"burst": "many"}},
        {"tls": {"cert": "/nonexistent/cert.pem", "key": "/nonexistent/key.pem"}},
    ],
)
def test_bad_security_config_is_an_invalid_config_error(config: Dict[str, Any]) -> None:
    with pytest.raises(herald.InvalidConfigError) as info:
        herald.Server(port=0, **config)
    assert info.value.status == herald.Status.ERR_INVALID_CONFIG  # the status herald_start returned
    assert info.value.message


# -- admin endpoints -------------------------------------------------------------------------


def http_status(port: int, path: str, headers: Dict[str, str]) -> Tuple[int, Message, bytes]:
    """Status, headers (looked up case-insensitively) and body of one GET."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def test_admin_token_guards_http_stats(make_server: Any) -> None:
    token = "admin-token-for-the-tests"
    server = make_server(admin_token=token)

    async def body() -> None:
        c = await Client.connect(server.port, userId="alice")
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {token}"}):
            status, reply_headers, reply = http_status(server.port, "/api/ws/stats", headers)
            assert status == 401, headers
            assert reply_headers.get("WWW-Authenticate", "").startswith("Bearer"), reply_headers
            assert c.client_id.encode() not in reply
        status, _, reply = http_status(server.port, "/api/ws/stats", {"Authorization": f"Bearer {token}"})
        assert status == 200
        assert c.client_id in {client["id"] for client in json.loads(reply)["clients"]}
        assert server.stats()["activeConnections"] == 1  # the host's own call needs no token
        await c.close()

    run(body())


def test_secure_mode_without_admin_token_refuses_http_stats(make_server: Any) -> None:
    server = make_server(auth={"required": True, "jwt_secret": SECRET})
    status, headers, _ = http_status(server.port, "/api/ws/stats", {})
    assert status == 401
    assert headers.get("WWW-Authenticate", "").startswith("Bearer")
    assert isinstance(server.stats()["activeConnections"], int)
