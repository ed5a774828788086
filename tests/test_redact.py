"""The redaction helpers: what a URI, an error, a log line and an exception chain show.

These are pure functions of their input, so most tests here build the input by
hand; what the pool shows in real traffic and real failures is tested against
loopback servers in ``tests/test_secrets.py``.
"""

from __future__ import annotations

import asyncio
import logging
import traceback

import pytest
from websockets.datastructures import Headers
from websockets.exceptions import (
    ConnectionClosed,
    ConnectionClosedError,
    InvalidHeaderFormat,
    InvalidHeaderValue,
    InvalidMessage,
    InvalidProxy,
    InvalidProxyStatus,
    InvalidStatus,
    InvalidURI,
    SecurityError,
)
from websockets.frames import Close, Frame, Opcode
from websockets.http11 import Response

from aio_websocket_pool._redact import (
    REDACTED,
    RedactedError,
    RedactingLogger,
    describe_error,
    describe_frame,
    looks_like_key,
    mask,
    raise_from,
    redact_uri,
    secrets_of,
    without_secrets,
)

REDACTIONS = {
    "user-info-and-query": (
        "ws://alice:hunter2@example.com:8080/feed?token=SECRET123",
        f"ws://{REDACTED}@example.com:8080/feed?{REDACTED}",
    ),
    "user-only": ("ws://alice@example.com/", f"ws://{REDACTED}@example.com/"),
    "password-only": ("ws://:hunter2@example.com/", f"ws://{REDACTED}@example.com/"),
    "query-only": ("wss://example.com/feed?token=SECRET123", f"wss://example.com/feed?{REDACTED}"),
    "nothing-to-hide": ("wss://example.com/feed", "wss://example.com/feed"),
    "no-path": ("ws://example.com", "ws://example.com"),
    "ipv6": ("ws://[::1]:9000/x?k=SECRET123", f"ws://[::1]:9000/x?{REDACTED}"),
    "fragment": ("ws://example.com/feed#SECRET123", f"ws://example.com/feed#{REDACTED}"),
    "at-in-password": ("ws://alice:hun@ter2@example.com/", f"ws://{REDACTED}@example.com/"),
    # Mistyped URIs are shown as typed, secrets masked: the user sees the typo.
    "unparsable-port": (
        "ws://alice:hunter2@example.com:99999/?token=SECRET123",
        f"ws://{REDACTED}@example.com:99999/?{REDACTED}",
    ),
    "unparsable-ipv6": (
        "ws://alice:hunter2@[::1/?token=SECRET123",
        f"ws://{REDACTED}@[::1/?{REDACTED}",
    ),
    "text-port": ("WS://Example.COM:port/Feed", "WS://Example.COM:port/Feed"),
    "no-scheme": ("alice:hunter2@example.com/feed", f"{REDACTED}@example.com/feed"),
    "slash-in-password": ("ws://alice:hun/ter2@example.com/", f"ws://{REDACTED}@example.com/"),
    "empty-query": ("ws://example.com/feed?", "ws://example.com/feed?"),
    # API keys in the path, as Infura and Alchemy put them.
    "infura": (
        "wss://mainnet.infura.io/ws/v3/9aa3d95b3bc440fa88ea12eaa4456161",
        f"wss://mainnet.infura.io/ws/v3/{REDACTED}",
    ),
    "alchemy": (
        "wss://eth-mainnet.g.alchemy.com/v2/SECRET123-aBcDeFgHiJkLmNoP_q",
        f"wss://eth-mainnet.g.alchemy.com/v2/{REDACTED}",
    ),
    "key-then-more-path": (
        "wss://example.com/SECRET123SECRET123/stream?x=1",
        f"wss://example.com/{REDACTED}/stream?{REDACTED}",
    ),
    "words-stay": (
        "wss://example.com/market-data-stream/notifications/v2",
        "wss://example.com/market-data-stream/notifications/v2",
    ),
}


