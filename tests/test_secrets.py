"""No secret leaks: credentials are sent to the server, and shown nowhere else.

The pool connects to a URI with user-info and a query token, with an
``Authorization`` and an ``X-Api-Key`` header. Real traffic and real failures
(refused handshakes, retries, a server-side close, misuse, shutdown) run with
every logger at DEBUG, websockets' handshake log included. Then every text a
person could read is searched for the secrets: reprs and strs of the pool, its
connections and its stats, every log record, every history record, and every
exception raised (with its causes). The server's side of the test proves that
the secrets did travel: they were sent, just never shown.
"""

from __future__ import annotations

import base64
import contextlib
import io
import logging
import traceback
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import pytest
import websockets.exceptions
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import InvalidProxy

from aio_websocket_pool import (
    ConnectionClosedError,
    ConnectionPoolExhaustedError,
    ConnectionPoolUnavailableError,
    ConnectionUnavailableError,
    HandshakeRejectedError,
    LeaseEndedError,
    RequestLostError,
    State,
    WebsocketConnection,
    WebsocketConnectionPool,
    write_history_jsonl,
)
from aio_websocket_pool.testing import FAST_RECOVERY, Chaos, TcpProxy, tagged_workload
from helpers import (
    BOUND,
    clear_proxy_environment,
    exception_chain,
    http_server,
    pool_maker,
    redirect_to,
    round_trip,
)
from loopback import LoopbackServer

USER = "alice"
PASSWORD = "pw-SECRET-1"  # noqa: S105  (a fake credential that must never be shown)
QUERY = "token=SECRET-2"
HEADERS = {"Authorization": "Bearer SECRET-3", "X-Api-Key": "SECRET-4"}
PAYLOAD = "a message SECRET-6"
BASIC = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
#: Any of these in a readable text is a leak ("SECRET" is in every secret, payload included).
FORBIDDEN = ("SECRET", USER, BASIC.removeprefix("Basic "))
#: The loopback server's own log shows what it received; it is the test's, not the library's.
SERVER_LOGGER = "websockets.server"

#: Bounded acquires; no health-check pings.
make_pool = pool_maker(health_check_interval=None, acquire_timeout=BOUND)


def secret_uri(server: LoopbackServer, *, port: int | str | None = None) -> str:
    return f"ws://{USER}:{PASSWORD}@127.0.0.1:{server.port if port is None else port}/path?{QUERY}"


def leaks(text: str) -> list[str]:
    return [secret for secret in FORBIDDEN if secret in text]


@dataclass
class Evidence:
    """Every readable text the test collected, each with where it came from."""

    texts: list[tuple[str, str]] = field(default_factory=list)
    exceptions: list[BaseException] = field(default_factory=list)

    def add(self, where: str, text: object) -> None:
        self.texts.append((where, str(text)))
        self.texts.append((f"repr of {where}", repr(text)))

    def add_connection(self, conn: WebsocketConnection) -> None:
        self.add(f"connection {conn.id}", conn)
        assert conn.history, f"{conn.id} has no history"
        for n, record in enumerate(conn.history):
            where = f"history record {n} of {conn.id}"
            self.add(where, record)
            for value in record:
                self.add(f"field of {where}", value)

    def add_pool(self, pool: WebsocketConnectionPool) -> None:
        self.add("pool", pool)
        self.add("pool stats", pool.stats())

    def add_exception(self, exc: BaseException) -> None:
        self.exceptions.append(exc)
        for n, link in enumerate(exception_chain(exc)):
            where = f"exception {type(exc).__name__}, link {n} ({type(link).__name__})"
            self.add(where, link)
            self.add(f"{where}, formatted", "".join(traceback.format_exception_only(link)))
            for arg in link.args:
                self.add(f"{where}, argument", arg)
        self.add(
            f"exception {type(exc).__name__}, traceback", "".join(traceback.format_exception(exc))
        )

    def add_records(self, records: Iterable[logging.LogRecord]) -> None:
        formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
        for record in records:
            if record.name.startswith(SERVER_LOGGER):
                continue
            where = f"log record {record.name}:{record.lineno}"
            self.add(where, record.getMessage())
            self.add(f"{where}, formatted", formatter.format(record))

    def assert_no_leak(self) -> None:
        leaked = [(where, text) for where, text in self.texts if leaks(text)]
        assert not leaked, "\n".join(f"{where}: {text!r}" for where, text in leaked)


