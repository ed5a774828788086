"""Keeping secrets out of everything a person can read.

Header values, URI user-info and query strings carry tokens. None of them may
reach a repr, a log line, a history record or an exception message, so every
such text is built from the helpers here:

* :func:`redact_uri` shows where a pool connects without who it is or what it
  asked for;
* :func:`describe_error` turns an exception into a short reason made only of
  its type and numbers (status, close code, errno), never its message;
* :class:`RedactingLogger` is handed to websockets, whose DEBUG log prints the
  handshake request line and headers verbatim.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import re
import urllib.parse
from collections.abc import Iterable, Mapping
from typing import Any, Final, NoReturn

from websockets.datastructures import Headers
from websockets.exceptions import (
    ConnectionClosed,
    InvalidHeader,
    InvalidMessage,
    InvalidProxy,
    InvalidProxyStatus,
    InvalidStatus,
    InvalidURI,
    ProtocolError,
)
from websockets.frames import Close, Frame, Opcode
from websockets.headers import build_authorization_basic
from websockets.http11 import Response
from websockets.uri import parse_uri

REDACTED: Final = "<redacted>"


def redact_uri(uri: str) -> str:
    """Return ``uri`` as it was written, with every part that may be a secret masked.

    Masked, each as ``<redacted>``: the user-info, the query, the fragment, and
    every path segment that looks like an API key (:func:`looks_like_key`), as
    Infura (``/v3/<key>``) and Alchemy (``/v2/<key>``) put them. Everything else
    is kept exactly as typed, so a message about a mistyped URI (a bad port, an
    unclosed ``[``) quotes what the user wrote, not a rebuilt or empty one. The
    split is textual and never fails: the user-info ends at the last ``@``
    before the query, so even a password with an unescaped ``/`` is masked whole.
    """
    scheme, sep, rest = uri.partition("://")
    if not sep:
        scheme, rest = "", uri
    rest, hash_sign, fragment = rest.partition("#")
    rest, question_mark, query = rest.partition("?")
    _, at_sign, rest = rest.rpartition("@")
    authority, slash, path = rest.partition("/")
    return "".join(
        (
            scheme,
            sep,
            f"{REDACTED}@" if at_sign else "",
            authority,
            slash,
            redact_path(path),
            question_mark,
            REDACTED if query else "",
            hash_sign,
            REDACTED if fragment else "",
        )
    )


#: What an API key in a URI path is made of: RFC 3986's unreserved characters.
_KEY_CHARACTERS: Final = re.compile(r"[A-Za-z0-9._~-]+")
#: The shortest path segment taken for a key (Infura's and Alchemy's have 32 characters).
MIN_KEY_LENGTH: Final = 16


def looks_like_key(segment: str) -> bool:
    """Whether a URI path segment may be an API key, and so is never shown.

    A key is at least 16 unreserved characters (letters, digits, ``-._~``),
    at least one of them a digit: Infura's 32 hex digits, Alchemy's base62
    keys, UUIDs and JWTs all are. A word such as ``notifications`` or
    ``market-data-stream`` has no digit and stays readable; a segment
    masked by mistake only hides a little of where the pool connects.
    """
    return (
        len(segment) >= MIN_KEY_LENGTH
        and _KEY_CHARACTERS.fullmatch(segment) is not None
        and any(c.isdigit() for c in segment)
    )


def redact_path(path: str) -> str:
    """``path`` (a URI's path, without its query) with each key-like segment masked."""
    return "/".join(REDACTED if looks_like_key(s) else s for s in path.split("/"))


def redact_request_target(target: str) -> str:
    """An HTTP request target (path and query) with its keys and query masked."""
    path, question_mark, query = target.partition("?")
    return f"{redact_path(path)}{question_mark}{REDACTED if query else ''}"


def describe_error(exc: BaseException) -> str:
    """A short reason for ``exc`` that cannot contain a secret.

    Exception messages are never copied: a server's error text, a URI or a
    header can be in them. Only the type and the numbers that explain it are.
    """
    if isinstance(exc, InvalidStatus | InvalidProxyStatus):
        by = "proxy " if isinstance(exc, InvalidProxyStatus) else ""
        return f"{by}HTTP {exc.response.status_code}"
    if isinstance(exc, RedactedError):
        return exc.reason
    if isinstance(exc, ConnectionClosed):
        return describe_close(exc)
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, OSError) and exc.errno is not None:
        return f"{type(exc).__name__} (errno {exc.errno})"
    return type(exc).__name__


def describe_close(exc: ConnectionClosed) -> str:
    """``close code N`` as received from the peer, or as sent if none came."""
    frame = exc.rcvd or exc.sent
    if frame is None:
        return "connection lost without a close frame"
    return f"close code {frame.code}"


class RedactedError(Exception):
    """Stands in, in an exception chain, for an error whose message may quote a secret.

    websockets' errors quote what they were given or received: ``InvalidURI`` a
    redirect's ``Location``, ``InvalidProxy`` the proxy URI with its password,
    ``InvalidHeaderValue`` the header value. Where an error cannot be rebuilt
    without its input, this one keeps its type's name and its numbers only.

    Attributes:
        original_type: The dotted name of the error it stands for.
        reason: :func:`describe_error` of that error.
    """

    def __init__(self, original: BaseException) -> None:
        cls = type(original)
        self.original_type = f"{cls.__module__}.{cls.__qualname__}"
        self.reason = describe_error(original)
        detail = "" if self.reason == cls.__name__ else f" ({self.reason})"
        super().__init__(f"{self.original_type}{detail}: message withheld, it may quote a secret")


#: Errors whose messages come from the operating system, the runtime or fixed
#: websockets texts, never from a URI, a header or a peer: copied as they are.
_SAFE_MESSAGES: Final = (OSError, TimeoutError, EOFError, asyncio.CancelledError, InvalidMessage)
#: How many links of a chain are kept (chains this long are a loop or a bug).
_MAX_CHAIN: Final = 16


def without_secrets(exc: BaseException) -> BaseException:
    """A copy of ``exc``, and of the chain it was raised from, that quotes no input.

    Each link is rebuilt: an HTTP refusal keeps its status but no headers or
    body (a ``Location`` or a ``Set-Cookie`` may be secret), a close keeps its
    code but not its reason (a server may quote the key it refused), an invalid
    URI or proxy shows it through :func:`redact_uri`, an invalid header its name.
    Errors of other types become a :class:`RedactedError`. The copy's chain is
    made of ``__cause__`` links only, each the next link a traceback would print.
    """
    clean = tail = _without_secrets(exc)
    link = _printed_after(exc)
    for _ in range(_MAX_CHAIN):
        if link is None:
            break
        tail.__cause__ = tail = _without_secrets(link)
        link = _printed_after(link)
    return clean


def _printed_after(exc: BaseException) -> BaseException | None:
    """The link of the chain that a traceback prints after ``exc``."""
    return exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)