@pytest.mark.parametrize(("uri", "expected"), REDACTIONS.values(), ids=REDACTIONS.keys())
def test_redact_uri(uri: str, expected: str) -> None:
    shown = redact_uri(uri)
    assert shown == expected
    assert not any(
        secret in shown for secret in ("alice", "hunter2", "hun@ter2", "ter2", "SECRET123", "9aa3d")
    )


def invalid_status(code: int) -> InvalidStatus:
    return InvalidStatus(
        Response(
            code, "Forbidden secret text", Headers({"X-Secret": "secret text"}), b"secret text"
        )
    )


DESCRIPTIONS: dict[str, tuple[BaseException, str]] = {
    "errno": (OSError(111, "secret text"), "ConnectionRefusedError (errno 111)"),
    "errno-plain-oserror": (OSError(5, "secret text"), "OSError (errno 5)"),
    "oserror-without-errno": (OSError("secret text"), "OSError"),
    "timeout": (TimeoutError("secret text"), "timed out"),
    "value-error": (ValueError("secret text"), "ValueError"),
    "http-status": (invalid_status(403), "HTTP 403"),
    "close-received": (ConnectionClosedError(Close(1008, "secret text"), None), "close code 1008"),
    "close-sent-only": (ConnectionClosed(None, Close(1001, "secret text")), "close code 1001"),
    "close-received-wins": (
        ConnectionClosed(
            Close(1011, "secret text"), Close(1000, "secret text"), rcvd_then_sent=True
        ),
        "close code 1011",
    ),
    "no-close-frame": (ConnectionClosed(None, None), "connection lost without a close frame"),
    "invalid-uri": (InvalidURI("ws://alice@example.com/?secret text", "secret text"), "InvalidURI"),
}


@pytest.mark.parametrize(("exc", "expected"), DESCRIPTIONS.values(), ids=DESCRIPTIONS.keys())
def test_describe_error_never_copies_the_message(exc: BaseException, expected: str) -> None:
    described = describe_error(exc)
    assert described == expected
    assert "secret" not in described.lower()


def test_mask_replaces_every_occurrence_of_every_secret() -> None:
    text = "token=SECRET123&again=SECRET123 as hunter2"
    assert mask(text, ("SECRET123", "hunter2")) == (
        f"token={REDACTED}&again={REDACTED} as {REDACTED}"
    )


def test_a_secret_inside_another_is_masked_whole() -> None:
    # The query token is part of the header value too. Masked first, it would
    # leave the rest of the header value ("-and-more") in the text.
    secrets = secrets_of("ws://example.com/feed?SECRET123", {"X-Key": "SECRET123-and-more"})
    assert secrets.index("SECRET123-and-more") < secrets.index("SECRET123")
    assert mask("> X-Key: SECRET123-and-more", secrets) == f"> X-Key: {REDACTED}"


def test_redacting_logger_masks_the_message_and_its_arguments(
    caplog: pytest.LogCaptureFixture,
) -> None:
    name = "tests.redacting"
    adapter = RedactingLogger(logging.getLogger(name), ("SECRET123", "hunter2"))
    with caplog.at_level(logging.DEBUG, logger=name):
        adapter.debug("> GET /feed?token=SECRET123 HTTP/1.1")  # preformatted: in the message
        adapter.debug("> %s: %s", "Authorization", "Basic hunter2")  # in an argument
        adapter.debug("%d frames, %s", 2, "nothing to hide")
    assert [r.getMessage() for r in caplog.records if r.name == name] == [
        f"> GET /feed?token={REDACTED} HTTP/1.1",
        f"> Authorization: Basic {REDACTED}",
        "2 frames, nothing to hide",
    ]


def test_describe_error_names_the_errno() -> None:
    described = describe_error(OSError(111, "secret text"))
    assert "errno 111" in described
    assert "secret text" not in described


