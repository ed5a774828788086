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

import logging
import urllib.parse
from collections.abc import Iterable, Mapping
from typing import Any, Final

from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.frames import Frame, Opcode
from websockets.headers import build_authorization_basic
from websockets.uri import parse_uri

REDACTED: Final = "<redacted>"


def redact_uri(uri: str) -> str:
    """Return ``uri`` with its user-info and query replaced by ``<redacted>``."""
    try:
        parts = urllib.parse.urlsplit(uri)
        netloc = parts.hostname or ""
        if ":" in netloc:  # an IPv6 literal
            netloc = f"[{netloc}]"
        if parts.port is not None:
            netloc = f"{netloc}:{parts.port}"
    except ValueError:
        return REDACTED
    if parts.username is not None or parts.password is not None:
        netloc = f"{REDACTED}@{netloc}"
    query = f"?{REDACTED}" if parts.query else ""
    return f"{parts.scheme}://{netloc}{parts.path}{query}"


def describe_error(exc: BaseException) -> str:
    """A short reason for ``exc`` that cannot contain a secret.

    Exception messages are never copied: a server's error text, a URI or a
    header can be in them. Only the type and the numbers that explain it are.
    """
    if isinstance(exc, InvalidStatus):
        return f"HTTP {exc.response.status_code}"
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
    """A frame's kind and size, without its payload (a close frame keeps its code and reason)."""
    if frame.opcode is Opcode.CLOSE:
        return str(frame)
    more = "" if frame.fin else ", continued"
    return f"{frame.opcode.name} [{len(frame.data)} bytes{more}]"


class RedactingLogger(logging.LoggerAdapter[logging.Logger]):
    """A logger adapter that masks known secrets in every argument it formats.

    websockets logs each handshake header, and the request path with its query,
    at DEBUG, and every frame with the start of its payload. Passing this
    adapter as its ``logger`` keeps those lines useful (which headers, which
    path, which frames of what size) without the values or the payloads.
    """

    def __init__(self, logger: logging.Logger, secrets: tuple[str, ...]) -> None:
        super().__init__(logger, {})
        self.secrets = secrets

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        if not self.isEnabledFor(level):
            return
        masked = tuple(
            mask(arg, self.secrets) if isinstance(arg, str)
            else mask(describe_frame(arg), self.secrets) if isinstance(arg, Frame)
            else arg
            for arg in args
        )  # fmt: skip
        self.logger.log(level, mask(str(msg), self.secrets), *masked, **kwargs)