def _without_secrets(exc: BaseException) -> BaseException:
    if isinstance(exc, InvalidStatus | InvalidProxyStatus):
        response = exc.response
        return type(exc)(Response(response.status_code, REDACTED, Headers()))
    if isinstance(exc, ConnectionClosed):
        return type(exc)(_without_reason(exc.rcvd), _without_reason(exc.sent), exc.rcvd_then_sent)
    if isinstance(exc, InvalidURI):
        return InvalidURI(redact_uri(exc.uri), exc.msg)
    if isinstance(exc, InvalidProxy):
        return InvalidProxy(redact_uri(exc.proxy), exc.msg)
    if isinstance(exc, InvalidHeader):
        header = type(exc).__new__(type(exc))
        InvalidHeader.__init__(header, exc.name, exc.value and REDACTED)
        return header
    return copy.copy(exc) if isinstance(exc, _SAFE_MESSAGES) else RedactedError(exc)


def _without_reason(frame: Close | None) -> Close | None:
    return None if frame is None else Close(frame.code, REDACTED if frame.reason else "")


def raise_from(error: BaseException, cause: BaseException) -> NoReturn:
    """Raise ``error`` from :func:`without_secrets` of ``cause``, which it hides.

    ``raise error from cause`` would chain ``cause`` itself, secrets and all;
    ``raise error from without_secrets(cause)`` inside the ``except`` still sets
    ``__context__`` to ``cause``, which tools that walk the whole chain (and
    ``traceback`` itself when ``__suppress_context__`` is reset) would print.
    """
    try:
        raise error from without_secrets(cause)
    finally:
        if error.__context__ is cause:
            error.__context__ = None


