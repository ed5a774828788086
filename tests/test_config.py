"""Construction-time validation of the pool and of a standalone connection.

Covers ``WebsocketConnectionPool(...)`` and ``WebsocketConnection(uri=...)``
(construction does no I/O, so no server is needed): which arguments raise
``ValueError`` or ``TypeError``, which edge values are accepted, that no secret
(URI user-info, query token, header value) reaches an error message, the
0.1.0-compatible defaults, and the public names the package exports. The
redaction helpers themselves are tested in ``tests/test_redact.py``.
"""

from __future__ import annotations

import inspect
import logging
import re
import ssl
import types
from collections.abc import Callable
from typing import Any

import pytest
from websockets.datastructures import Headers
from websockets.headers import build_authorization_basic

import aio_websocket_pool
from aio_websocket_pool import WebsocketConnection, WebsocketConnectionPool
from helpers import clear_proxy_environment

URI = "ws://example.com/feed"
NAN = float("nan")

Build = Callable[..., object]


def build_pool(uri: Any = URI, **kwargs: Any) -> WebsocketConnectionPool:
    return WebsocketConnectionPool(uri, **kwargs)


def build_connection(uri: Any = URI, **kwargs: Any) -> WebsocketConnection:
    return WebsocketConnection(uri=uri, **kwargs)


BOTH = pytest.mark.parametrize("build", [build_pool, build_connection], ids=["pool", "connection"])

# -- ValueError --------------------------------------------------------------------

BAD_URIS = {
    "scheme-http": "http://example.com/",
    "scheme-https": "https://example.com/",
    "scheme-ftp": "ftp://example.com/",
    "no-scheme": "//example.com/feed",
    "no-scheme-bare": "example.com/feed",
    "empty": "",
    "no-host": "ws:///feed",
    "no-host-at-all": "ws://",
    "no-host-port-only": "ws://:8080/feed",
    "port-not-a-number": "ws://example.com:http/feed",
    "port-too-big": "ws://example.com:99999/feed",
    "port-negative": "ws://example.com:-1/feed",
    "bad-ipv6-literal": "ws://[::1/feed",
    "fragment": "ws://example.com/feed#top",
    "user-without-password": "ws://alice@example.com/feed",
}


@BOTH
@pytest.mark.parametrize("uri", BAD_URIS.values(), ids=BAD_URIS.keys())
def test_bad_uri_is_a_value_error(build: Build, uri: str) -> None:
    with pytest.raises(ValueError, match="uri"):
        build(uri)


TIMEOUTS = (
    "idle_timeout",
    "cleanup_interval",
    "connection_timeout",
    "drain_timeout",
    "drain_quiet_period",
    "acquire_timeout",
    "health_check_interval",
    "health_check_timeout",
)
STRICTLY_POSITIVE = (
    "cleanup_interval",
    "connection_timeout",
    "drain_timeout",
    "health_check_timeout",
)
ZERO_ALLOWED = tuple(name for name in TIMEOUTS if name not in STRICTLY_POSITIVE)


@pytest.mark.parametrize("value", [-1.0, -0.001, -5, NAN], ids=["-1.0", "-0.001", "-5", "nan"])
@pytest.mark.parametrize("name", TIMEOUTS)
def test_negative_or_nan_timeout_is_a_value_error(name: str, value: float) -> None:
    with pytest.raises(ValueError, match=name):
        build_pool(**{name: value})


@pytest.mark.parametrize("name", STRICTLY_POSITIVE)
@pytest.mark.parametrize("zero", [0, 0.0], ids=["int", "float"])
def test_zero_is_a_value_error_where_strictly_positive(name: str, zero: float) -> None:
    with pytest.raises(ValueError, match=name):
        build_pool(**{name: zero})


@pytest.mark.parametrize("value", [-1.0, NAN], ids=["negative", "nan"])
@pytest.mark.parametrize("name", ["idle_timeout", "drain_timeout"])
def test_negative_or_nan_timeout_of_a_connection_is_a_value_error(name: str, value: float) -> None:
    with pytest.raises(ValueError, match=name):
        build_connection(**{name: value})