# -- path keys -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("segment", "is_key"),
    [
        ("9aa3d95b3bc440fa88ea12eaa4456161", True),  # Infura: 32 hex digits
        ("550e8400-e29b-41d4-a716-446655440000", True),  # a UUID
        ("abcdefghijklmno1", True),  # 16 characters, one digit
        ("abcdefghijklmn1", False),  # 15
        ("market-data-stream-eu", False),  # no digit: a word
        ("v3", False),
        ("", False),
        ("has space 1234567890", False),
        ("percent%20encoded1234", False),
    ],
)
def test_looks_like_key(segment: str, is_key: bool) -> None:
    assert looks_like_key(segment) is is_key


# -- exception chains ----------------------------------------------------------------

SECRET = "SECRET-7"  # noqa: S105  (a fake secret that must never be shown)


def printed(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc))


def response(status: int) -> Response:
    return Response(status, f"reason {SECRET}", Headers({"Location": SECRET}), SECRET.encode())


REBUILT: dict[str, tuple[BaseException, str]] = {
    "status": (InvalidStatus(response(302)), "HTTP 302"),
    "proxy-status": (InvalidProxyStatus(response(407)), "HTTP 407"),
    "close": (
        ConnectionClosedError(Close(1008, f"bad key {SECRET}"), Close(1008, SECRET), True),
        "1008 (policy violation) <redacted>",
    ),
    "uri": (InvalidURI(f"http://a:{SECRET}@h/x?{SECRET}", "scheme isn't ws or wss"), "http://"),
    "proxy": (InvalidProxy(f"http://u:{SECRET}@h:1/p", "path is meaningless"), "<redacted>@h:1"),
    "header-value": (InvalidHeaderValue("X-Key", f"{SECRET}\n"), "invalid X-Key header"),
    "header-format": (InvalidHeaderFormat("X-Key", "expected token", SECRET, 3), "X-Key"),
}


@pytest.mark.parametrize(("exc", "shown"), REBUILT.values(), ids=REBUILT.keys())
def test_without_secrets_keeps_the_type_and_what_explains_it(
    exc: BaseException, shown: str
) -> None:
    assert SECRET in repr(exc) + str(exc) + repr(getattr(exc, "response", ""))  # not vacuous
    clean = without_secrets(exc)
    assert type(clean) is type(exc)
    assert describe_error(clean) == describe_error(exc)
    assert shown in str(clean)
    assert SECRET not in printed(clean) + repr(clean) + repr(getattr(clean, "response", ""))


@pytest.mark.parametrize(
    "exc",
    [
        InvalidMessage("did not receive a valid HTTP response"),
        ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 9)"),
        TimeoutError(),
        EOFError("connection closed while reading HTTP status line"),
    ],
)
def test_an_error_whose_message_quotes_no_input_is_copied(exc: BaseException) -> None:
    exc.__context__ = InvalidURI(f"ws://u:{SECRET}@[bad", "bad")
    clean = without_secrets(exc)
    assert clean is not exc
    assert (type(clean), clean.args) == (type(exc), exc.args)
    assert isinstance(clean.__cause__, InvalidURI)
    assert SECRET not in printed(clean)


def test_an_error_that_cannot_be_rebuilt_becomes_a_redacted_error() -> None:
    clean = without_secrets(SecurityError(f"cannot follow redirect to ws://h/?{SECRET}"))
    assert isinstance(clean, RedactedError)
    assert clean.original_type == "websockets.exceptions.SecurityError"
    assert str(clean).startswith("websockets.exceptions.SecurityError: message withheld")
    errno = without_secrets(RuntimeError(SECRET))
    assert describe_error(errno) == "RuntimeError"
    assert SECRET not in printed(clean) + printed(errno)