def secrets_of(uri: str, headers: Mapping[str, str] | None) -> tuple[str, ...]:
    """Every string that must be masked for a pool on ``uri`` sending ``headers``.

    Each URI secret is listed as written and as websockets sends it (the
    user-info percent-decoded, a non-ASCII query percent-encoded), since its
    DEBUG log shows the latter. ``uri`` must have passed the pool's checks.
    """
    parts = urllib.parse.urlsplit(uri)
    sent = parse_uri(uri)
    found = list((headers or {}).values())
    found += [parts.query, sent.query, parts.username or "", parts.password or ""]
    found += [segment for segment in parts.path.split("/") if looks_like_key(segment)]
    if sent.user_info is not None:
        found += sent.user_info
        # websockets sends URI credentials as a Basic Authorization header.
        found.append(build_authorization_basic(*sent.user_info))
    # Longest first, so that a secret containing another is masked whole.
    return tuple(sorted((s for s in found if s), key=len, reverse=True))


def mask(text: str, secrets: Iterable[str]) -> str:
    """``text`` with each secret replaced by ``<redacted>``."""
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def describe_frame(frame: Frame) -> str:
    """A frame's kind and size, without its payload (a close frame keeps its code).

    A close reason is the server's text and may quote the key it refused.
    """
    if frame.opcode is Opcode.CLOSE:
        try:
            close = Close.parse(frame.data)
        except (ProtocolError, ValueError):  # a bad code, or a reason that is not UTF-8
            return f"CLOSE [{len(frame.data)} bytes, malformed]"
        return f"CLOSE {_without_reason(close)} [{len(frame.data)} bytes]"
    more = "" if frame.fin else ", continued"
    return f"{frame.opcode.name} [{len(frame.data)} bytes{more}]"


class RedactingLogger(logging.LoggerAdapter[logging.Logger]):
    """A logger adapter that masks known secrets in every argument it formats.

    websockets logs each handshake header, and the request path with its query,
    at DEBUG, and every frame with the start of its payload. Passing this
    adapter as its ``logger`` keeps those lines useful (which headers, which
    path, which frames of what size) without the values or the payloads.
    The request target and a redirect's ``Location`` are redacted whatever they
    hold: after a redirect they carry a query or a key the pool never knew.
    """

    def __init__(self, logger: logging.Logger, secrets: tuple[str, ...]) -> None:
        super().__init__(logger, {})
        self.secrets = secrets

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        if not self.isEnabledFor(level):
            return
        args = _redact_handshake_line(msg, args)
        masked = tuple(
            mask(arg, self.secrets) if isinstance(arg, str)
            else mask(describe_frame(arg), self.secrets) if isinstance(arg, Frame)
            else arg
            for arg in args
        )  # fmt: skip
        self.logger.log(level, mask(str(msg), self.secrets), *masked, **kwargs)


def _redact_handshake_line(msg: object, args: tuple[object, ...]) -> tuple[object, ...]:
    """``args`` of websockets' request line or ``Location`` header line, redacted."""
    if msg == "> GET %s HTTP/1.1" and len(args) == 1 and isinstance(args[0], str):
        return (redact_request_target(args[0]),)
    if (
        msg == "< %s: %s"
        and len(args) == 2
        and isinstance(args[0], str)
        and isinstance(args[1], str)
        and args[0].lower() in ("location", "content-location")
    ):
        return (args[0], redact_uri(args[1]))
    return args