BAD_POOL_VALUES: dict[str, tuple[dict[str, Any], str]] = {
    "max_connections-0": ({"max_connections": 0}, "max_connections"),
    "max_connections-negative": ({"max_connections": -3}, "max_connections"),
    "warmup-above-max": ({"warmup_connections": 3, "max_connections": 2}, "warmup_connections"),
    "warmup-above-default-max": ({"warmup_connections": 51}, "warmup_connections"),
    "warmup-negative": ({"warmup_connections": -1}, "warmup_connections"),
    "max_retries-0": ({"max_retries": 0}, "max_retries"),
    "max_retries-negative": ({"max_retries": -1}, "max_retries"),
    "quiet-equals-drain": (
        {"check_server_data_on_release": True, "drain_quiet_period": 2.0, "drain_timeout": 2.0},
        "drain_quiet_period",
    ),
    "quiet-above-drain": (
        {"check_server_data_on_release": True, "drain_quiet_period": 5.0, "drain_timeout": 1.0},
        "drain_quiet_period",
    ),
    "quiet-above-default-drain": (
        {"check_server_data_on_release": True, "drain_quiet_period": 10.5},
        "drain_quiet_period",
    ),
    "history_size-0": ({"history_size": 0}, "history_size"),
    "history_size-negative": ({"history_size": -1}, "history_size"),
    # A deque's length must fit a C ssize_t: beyond, OverflowError (found by fuzzing).
    "history_size-beyond-ssize_t": ({"history_size": 2**63}, "history_size"),
    "ssl-with-ws-uri": ({"ssl": True}, "ssl"),
    "unknown-compression": ({"compression": "gzip"}, "compression"),
}


@pytest.mark.parametrize(("kwargs", "named"), BAD_POOL_VALUES.values(), ids=BAD_POOL_VALUES.keys())
def test_out_of_range_pool_argument_is_a_value_error(kwargs: dict[str, Any], named: str) -> None:
    with pytest.raises(ValueError, match=named):
        build_pool(**kwargs)


@pytest.mark.parametrize("history_size", [0, -1, 2**63])
def test_connection_history_size_below_one_is_a_value_error(history_size: int) -> None:
    # Same rule as the pool's history_size: a connection must remember its last move.
    with pytest.raises(ValueError, match="history_size"):
        build_connection(history_size=history_size)


def test_ssl_with_a_ws_uri_is_refused_for_a_standalone_connection_too() -> None:
    with pytest.raises(ValueError, match="ssl"):
        build_connection(ssl=True)


PROXY_TLS_WITHOUT_AN_HTTPS_PROXY: dict[str, tuple[dict[str, Any], type[Exception]]] = {
    "proxy-none": ({"proxy": None}, TypeError),
    "own-socket": ({"sock": "a socket"}, TypeError),  # websockets uses no proxy with one
    "http-proxy": ({"proxy": "http://127.0.0.1:3128"}, ValueError),
    "socks-proxy": ({"proxy": "socks5h://127.0.0.1:1080"}, ValueError),
}


@BOTH
@pytest.mark.parametrize(
    ("kwargs", "error"),
    PROXY_TLS_WITHOUT_AN_HTTPS_PROXY.values(),
    ids=PROXY_TLS_WITHOUT_AN_HTTPS_PROXY.keys(),
)
def test_proxy_tls_settings_without_an_https_proxy_are_refused_at_construction(
    build: Build, kwargs: dict[str, Any], error: type[Exception]
) -> None:
    """websockets would refuse them at every handshake, reported as a connection not opened."""
    with pytest.raises(error, match="proxy_ssl"):
        build(proxy_ssl=ssl.create_default_context(), **kwargs)