async def expect_error(
    evidence: Evidence, error: type[BaseException], awaitable: Awaitable[Any]
) -> BaseException:
    """Await ``awaitable``, check that it raises ``error``, and keep the exception as evidence."""
    with pytest.raises(error) as info:
        await awaitable
    evidence.add_exception(info.value)
    return info.value


def track_connections(
    pool: WebsocketConnectionPool, monkeypatch: pytest.MonkeyPatch
) -> list[WebsocketConnection]:
    """Every connection the pool creates, closed or not, failed handshakes included."""
    created: list[WebsocketConnection] = []
    add = pool._core.index.add

    def add_and_track(connection: WebsocketConnection) -> None:
        created.append(connection)
        add(connection)

    monkeypatch.setattr(pool._core.index, "add", add_and_track)
    return created


def assert_secrets_were_sent(server: LoopbackServer) -> None:
    """The server received every credential: the test is not vacuous."""
    assert server.request_headers, "no handshake reached the server"
    for headers in server.request_headers:
        assert sorted(headers.get_all("Authorization")) == sorted([BASIC, HEADERS["Authorization"]])
        assert headers["X-Api-Key"] == HEADERS["X-Api-Key"]


def assert_query_was_sent(server: LoopbackServer) -> None:
    paths = {conn.request.path for conn in server.connections if conn.request is not None}
    assert paths == {f"/path?{QUERY}"}


def assert_websockets_logged_the_handshake_line(
    records: Iterable[logging.LogRecord], line: str, logger: str = "websockets.client"
) -> None:
    lines = [r.getMessage() for r in records if r.name == logger]
    assert line in lines, lines


def assert_websockets_logged_the_handshake(
    records: Iterable[logging.LogRecord], logger: str | None = None
) -> None:
    """websockets' DEBUG handshake log ran, through the redacting logger."""
    lines = [r.getMessage() for r in records if r.name == (logger or "websockets.client")]
    assert "> GET /path?<redacted> HTTP/1.1" in lines
    assert "> Authorization: <redacted>" in lines
    assert "> X-Api-Key: <redacted>" in lines


# -- the pool ------------------------------------------------------------------------------