def test_without_secrets_follows_the_chain_a_traceback_prints() -> None:
    """Causes and unsuppressed contexts, each rebuilt; a suppressed context is dropped."""
    implicit = InvalidURI(f"ws://u:{SECRET}@[bad", "bad")
    implicit.__context__ = InvalidStatus(response(302))  # raised while handling the redirect
    suppressed = ValueError(SECRET)
    suppressed.__cause__ = None
    suppressed.__context__ = implicit
    suppressed.__suppress_context__ = True  # raise ... from None
    assert SECRET in printed(implicit)  # not vacuous

    clean = without_secrets(implicit)
    assert isinstance(clean, InvalidURI)
    assert isinstance(clean.__cause__, InvalidStatus)
    assert clean.__cause__.response.status_code == 302
    assert clean.__cause__.__cause__ is None
    assert SECRET not in printed(clean)
    only = without_secrets(suppressed)
    assert isinstance(only, RedactedError)
    assert only.__cause__ is None


def test_without_secrets_stops_on_a_chain_that_loops() -> None:
    first, second = ValueError(SECRET), KeyError(SECRET)
    first.__cause__, second.__cause__ = second, first
    clean = without_secrets(first)
    assert SECRET not in printed(clean)


async def test_raise_from_leaves_neither_cause_nor_context_with_a_secret() -> None:
    closed = ConnectionClosedError(Close(1008, f"bad key {SECRET}"), None)

    async def recv() -> None:
        try:
            raise closed
        except ConnectionClosed as exc:
            raise_from(LookupError("conn-1 closed while receiving: close code 1008"), exc)

    with pytest.raises(LookupError) as info:
        await recv()
    error = info.value
    assert error.__context__ is None
    assert error.__suppress_context__
    assert isinstance(error.__cause__, ConnectionClosedError)
    assert error.__cause__ is not closed
    assert error.__cause__.rcvd == Close(1008, REDACTED)
    assert SECRET not in printed(error)
    assert SECRET in printed(closed)  # not vacuous: the original quotes it


async def test_raise_from_keeps_a_context_that_is_not_its_cause() -> None:
    """A handshake failure raised while the caller handles an error of its own."""
    cancelled = asyncio.CancelledError()
    try:
        try:
            raise cancelled
        except asyncio.CancelledError:
            raise_from(LookupError("failed"), OSError(111, "refused"))
    except LookupError as exc:
        error = exc
    assert error.__context__ is cancelled


# -- websockets' handshake log -----------------------------------------------------------


def test_redacting_logger_redacts_the_request_target_and_location(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """After a redirect they carry a query, a key or user-info the pool never knew."""
    name = "tests.redacting.redirect"
    adapter = RedactingLogger(logging.getLogger(name), ())
    key = "9aa3d95b3bc440fa88ea12eaa4456161"
    with caplog.at_level(logging.DEBUG, logger=name):
        adapter.debug("> GET %s HTTP/1.1", f"/v3/{key}?token={SECRET}")
        adapter.debug("< %s: %s", "Location", f"ws://u:{SECRET}@h/v3/{key}")
        adapter.debug("< %s: %s", "Content-Type", "text/plain")
    assert [r.getMessage() for r in caplog.records if r.name == name] == [
        f"> GET /v3/{REDACTED}?{REDACTED} HTTP/1.1",
        f"< Location: ws://{REDACTED}@h/v3/{REDACTED}",
        "< Content-Type: text/plain",
    ]


@pytest.mark.parametrize(
    ("frame", "shown"),
    [
        (Frame(Opcode.CLOSE, Close(1008, f"bad key {SECRET}").serialize()), "CLOSE 1008"),
        (Frame(Opcode.CLOSE, b"\x03"), "CLOSE [1 bytes, malformed]"),
        (Frame(Opcode.TEXT, SECRET.encode(), fin=False), "TEXT [8 bytes, continued]"),
    ],
    ids=["close", "malformed-close", "text"],
)
def test_describe_frame_shows_no_payload_and_no_close_reason(frame: Frame, shown: str) -> None:
    described = describe_frame(frame)
    assert described.startswith(shown)
    assert SECRET not in described