@BOTH
@pytest.mark.parametrize("proxy", ["https://127.0.0.1:3128", "HTTPS://127.0.0.1:3128", True])
def test_proxy_tls_settings_are_taken_for_an_https_proxy_or_the_environments(
    build: Build, proxy: str | bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    clear_proxy_environment(monkeypatch)
    build(proxy=proxy, proxy_ssl=ssl.create_default_context(), proxy_server_hostname="proxy")


# -- TypeError ---------------------------------------------------------------------

BAD_URI_TYPES = {"none": None, "bytes": b"ws://example.com/", "int": 80, "list": [URI]}


@BOTH
@pytest.mark.parametrize("uri", BAD_URI_TYPES.values(), ids=BAD_URI_TYPES.keys())
def test_uri_that_is_not_a_str_is_a_type_error(build: Build, uri: object) -> None:
    with pytest.raises(TypeError, match="uri"):
        build(uri)


BAD_HEADERS = {
    "list-of-pairs": [("X-Api-Key", "k")],
    "str": "X-Api-Key: k",
    "int-value": {"X-Retries": 3},
    "none-value": {"X-Api-Key": None},
    "bytes-value": {"X-Api-Key": b"k"},
    "int-name": {1: "k"},
}


@BOTH
@pytest.mark.parametrize("headers", BAD_HEADERS.values(), ids=BAD_HEADERS.keys())
def test_bad_headers_are_a_type_error(build: Build, headers: object) -> None:
    with pytest.raises(TypeError, match="header"):
        build(headers=headers)


BAD_POOL_TYPES: dict[str, tuple[dict[str, Any], str]] = {
    "max_connections-str": ({"max_connections": "5"}, "max_connections"),
    "max_connections-float": ({"max_connections": 5.0}, "max_connections"),
    "max_connections-bool": ({"max_connections": True}, "max_connections"),
    "max_connections-none": ({"max_connections": None}, "max_connections"),
    "max_retries-float": ({"max_retries": 3.0}, "max_retries"),
    "warmup-float": ({"warmup_connections": 1.0}, "warmup_connections"),
    "history_size-str": ({"history_size": "32"}, "history_size"),
    "idle_timeout-str": ({"idle_timeout": "60"}, "idle_timeout"),
    "connection_timeout-bool": ({"connection_timeout": True}, "connection_timeout"),
    "drain_condition-int": ({"drain_condition": 42}, "drain_condition"),
    "drain_condition-str": ({"drain_condition": "len"}, "drain_condition"),
    "check_server_data-str": ({"check_server_data_on_release": "yes"}, "check_server_data"),
}


@pytest.mark.parametrize(("kwargs", "named"), BAD_POOL_TYPES.values(), ids=BAD_POOL_TYPES.keys())
def test_wrong_argument_type_is_a_type_error(kwargs: dict[str, Any], named: str) -> None:
    with pytest.raises(TypeError, match=named):
        build_pool(**kwargs)


BAD_CONNECT_KWARGS: dict[str, dict[str, Any]] = {
    "unknown-name": {"bogus_option": 1},
    "legacy-extra_headers": {"extra_headers": {"X-Api-Key": "k"}},
    "typo-of-max_size": {"maxsize": 2**20},
    "additional_headers": {"additional_headers": {"X-Api-Key": "k"}},
}


@BOTH
@pytest.mark.parametrize("kwargs", BAD_CONNECT_KWARGS.values(), ids=BAD_CONNECT_KWARGS.keys())
def test_kwarg_websockets_does_not_take_is_a_type_error(
    build: Build, kwargs: dict[str, Any]
) -> None:
    (name,) = kwargs
    with pytest.raises(TypeError, match=name):
        build(**kwargs)


def test_additional_headers_points_to_headers() -> None:
    with pytest.raises(TypeError, match="headers="):
        build_pool(additional_headers={"X-Api-Key": "k"})


# -- accepted edge values ----------------------------------------------------------

ACCEPTED_POOL_VALUES: dict[str, dict[str, Any]] = {
    "acquire_timeout-0": {"acquire_timeout": 0},
    "acquire_timeout-none": {"acquire_timeout": None},
    "health_check_interval-0": {"health_check_interval": 0},
    "health_check_interval-none": {"health_check_interval": None},
    "idle_timeout-0": {"idle_timeout": 0},
    "drain_quiet_period-0": {"drain_quiet_period": 0},
    "quiet-just-below-drain": {"drain_quiet_period": 0.99, "drain_timeout": 1.0},
    # 0.1.0 code may shorten drain_timeout below the default quiet period while
    # draining is off: those settings are unused then, and must not be refused.
    "short-drain-while-not-draining": {"drain_timeout": 1.0},
    "warmup-equals-max": {"warmup_connections": 4, "max_connections": 4},
    "one-of-everything": {"max_connections": 1, "max_retries": 1, "history_size": 1},
    # The pool's history keeps history_size * max_connections: capped to what a deque takes.
    "huge-history-and-limit": {"max_connections": 2**62, "history_size": 2**62},
    "int-timeouts": {"cleanup_interval": 1, "connection_timeout": 2, "health_check_timeout": 3},
    "tiny-positive": {"connection_timeout": 1e-9},
    "drain_condition": {"drain_condition": bool, "check_server_data_on_release": True},
}


@pytest.mark.parametrize("kwargs", ACCEPTED_POOL_VALUES.values(), ids=ACCEPTED_POOL_VALUES.keys())
def test_edge_values_are_accepted_and_kept(kwargs: dict[str, Any]) -> None:
    pool = build_pool(**kwargs)
    for name, value in kwargs.items():
        assert getattr(pool._core.config, name) == value, name


ACCEPTED_CONNECT_KWARGS: dict[str, dict[str, Any]] = {
    "max_size": {"max_size": 2**20},
    "max_size-none": {"max_size": None},
    "ping_interval": {"ping_interval": 5.0},
    "ping_interval-none": {"ping_interval": None},
    "open_timeout": {"open_timeout": 3.0},
    "compression-none": {"compression": None},
    "subprotocols": {"subprotocols": ["chat"]},
    "user_agent_header": {"user_agent_header": None},
}


@BOTH
@pytest.mark.parametrize(
    "kwargs", ACCEPTED_CONNECT_KWARGS.values(), ids=ACCEPTED_CONNECT_KWARGS.keys()
)
def test_known_websockets_kwargs_are_accepted(
    build: Build, kwargs: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    clear_proxy_environment(monkeypatch)
    assert passed_on(build(**kwargs)) == {**kwargs, **NO_PROXY_FOUND}


#: What the pool adds to the connect arguments when the environment names no proxy.
NO_PROXY_FOUND = {"proxy": None, "proxy_found_for_uri": True}


def passed_on(built: object) -> Any:
    """What a pool or a connection gives websockets' ``connect()``."""
    if isinstance(built, WebsocketConnectionPool):
        return built._core.config.connect_kwargs
    return getattr(built, "_connect_kwargs", None)


@BOTH
def test_the_environments_proxy_is_found_once_at_construction(
    build: Build, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As websockets' default (proxy=True) would find it, but not again for every handshake."""
    clear_proxy_environment(monkeypatch)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    built = build()
    monkeypatch.setenv("HTTPS_PROXY", "http://other.invalid:3128")
    assert passed_on(built)["proxy"] == "http://proxy.invalid:3128"
    monkeypatch.setenv("NO_PROXY", "example.com")  # websockets' own bypass rules apply
    assert passed_on(build())["proxy"] is None


@BOTH
@pytest.mark.parametrize("proxy", [None, "http://chosen.invalid:8080"])
def test_a_proxy_given_is_kept_whatever_the_environment_says(
    build: Build, proxy: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    clear_proxy_environment(monkeypatch)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    assert passed_on(build(proxy=proxy)) == {"proxy": proxy}  # for a redirect's target too


def test_ssl_context_is_accepted_with_a_wss_uri(monkeypatch: pytest.MonkeyPatch) -> None:
    clear_proxy_environment(monkeypatch)
    context = ssl.create_default_context()
    pool = build_pool("wss://example.com/feed", ssl=context)
    assert pool._core.config.connect_kwargs == {"ssl": context, **NO_PROXY_FOUND}


GOOD_URIS = [
    "ws://example.com",
    "wss://example.com/feed",
    "ws://localhost:65535/",
    "ws://127.0.0.1:8765/feed?room=1",
    "ws://[::1]:8765/",
    "WS://EXAMPLE.COM/",
    "ws://alice:hunter2@example.com/",
]


@BOTH
@pytest.mark.parametrize("uri", GOOD_URIS)
def test_good_uri_is_accepted_and_kept_verbatim(build: Build, uri: str) -> None:
    built = build(uri)
    assert getattr(built, "uri", None) == uri


@BOTH
@pytest.mark.parametrize("headers", [None, {}, {"X-Api-Key": "k", "User-Agent": "me"}])
def test_headers_are_kept_as_a_copy(build: Build, headers: dict[str, str] | None) -> None:
    built = build(headers=headers)
    kept = getattr(built, "headers", None)
    assert kept == (headers or {})
    assert kept is not headers


def test_headers_may_be_any_mapping() -> None:
    pool = build_pool(headers=types.MappingProxyType({"X-Api-Key": "k"}))
    assert pool.headers == {"X-Api-Key": "k"}


@BOTH
def test_a_repeated_header_name_is_a_value_error_that_names_it(build: Build) -> None:
    """websockets' ``Headers`` may repeat a name; the pool sends one value per name."""
    headers = Headers([("X-Api-Key", "one-SECRET"), ("X-Trace", "t"), ("x-api-key", "two-SECRET")])
    with pytest.raises(ValueError, match="header 'x-api-key' is given more than once") as info:
        build(headers=headers)
    assert "SECRET" not in str(info.value)


@BOTH
@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({"X-Api-Key": "SECRET\n"}, "header 'X-Api-Key' has a value with a line break"),
        ({"X-Api-Key": "SECRET\r\nX-Evil: 1"}, "header 'X-Api-Key' has a value with a line break"),
        ({"X-Api-Key": "SECRET", "x-API-key": "SECRET"}, "'x-API-key' is given more than once"),
        ({"X Api Key": "SECRET"}, "header name 'X Api Key' is not an HTTP token"),
        ({"X-Key\r\nX-Evil": "SECRET"}, "is not an HTTP token"),
    ],
    ids=["newline", "injection", "case-insensitive-repeat", "space-in-name", "newline-in-name"],
)
def test_a_header_websockets_would_refuse_is_a_value_error_at_construction(
    build: Build, headers: dict[str, str], message: str
) -> None:
    """Found by the constructor, not by the first handshake, whose error would quote it."""
    with pytest.raises(ValueError, match=re.escape(message)) as info:
        build(headers=headers)
    assert "SECRET" not in str(info.value)


@BOTH
def test_websockets_headers_are_accepted_with_their_names_as_written(build: Build) -> None:
    built = build(headers=Headers({"X-Api-Key": "k", "User-Agent": "me"}))
    assert getattr(built, "headers", None) == {"X-Api-Key": "k", "User-Agent": "me"}


@BOTH
@pytest.mark.parametrize(
    ("max_size", "warns"), [(10, True), (1023, True), (1024, False), (2**20, False), (None, False)]
)
def test_a_max_size_below_1_kib_warns_that_it_is_not_the_pool_size(
    build: Build, caplog: pytest.LogCaptureFixture, max_size: int | None, warns: bool
) -> None:
    """asyncpg's and psycopg_pool's max_size is the pool size; websockets' is a message size."""
    with caplog.at_level(logging.WARNING, logger="aio_websocket_pool"):
        build(max_size=max_size)
    warnings = [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and "max_connections" in r.getMessage()
    ]
    assert len(warnings) == int(warns), warnings
    if warns:
        assert f"max_size={max_size} " in warnings[0]


@BOTH
@pytest.mark.parametrize(
    ("uri", "quoted"),
    [
        ("ws://Example.COM:99999/Feed?token=SECRET", "'ws://Example.COM:99999/Feed?<redacted>'"),
        ("ws://alice:SECRET@example.com:x/feed", "'ws://<redacted>@example.com:x/feed'"),
        ("ws://[::1/feed", "'ws://[::1/feed'"),
        ("HTTP://Example.com/feed", "'HTTP://Example.com/feed'"),
        (
            "wss://mainnet.infura.io/ws/v3/9aa3d95b3bc440fa88ea12eaa4456161#SECRET",
            "'wss://mainnet.infura.io/ws/v3/<redacted>#<redacted>'",
        ),
    ],
    ids=["port-range", "port-text", "unclosed-bracket", "scheme", "fragment-and-key"],
)
def test_a_mistyped_uri_is_quoted_as_typed_with_its_secrets_masked(
    build: Build, uri: str, quoted: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(quoted)) as info:
        build(uri)
    assert "SECRET" not in str(info.value)


# -- no secret in any error message ------------------------------------------------

USER, PASSWORD, QUERY_TOKEN, HEADER_TOKEN = "alice", "hunter2", "SECRET123", "SECRET456"
SECRETS = (
    PASSWORD,
    QUERY_TOKEN,
    HEADER_TOKEN,
    f"{USER}:",
    f"{USER}@",
    build_authorization_basic(USER, PASSWORD),
)
SECRET_URI = f"ws://{USER}:{PASSWORD}@example.com/feed?token={QUERY_TOKEN}"
SECRET_HEADERS = {"Authorization": f"Bearer {HEADER_TOKEN}"}

SHARED_SECRET_CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "scheme": (SECRET_URI.replace("ws://", "http://"), {}),
    "fragment": (f"{SECRET_URI}#top", {}),
    "bad-port": (SECRET_URI.replace("example.com", "example.com:99999"), {}),
    "port-not-a-number": (SECRET_URI.replace("example.com", "example.com:x"), {}),
    "no-host": (SECRET_URI.replace("example.com", ""), {}),
    "user-without-password": (f"ws://{USER}@example.com/feed?token={QUERY_TOKEN}", {}),
    "header-value-type": (SECRET_URI, {"headers": {**SECRET_HEADERS, "X-Retries": 3}}),
    "secret-header-as-bytes": (SECRET_URI, {"headers": {"Authorization": HEADER_TOKEN.encode()}}),
    "header-line-break": (SECRET_URI, {"headers": {"Authorization": f"Bearer {HEADER_TOKEN}\n"}}),
    "header-repeated": (
        SECRET_URI,
        {
            "headers": Headers(
                [
                    ("Authorization", f"Bearer {HEADER_TOKEN}"),
                    ("X-Key", PASSWORD),
                    ("authorization", f"Basic {HEADER_TOKEN}"),
                ]
            )
        },
    ),
    "unknown-kwarg": (SECRET_URI, {"bogus_option": 1}),
    "additional_headers": (SECRET_URI, {"additional_headers": SECRET_HEADERS}),
    "ssl-with-ws-uri": (SECRET_URI, {"ssl": True}),
    "proxy_ssl-with-an-http-proxy": (
        SECRET_URI,
        {
            "proxy": f"http://{USER}:{PASSWORD}@127.0.0.1:3128/?token={QUERY_TOKEN}",
            "proxy_ssl": True,
        },
    ),
    "idle_timeout": (SECRET_URI, {"idle_timeout": -1}),
}
POOL_SECRET_CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "max_connections": (SECRET_URI, {"max_connections": 0}),
    "max_connections-type": (SECRET_URI, {"max_connections": "5"}),
    "drain_timeout-nan": (SECRET_URI, {"drain_timeout": NAN}),
    "warmup-above-max": (SECRET_URI, {"warmup_connections": 9, "max_connections": 2}),
    "drain_condition": (SECRET_URI, {"drain_condition": "nope"}),
    "history_size": (SECRET_URI, {"history_size": 0}),
}