async def test_the_pool_shows_no_secret_in_traffic_failures_and_shutdown(
    server: LoopbackServer, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.DEBUG)
    evidence = Evidence()
    pool = WebsocketConnectionPool(
        secret_uri(server),
        headers=HEADERS,
        max_connections=2,
        max_retries=3,
        warmup_connections=1,
        acquire_timeout=0.2,
        health_check_interval=0,  # every reuse pings
        health_check_timeout=BOUND,
        history_size=100,
    )
    created = track_connections(pool, monkeypatch)
    evidence.add_pool(pool)

    # A refused warm-up is logged as a warning.
    server.refuse(1, 401)
    await pool.start()
    assert any("warm-up" in r.getMessage() for r in caplog.records)

    # Traffic on two connections, a reuse with a health-check ping, an explicit ping.
    async with pool.get_connection() as first, pool.get_new_connection() as second:
        assert_query_was_sent(server)
        await round_trip(first, "one")
        await round_trip(second, "two")
        assert isinstance(await first.ping(), float)
        evidence.add_pool(pool)
    async with pool.get_connection() as again:
        await round_trip(again, "three")
        evidence.add_connection(again)

    # Refused handshakes: a 4xx at once, a 5xx after every retry.
    server.refuse(1, 401)
    rejected = await expect_error(evidence, HandshakeRejectedError, pool.acquire_new())
    assert isinstance(rejected, HandshakeRejectedError)
    assert rejected.status_code == 401
    server.refuse(3, 503)
    await expect_error(evidence, ConnectionUnavailableError, pool.acquire_new())

    # A connection the server closes under its borrower.
    conn = await pool.acquire()
    await server.close_connections(1011)
    await expect_error(evidence, ConnectionClosedError, conn.recv())
    await expect_error(evidence, ConnectionClosedError, conn.send("late"))
    await pool.release(conn)

    # Exhaustion, a borrower leaving on an error, and release misuse.
    held = [await pool.acquire(), await pool.acquire()]
    await expect_error(evidence, ConnectionPoolExhaustedError, pool.acquire())
    evidence.add_pool(pool)
    await pool.release(held[0])
    await pool.release(held[0])  # misuse: a warning naming the connection
    with pytest.raises(LookupError):
        async with pool.get_connection():
            raise LookupError("the borrower's own error")

    # Shutdown with a connection still held.
    await pool.close_all()
    # close_all ended the lease: the handle refuses all use, without naming a secret.
    await expect_error(evidence, LeaseEndedError, held[1].send("after close_all"))
    await expect_error(evidence, ConnectionPoolUnavailableError, pool.acquire())
    await pool.release(held[1])

    assert any(r.levelno == logging.WARNING and "ignored" in r.getMessage() for r in caplog.records)
    assert any("closed by peer" in (r.reason or "") for c in created for r in c.history)
    assert any(r.trigger == "fail" and r.reason == "HTTP 401" for c in created for r in c.history)
    evidence.add_pool(pool)
    for connection in created:
        evidence.add_connection(connection)
    exported = io.StringIO()
    assert write_history_jsonl(pool.history, exported) == len(pool.history)
    assert {record.connection_id for record in pool.history} == {c.id for c in created}
    evidence.add("the pool's history as JSON lines", exported.getvalue())
    evidence.add_records(caplog.records)
    assert len(evidence.exceptions) == 7
    evidence.assert_no_leak()
    assert_websockets_logged_the_handshake(caplog.records)
    assert_secrets_were_sent(server)


async def test_no_secret_shows_while_every_fault_is_injected(
    websocket_server: LoopbackServer,
    websocket_proxy: TcpProxy,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Closes, refusals, restarts, frozen and dropped links, strays: still nothing shown."""
    caplog.set_level(logging.DEBUG)
    evidence = Evidence()
    pool = WebsocketConnectionPool(
        secret_uri(websocket_server, port=websocket_proxy.port),
        headers=HEADERS,
        max_connections=4,
        **FAST_RECOVERY,
    )
    created = track_connections(pool, monkeypatch)
    chaos = Chaos(websocket_server, websocket_proxy, seed=2, interval=0.01)
    async with pool, chaos.running():
        tally = await tagged_workload(pool, tasks=8, requests=25, seed=2)
        evidence.add_pool(pool)
    assert tally.misdelivered == []
    assert tally.untyped == []
    # Which faults land, and which errors they cause, depends on timing: require some of
    # each, so that the evidence below is not empty (CI once saw a single kind of error).
    assert chaos.injected, "no fault was injected"
    assert tally.first_errors, tally
    for exc in tally.first_errors.values():
        evidence.add_exception(exc)
    evidence.add_pool(pool)
    for connection in created:
        if connection.history:
            evidence.add_connection(connection)
    evidence.add_records(caplog.records)
    evidence.assert_no_leak()
    assert_websockets_logged_the_handshake(caplog.records)


async def test_message_payloads_show_in_no_log_record(
    server: LoopbackServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    evidence = Evidence()
    async with WebsocketConnectionPool(server.uri) as pool, pool.get_connection() as conn:
        await round_trip(conn, PAYLOAD)
    evidence.add_records(caplog.records)
    evidence.assert_no_leak()


@pytest.mark.regression
async def test_percent_encoded_credentials_stay_out_of_the_debug_log(
    server: LoopbackServer, caplog: pytest.LogCaptureFixture
) -> None:
    # A password with a reserved character must be percent-encoded in a URI;
    # a non-ASCII query token is sent percent-encoded by websockets.
    password, token = "p@ss-SECRET", "clé-SECRET"
    uri = (
        f"ws://alice:{urllib.parse.quote(password, safe='')}@127.0.0.1:{server.port}/?token={token}"
    )
    caplog.set_level(logging.DEBUG)
    pool = make_pool(uri)
    async with pool, pool.get_connection() as conn:
        await round_trip(conn, "x")
    # websockets 15 sends the user-info as written, 16+ percent-decodes it first.
    sent = server.request_headers[0]["Authorization"]
    assert sent.startswith("Basic ")
    leaked = [
        r.getMessage()
        for r in caplog.records
        if not r.name.startswith("websockets.server")
        and (sent.removeprefix("Basic ") in r.getMessage() or "SECRET" in r.getMessage())
    ]
    assert not leaked, leaked


# -- the standalone connection ---------------------------------------------------------------


@pytest.mark.parametrize("logger", [None, "logger", "adapter"])
async def test_a_standalone_connection_shows_no_secret(
    server: LoopbackServer, caplog: pytest.LogCaptureFixture, logger: str | None
) -> None:
    """Also with a logger of the user's own, passed on to websockets."""
    caplog.set_level(logging.DEBUG)
    evidence = Evidence()
    own = logging.getLogger("users.websockets")
    kwargs: dict[str, Any] = {}
    if logger == "logger":
        kwargs["logger"] = own
    elif logger == "adapter":
        kwargs["logger"] = logging.LoggerAdapter(own, {"user": "extra"})
    async with WebsocketConnection(uri=secret_uri(server), headers=HEADERS, **kwargs) as conn:
        assert_query_was_sent(server)
        await round_trip(conn, "standalone")
        assert isinstance(await conn.ping(), float)
        evidence.add_connection(conn)
    evidence.add_connection(conn)
    await expect_error(evidence, ConnectionClosedError, conn.recv())

    server.refuse(1, 403)
    refused = WebsocketConnection(uri=secret_uri(server), headers=HEADERS)
    await expect_error(evidence, HandshakeRejectedError, refused.acquire())
    server.refuse(1, 503)
    failed = WebsocketConnection(uri=secret_uri(server), headers=HEADERS)
    await expect_error(evidence, ConnectionUnavailableError, failed.acquire())
    for unopened in (refused, failed):
        # A standalone connection whose handshake failed stays connecting (it may
        # be connected again, as in 0.1.0), so it has no history yet: its repr counts.
        assert unopened.state is State.CONNECTING
        evidence.add(f"connection {unopened.id}", unopened)

    evidence.add_records(caplog.records)
    evidence.assert_no_leak()
    assert_websockets_logged_the_handshake(caplog.records, own.name if logger else None)
    assert_secrets_were_sent(server)


# -- websockets' own errors, which quote their input ---------------------------------------


def echo_with(status: str) -> Callable[[bytes], bytes]:
    """An answer with ``status`` whose body quotes the request, as debugging servers do."""

    def answer(request: bytes) -> bytes:
        head = f"HTTP/1.1 {status}\r\nContent-Length: {len(request)}\r\n"
        return head.encode() + b"X-Echo: " + request.split(b"\r\n")[-3] + b"\r\n\r\n" + request

    return answer


async def assert_acquire_fails_clean(
    evidence: Evidence, pool: WebsocketConnectionPool, caplog: pytest.LogCaptureFixture
) -> BaseException:
    async with pool:
        error = await expect_error(evidence, ConnectionUnavailableError, pool.acquire())
    evidence.add_records(caplog.records)
    evidence.assert_no_leak()
    return error


@pytest.mark.parametrize(
    "location",
    [
        f"http://{USER}:{PASSWORD}@127.0.0.1:1/x?{QUERY}",  # InvalidURI quotes it
        f"ws://{USER}:{PASSWORD}@[bad/?{QUERY}",  # a ValueError; the 302 quotes it in headers
    ],
    ids=["not-websocket", "unparsable"],
)
async def test_a_redirect_to_a_secret_location_shows_it_nowhere(
    location: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    evidence = Evidence()
    async with http_server(redirect_to(location)) as (port, requests):
        pool = WebsocketConnectionPool(f"ws://127.0.0.1:{port}/", max_retries=1)
        error = await assert_acquire_fails_clean(evidence, pool, caplog)
    assert len(requests) == 1
    assert error.__context__ is None
    assert isinstance(error.__cause__, Exception)
    assert "HTTP 302" in "".join(traceback.format_exception(error))  # the chain still explains
    assert any(r.getMessage().startswith("< Location: ") for r in caplog.records)


async def test_a_redirect_to_a_new_secret_query_is_followed_and_logged_redacted(
    server: LoopbackServer, caplog: pytest.LogCaptureFixture
) -> None:
    """websockets follows it and logs the new request line: the pool never knew that query."""
    caplog.set_level(logging.DEBUG)
    evidence = Evidence()
    target = f"ws://127.0.0.1:{server.port}/path?{QUERY}"
    async with (
        http_server(redirect_to(target)) as (port, _),
        WebsocketConnectionPool(f"ws://127.0.0.1:{port}/") as pool,
        pool.get_connection() as conn,
    ):
        await round_trip(conn, "redirected")
        assert_query_was_sent(server)
    evidence.add_records(caplog.records)
    evidence.assert_no_leak()
    assert_websockets_logged_the_handshake_line(caplog.records, "> GET /path?<redacted> HTTP/1.1")


async def test_a_proxy_that_refuses_with_407_shows_no_proxy_credential(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    evidence = Evidence()
    async with http_server(echo_with("407 Proxy Authentication Required")) as (port, requests):
        pool = WebsocketConnectionPool(
            "ws://127.0.0.1:9/", proxy=f"http://{USER}:{PASSWORD}@127.0.0.1:{port}", max_retries=1
        )
        error = await assert_acquire_fails_clean(evidence, pool, caplog)
    assert b"Proxy-Authorization: " + BASIC.encode() in requests[0]  # it was sent
    assert "HTTP 407" in str(error)


@pytest.mark.parametrize("variable", ["HTTP_PROXY", "https_proxy", "WS_PROXY"])
@pytest.mark.parametrize("where", ["path", "closed-port"])
async def test_a_proxy_from_the_environment_shows_no_credential(
    variable: str, where: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A proxy URI websockets refuses (InvalidProxy quotes it), or one that is not there."""
    caplog.set_level(logging.DEBUG)
    clear_proxy_environment(monkeypatch)
    proxy = f"http://{USER}:{PASSWORD}@127.0.0.1:1"
    monkeypatch.setenv(variable, f"{proxy}/path?{QUERY}" if where == "path" else proxy)
    evidence = Evidence()
    pool = WebsocketConnectionPool("ws://127.0.0.1:9/", max_retries=1)
    error = await assert_acquire_fails_clean(evidence, pool, caplog)
    cause = error.__cause__
    if where == "path":
        assert isinstance(cause, InvalidProxy)
        assert str(cause).startswith("http://<redacted>@127.0.0.1:1/path?<redacted> isn't a valid")
    else:
        assert isinstance(cause, ConnectionRefusedError)


def test_an_invalid_user_agent_is_refused_at_construction_without_quoting_it() -> None:
    """websockets 17 would refuse it at the handshake, quoting it; websockets 15 would send it."""
    with pytest.raises(ValueError, match="user_agent_header") as refused:
        WebsocketConnectionPool("ws://127.0.0.1:9/", user_agent_header="agent SECRET-8\n")
    error = refused.value
    assert "SECRET" not in str(error)
    assert error.__cause__ is None
    assert error.__context__ is None


@contextlib.asynccontextmanager
async def key_refusing_server() -> AsyncIterator[int]:
    """A server that closes each connection quoting the key it was given, as some APIs do."""

    async def refuse(conn: ServerConnection) -> None:
        assert conn.request is not None
        token = conn.request.path.partition("token=")[2] or conn.request.headers["X-Api-Key"]
        await conn.recv()
        await conn.close(1008, f"bad key {token}")

    async with serve(refuse, "127.0.0.1", 0) as refusing:
        yield refusing.sockets[0].getsockname()[1]


@pytest.mark.parametrize("key_in", ["query", "header"])
async def test_a_close_reason_that_quotes_the_key_is_not_shown(
    key_in: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    evidence = Evidence()
    async with key_refusing_server() as port:
        uri = f"ws://127.0.0.1:{port}/path" + (f"?{QUERY}" if key_in == "query" else "")
        headers = {"X-Api-Key": HEADERS["X-Api-Key"]}
        async with WebsocketConnectionPool(uri, headers=headers) as pool:
            conn = await pool.acquire()
            await conn.send("hello")
            first = await expect_error(evidence, ConnectionClosedError, conn.recv())
            await expect_error(evidence, ConnectionClosedError, conn.send("again"))
            await pool.release(conn)
    evidence.add_records(caplog.records)
    evidence.assert_no_leak()
    assert first.__context__ is None
    closed = first.__cause__
    assert isinstance(closed, websockets.exceptions.ConnectionClosedError)
    assert closed.rcvd is not None
    assert (closed.rcvd.code, closed.rcvd.reason) == (1008, "<redacted>")


async def test_a_multiplexed_request_lost_to_a_close_quoting_the_key_shows_no_secret(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The multiplexer talks on websockets itself: its errors must hide websockets' as the
    connection's do, and its history and logs must not quote the close reason either."""
    caplog.set_level(logging.DEBUG)
    evidence = Evidence()
    async with key_refusing_server() as port:
        uri = f"ws://127.0.0.1:{port}/path?{QUERY}"
        async with (
            WebsocketConnectionPool(uri, headers=HEADERS, acquire_timeout=BOUND) as pool,
            pool.multiplexed(key=lambda message: message, request_timeout=BOUND) as mux,
        ):
            lost = await expect_error(evidence, RequestLostError, mux.request("hello", key="hello"))
            evidence.add("multiplexer", mux)
            evidence.add("multiplexer stats", mux.stats())
            for n, record in enumerate(mux.history):
                evidence.add(f"multiplexer history record {n}", record)
            evidence.add_pool(pool)
    evidence.add_records(caplog.records)
    evidence.assert_no_leak()
    assert lost.__context__ is None


# -- arguments the constructors refuse ------------------------------------------------------


@pytest.mark.parametrize("factory", ["pool", "connection"])
@pytest.mark.parametrize(
    ("uri", "kwargs", "error"),
    [
        (f"http://{USER}:{PASSWORD}@127.0.0.1/path?{QUERY}", {}, ValueError),
        (f"ws://{USER}:{PASSWORD}@127.0.0.1:99999/path?{QUERY}", {}, ValueError),
        (f"ws://{USER}:{PASSWORD}@127.0.0.1:port/path?{QUERY}", {}, ValueError),
        (f"ws://{USER}:{PASSWORD}@/path?{QUERY}", {}, ValueError),
        (f"ws://{USER}:{PASSWORD}@127.0.0.1/path?{QUERY}#SECRET-5", {}, ValueError),
        (f"ws://{USER}:{PASSWORD}@127.0.0.1/path?{QUERY}", {"ssl": True}, ValueError),
        (f"ws://{USER}:{PASSWORD}@127.0.0.1/path?{QUERY}", {"no_such": 1}, TypeError),
        (
            f"ws://{USER}:{PASSWORD}@127.0.0.1/path?{QUERY}",
            {"additional_headers": HEADERS},
            TypeError,
        ),
    ],
    ids=[
        "scheme",
        "port-range",
        "port-text",
        "no-host",
        "fragment",
        "ssl-on-ws",
        "unknown-kwarg",
        "reserved-kwarg",
    ],
)
async def test_refused_arguments_show_no_secret(
    uri: str, kwargs: dict[str, Any], error: type[Exception], factory: str
) -> None:
    evidence = Evidence()

    def build() -> object:
        if factory == "pool":
            return WebsocketConnectionPool(uri, headers=HEADERS, **kwargs)
        return WebsocketConnection(uri=uri, headers=HEADERS, **kwargs)

    with pytest.raises(error) as info:
        build()
    evidence.add_exception(info.value)
    evidence.assert_no_leak()


def test_the_pool_config_repr_shows_no_secret() -> None:
    pool = WebsocketConnectionPool(
        "ws://alice:pw-SECRET-1@127.0.0.1:9/path?token=SECRET-2",
        headers={"Authorization": "Bearer SECRET-3"},
        user_agent_header="agent SECRET-4",
    )
    shown = repr(pool._core.config)
    assert "max_connections=50" in shown
    for secret in ("SECRET-1", "SECRET-2", "SECRET-3", "SECRET-4", "alice"):
        assert secret not in shown


@pytest.mark.regression
def test_undecodable_user_info_is_a_value_error_without_the_password() -> None:
    with pytest.raises(ValueError) as info:  # noqa: PT011  (the message is checked below)
        WebsocketConnectionPool("ws://alice:pw%FF-SECRET@127.0.0.1:1/")
    # a ValueError naming `uri`, carrying no secret in repr or args.
    assert "SECRET" not in repr(info.value), repr(info.value)
    assert "uri" in str(info.value), str(info.value)


async def test_websockets_frame_log_shows_frame_sizes_not_payloads(
    server: LoopbackServer, caplog: pytest.LogCaptureFixture
) -> None:
    """websockets logs every frame with its payload at DEBUG: the pool's logger shows only sizes."""
    payload = "payload-secret-7d21"
    caplog.set_level(logging.DEBUG)
    async with WebsocketConnectionPool(server.uri, health_check_interval=0) as pool:
        async with pool.get_connection() as conn:
            await conn.send(payload)
            assert await conn.recv() == payload
            await conn.send(payload.encode())
            assert await conn.recv() == payload.encode()
        async with pool.get_connection() as conn:  # pinged: control frames are shown the same way
            await conn.send(payload)
            assert await conn.recv() == payload
    client_lines = [r.getMessage() for r in caplog.records if r.name == "websockets.client"]
    assert any(line.startswith("> TEXT [19 bytes]") for line in client_lines), client_lines
    assert any(line.startswith("< BINARY [19 bytes]") for line in client_lines), client_lines
    assert any(line.startswith("> PING [") for line in client_lines), client_lines
    assert any(line.startswith("> CLOSE 1000") for line in client_lines), client_lines
    assert not [line for line in client_lines if "payload-secret" in line]


@pytest.mark.regression
async def test_a_secret_in_a_close_reason_is_masked_in_the_frame_log(
    server: LoopbackServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A server that quotes the API key in its close reason does not put it in the log."""
    secret = "k3y-0f-th3-t3st-cl13nt"  # noqa: S105  (a test value)
    caplog.set_level(logging.DEBUG, logger="websockets")
    async with make_pool(server, headers={"X-Api-Key": secret}) as pool:
        conn = await pool.acquire()
        [server_side] = server.connections
        await server_side.close(1008, f"key {secret} revoked")
        with pytest.raises(ConnectionClosedError):
            await conn.recv()
        await pool.release(conn)
    # The client's log only: the server's is the test harness's, not the library's.
    client_lines = [r.getMessage() for r in caplog.records if r.name == "websockets.client"]
    assert any(line.startswith("< CLOSE 1008") for line in client_lines), client_lines
    assert not [line for line in client_lines if secret in line]