def shown_chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and every exception a traceback of it would print."""
    chain = [exc]
    while True:
        current = chain[-1]
        nxt = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
        if nxt is None or nxt in chain:
            return chain
        chain.append(nxt)


def assert_no_secret(exc: BaseException) -> None:
    for shown in shown_chain(exc):
        for text in (str(shown), repr(shown)):
            leaked = [secret for secret in SECRETS if secret in text]
            assert not leaked, f"{type(shown).__name__} shows {leaked}: {text}"


@BOTH
@pytest.mark.parametrize(
    ("uri", "kwargs"), SHARED_SECRET_CASES.values(), ids=SHARED_SECRET_CASES.keys()
)
def test_no_secret_in_error(build: Build, uri: str, kwargs: dict[str, Any]) -> None:
    kwargs = {"headers": SECRET_HEADERS, **kwargs}
    with pytest.raises((TypeError, ValueError)) as caught:
        build(uri, **kwargs)
    assert_no_secret(caught.value)


@pytest.mark.parametrize(
    ("uri", "kwargs"), POOL_SECRET_CASES.values(), ids=POOL_SECRET_CASES.keys()
)
def test_no_secret_in_pool_error(uri: str, kwargs: dict[str, Any]) -> None:
    with pytest.raises((TypeError, ValueError)) as caught:
        build_pool(uri, headers=SECRET_HEADERS, **kwargs)
    assert_no_secret(caught.value)


def test_secret_check_itself_catches_a_leak() -> None:
    # Guards the guard: a message that does carry the URI must be caught.
    with pytest.raises(AssertionError):
        assert_no_secret(ValueError(f"bad uri {SECRET_URI}"))


# -- defaults and public names -------------------------------------------------------

DEFAULTS_0_1_0 = {
    "idle_timeout": 60.0,
    "max_connections": 50,
    "max_retries": 3,
    "cleanup_interval": 5.0,
    "connection_timeout": 10.0,
    "warmup_connections": 0,
    "check_server_data_on_release": False,
    "drain_timeout": 10.0,
    "drain_quiet_period": 2.0,
}
DEFAULTS_NEW = {"acquire_timeout": 30.0, "health_check_interval": 5.0, "history_size": 32}


@pytest.mark.parametrize(
    ("name", "default"),
    [*DEFAULTS_0_1_0.items(), *DEFAULTS_NEW.items()],
    ids=[*DEFAULTS_0_1_0, *DEFAULTS_NEW],
)
def test_pool_default(name: str, default: object) -> None:
    parameter = inspect.signature(WebsocketConnectionPool).parameters[name]
    assert parameter.default == default
    assert type(parameter.default) is type(default)
    assert getattr(build_pool()._core.config, name) == default


def test_pool_defaults_are_valid_together() -> None:
    pool = build_pool()
    assert pool.uri == URI
    assert pool.headers == {}
    assert not pool.is_started
    assert not pool.is_closed
    assert pool.total_connections == 0


NAMES_0_1_0 = (
    "WebsocketError",
    "ConnectionClosedError",
    "ConnectionBusyError",
    "ConnectionUnavailableError",
    "WebsocketConnection",
    "ConnectionPoolUnavailableError",
    "ConnectionPoolExhaustedError",
    "WebsocketConnectionPool",
)
EXCEPTION_NAMES = [
    name
    for name in aio_websocket_pool.__all__
    if isinstance(getattr(aio_websocket_pool, name, None), type)
    and issubclass(getattr(aio_websocket_pool, name), BaseException)
]


def public_names(module: types.ModuleType) -> set[str]:
    return {
        name
        for name, value in vars(module).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }


def test_all_lists_exactly_the_public_names() -> None:
    exported = aio_websocket_pool.__all__
    assert len(exported) == len(set(exported))
    assert set(exported) == public_names(aio_websocket_pool)


@pytest.mark.parametrize("name", NAMES_0_1_0)
def test_0_1_0_name_is_still_exported(name: str) -> None:
    assert name in aio_websocket_pool.__all__
    assert isinstance(getattr(aio_websocket_pool, name), type)


def test_every_0_1_0_exception_is_exported_as_an_exception() -> None:
    old_exceptions = {name for name in NAMES_0_1_0 if name.endswith("Error")}
    assert old_exceptions <= set(EXCEPTION_NAMES)
