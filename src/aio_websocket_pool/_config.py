"""Constructor arguments, checked once, at construction.

A bad value found when the first connection opens is found in production; one
found by the constructor is found by the first test. Every argument of
:class:`~aio_websocket_pool.WebsocketConnectionPool` is validated here: wrong
types raise ``TypeError``, wrong values ``ValueError``, and the messages name
the argument and never echo a secret.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import logging
import math
import re
import sys
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from websockets.asyncio.client import connect
from websockets.datastructures import Headers
from websockets.exceptions import InvalidURI

from ._redact import redact_uri, secrets_of
from ._websocket import PROXY_TLS_PARAMETERS, find_proxy

if TYPE_CHECKING:
    from ._connection import WebsocketConnection

#: The type of ``drain_condition``: ``True`` drops the message and keeps draining,
#: ``False`` means the connection is not clean and is discarded.
DrainConditionCallback = Callable[[str | bytes], bool]

#: The type of ``on_connect``, ``on_acquire`` and ``on_release``: an async function
#: of the connection. Raising (or timing out) discards that connection.
ConnectionHook = Callable[["WebsocketConnection"], Awaitable[None]]

#: The type of ``on_unsolicited``: an async function of the connection and a
#: message that arrived while nobody held it.
UnsolicitedMessageHook = Callable[["WebsocketConnection", str | bytes], Awaitable[None]]

#: Messages one drain may read before it gives up on the connection (a flood).
DEFAULT_DRAIN_MAX_MESSAGES: Final = 1000
#: Bytes one drain may read before it gives up on the connection (a flood).
DEFAULT_DRAIN_MAX_BYTES: Final = 16 * 2**20

#: What an HTTP header name may be made of (RFC 9110's token).
is_valid_header_name: Final = re.compile(r"[-!#$%&'*+.^_`|~0-9a-zA-Z]+").fullmatch
#: A header value as HTTP/1.1 allows it (no CR, LF or other control character);
#: websockets 17 has the same test, websockets 15 (the oldest admitted) does not export one.
is_valid_header_value: Final = re.compile(r"[\x09\x20-\x7e\x80-\xff]*").fullmatch

#: A ``max_size`` below this is taken for a pool size typed in the wrong place
#: (asyncpg's and psycopg_pool's ``max_size`` is one), and warned about.
SMALLEST_LIKELY_MAX_SIZE: Final = 1024

logger: Final = logging.getLogger("aio_websocket_pool")

#: Arguments that the pool sets itself from its own arguments.
_RESERVED: Final = {
    "additional_headers": "pass headers= instead of additional_headers=",
    "uri": "pass the URI as the pool's uri argument",
}


def _connect_parameters() -> frozenset[str]:
    """Keyword arguments websockets' connect() and the loop's create_connection() take."""
    own = inspect.signature(connect.__init__).parameters
    loop_side = inspect.signature(asyncio.AbstractEventLoop.create_connection).parameters
    names = {n for n, p in own.items() if p.kind is p.KEYWORD_ONLY}
    names |= {n for n in loop_side if n not in ("self", "protocol_factory")}
    if "proxy" in names:  # TLS to an HTTPS proxy is configured with proxy_-prefixed names
        names |= PROXY_TLS_PARAMETERS
    return frozenset(names)


CONNECT_PARAMETERS: Final = _connect_parameters()


def default_drain_condition(message: str | bytes) -> bool:
    """0.1.0's rule: any non-empty message is stray data to drop; an empty one is not."""
    return len(message) > 0


def check_uri(uri: object) -> str:
    """Return ``uri`` if it is a ws:// or wss:// URI with a host.

    Raises:
        TypeError: ``uri`` is not a string.
        ValueError: wrong scheme, no host, a bad port or a fragment.
    """
    if not isinstance(uri, str):
        raise TypeError(f"uri must be a str, not {type(uri).__name__}")
    shown = redact_uri(uri)
    try:
        parts = urllib.parse.urlsplit(uri)
        parts.port  # noqa: B018  (raises ValueError for a port that is not a number in range)
    except ValueError:
        raise ValueError(f"uri {shown!r} is not a valid URI") from None
    if parts.scheme not in ("ws", "wss"):
        raise ValueError(f"uri {shown!r} must use the ws:// or wss:// scheme")
    if not parts.hostname:
        raise ValueError(f"uri {shown!r} has no host")
    if parts.fragment:
        raise ValueError(f"uri {shown!r} must not have a #fragment")
    if parts.port == 0:
        raise ValueError(f"uri {shown!r} has port 0, which cannot be connected to")
    if parts.username is not None and parts.password is None:
        raise ValueError(f"uri {shown!r} has a user name but no password")
    try:
        for credential in (parts.username or "", parts.password or ""):
            urllib.parse.unquote(credential, errors="strict")
    except UnicodeDecodeError:
        raise ValueError(f"uri {shown!r} has user-info that is not percent-encoded UTF-8") from None
    return uri


def check_headers(headers: object) -> dict[str, str]:
    """Return a copy of ``headers`` as a dict of str to str.

    Each header goes into the handshake as written, so one that websockets
    would refuse (a line break in a value, which would also split the request)
    fails here, not at the first handshake, where websockets' error would quote
    the value. The pool sends one value per name; a name given twice (a
    websockets ``Headers`` allows that; names are case-insensitive) would
    silently lose one of them, so it is an error too. Messages name the header,
    never its value.
    """
    if headers is None:
        return {}
    if not isinstance(headers, Mapping):
        raise TypeError(f"headers must be a mapping of str to str, not {type(headers).__name__}")
    items = headers.raw_items() if isinstance(headers, Headers) else headers.items()
    checked: dict[str, str] = {}
    names: set[str] = set()
    for name, value in items:
        if not isinstance(name, str) or not isinstance(value, str):
            raise TypeError(f"header {name!r}: names and values must be str")
        if not is_valid_header_name(name):
            raise ValueError(f"header name {name!r} is not an HTTP token")
        if not is_valid_header_value(value):
            raise ValueError(f"header {name!r} has a value with a line break or control character")
        if name.lower() in names:
            raise ValueError(f"header {name!r} is given more than once: pass one value per name")
        names.add(name.lower())
        checked[name] = value
    return checked


def check_number(name: str, value: object, *, minimum: float = 0.0, strict: bool = False) -> float:
    """Return ``value`` as a float if it is a real number no less than ``minimum``.

    Args:
        name: The argument's name, for the message.
        value: What the caller passed.
        minimum: The lowest value allowed.
        strict: Whether ``minimum`` itself is excluded.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number, not {type(value).__name__}")
    if math.isnan(value) or value < minimum or (strict and value == minimum):
        bound = "greater than" if strict else "at least"
        raise ValueError(f"{name} must be {bound} {minimum:g}, got {value!r}")
    return float(value)


def check_name(name: object) -> str:
    """A pool's ``name``: a short, printable, non-empty string (it goes into every log line)."""
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, not {type(name).__name__}")
    if not name or not name.isprintable() or len(name) > 100:
        raise ValueError("name must be 1 to 100 printable characters")
    return name


def check_optional_number(name: str, value: object) -> float | None:
    """Like :func:`check_number` with a minimum of 0, where ``None`` means "no limit"."""
    return None if value is None else check_number(name, value)


def check_optional_positive(name: str, value: object) -> float | None:
    """Like :func:`check_number` with 0 excluded, where ``None`` means "no limit"."""
    return None if value is None else check_number(name, value, strict=True)


def check_hook(name: str, value: object) -> Any:
    """Return ``value`` if it is ``None`` or an async callable (``async def``).

    Checked here because a plain function would only fail when the pool first
    awaited its result, in the middle of a hand-out.
    """
    if value is None:
        return None
    is_async = inspect.iscoroutinefunction(value) or inspect.iscoroutinefunction(
        getattr(value, "__call__", None)  # noqa: B004  (an object with an async __call__)
    )
    if not is_async:
        raise TypeError(f"{name} must be an async function (async def) or None")
    return value


def check_count(name: str, value: object, *, minimum: int, maximum: int | None = None) -> int:
    """Return ``value`` if it is an int no less than ``minimum`` (and no more than ``maximum``)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value!r}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be at most {maximum}, got {value!r}")
    return value


def check_history_size(value: object) -> int:
    """``history_size``: the length of a list, so at most ``sys.maxsize`` (found by fuzzing)."""
    return check_count("history_size", value, minimum=1, maximum=sys.maxsize)


def check_connect_kwargs(
    uri: str, kwargs: Mapping[str, Any], *, owner: str = "a connection"
) -> dict[str, Any]:
    """Return ``kwargs`` if websockets' ``connect()`` accepts every one of them.

    Building (not awaiting) a ``connect`` object runs websockets' own checks
    (``ssl`` with ``ws://``, an unknown ``compression``, bad subprotocols)
    without any I/O, so they fail here instead of at the first acquire. A
    ``max_size`` below 1 KiB is valid but almost surely a pool size typed in
    the wrong place: it is logged as a warning. A ``user_agent_header``
    with a line break or control character is refused here, without quoting
    it: websockets 17 refuses it at the handshake (quoting it), websockets 15
    sends it, splitting the request.

    The proxy websockets would take from the environment (its default,
    ``proxy=True``) is found here, once: a change to ``HTTPS_PROXY`` and the
    like after construction is not seen, as in httpx's clients. websockets
    would read the whole environment again for every handshake. A redirect's
    target gets its own proxy, looked up when it is followed (see
    :class:`~aio_websocket_pool._websocket.PooledConnect`).
    """
    for name in kwargs:
        if name in _RESERVED:
            raise TypeError(f"unexpected keyword argument {name!r}: {_RESERVED[name]}")
        if name not in CONNECT_PARAMETERS:
            raise TypeError(
                f"unexpected keyword argument {name!r}: not an argument of "
                "websockets.asyncio.client.connect()"
            )
    agent = kwargs.get("user_agent_header")
    if isinstance(agent, str) and not is_valid_header_value(agent):
        raise ValueError(
            "user_agent_header must not contain a line break or another control character"
        )
    max_size = kwargs.get("max_size")
    if isinstance(max_size, int) and max_size < SMALLEST_LIKELY_MAX_SIZE:
        logger.warning(
            "%s: max_size=%d limits each incoming message to %d bytes (it is websockets' message "
            "size limit, not the pool's size: that is max_connections); a larger message "
            "closes its connection with code 1009",
            owner,
            max_size,
            max_size,
        )
    if kwargs.get("ssl") is not None and urllib.parse.urlsplit(uri).scheme == "ws":
        raise ValueError("ssl= applies to wss:// URIs only; this one is ws://")
    try:
        connect(uri, **kwargs)
    # Both quote the URI, or the user-info that failed to decode, secrets and all.
    except (InvalidURI, UnicodeError):
        raise ValueError(f"uri {redact_uri(uri)!r} is not a valid WebSocket URI") from None
    if not PROXY_TLS_PARAMETERS.isdisjoint(kwargs):
        _check_proxy_tls(kwargs)
    checked = dict(kwargs)
    if checked.get("proxy", True) is True:  # websockets' default: the environment's proxy
        checked["proxy"] = find_proxy(uri)
        checked["proxy_found_for_uri"] = True  # for PooledConnect: not for a redirect's target
    return checked


def _check_proxy_tls(kwargs: Mapping[str, Any]) -> None:
    """``proxy_ssl`` and the like set up TLS to an ``https://`` proxy: refused where none is used.

    websockets finds out at every handshake (a ``TypeError`` for a direct
    connection, a ``ValueError`` for an ``http://`` proxy), which the pool
    would report as a connection that could not be opened. With the
    environment's proxy (the default), each hop's proxy decides, so nothing
    is refused here. The proxy is named by its scheme only: its URI may hold
    credentials.
    """
    names = ", ".join(sorted(PROXY_TLS_PARAMETERS.intersection(kwargs)))
    proxy = kwargs.get("proxy", True)
    if proxy is None or kwargs.get("sock") is not None:  # websockets uses no proxy with a sock
        raise TypeError(f"{names} set up TLS to an https:// proxy; this connection uses none")
    if isinstance(proxy, str) and (scheme := urllib.parse.urlsplit(proxy).scheme) != "https":
        raise ValueError(f"{names} set up TLS to an https:// proxy; the proxy given is {scheme}://")


def _check_minimum(min_connections: object, max_connections: int) -> int:
    minimum = check_count("min_connections", min_connections, minimum=0)
    if minimum > max_connections:
        raise ValueError(
            f"min_connections ({minimum}) must not exceed max_connections ({max_connections})"
        )
    return minimum


@dataclass(frozen=True, slots=True, kw_only=True)
class PoolConfig:
    """The pool's validated settings. See the pool's docstring for their meaning.

    The fields that can carry secrets are left out of the repr.
    """

    uri: str = field(repr=False)
    headers: dict[str, str] = field(repr=False)
    idle_timeout: float
    max_connections: int
    max_retries: int
    cleanup_interval: float
    connection_timeout: float
    warmup_connections: int
    check_server_data_on_release: bool
    drain_timeout: float
    drain_quiet_period: float
    drain_condition: DrainConditionCallback
    acquire_timeout: float | None
    health_check_interval: float | None
    health_check_timeout: float
    history_size: int
    on_connect: ConnectionHook | None
    on_acquire: ConnectionHook | None
    on_release: ConnectionHook | None
    on_unsolicited: UnsolicitedMessageHook | None
    hook_timeout: float
    max_lifetime: float | None
    min_connections: int
    max_waiting: int | None
    drain_max_messages: int
    drain_max_bytes: int
    connect_kwargs: dict[str, Any] = field(repr=False)
    #: What no log, report or error may show (:func:`~._redact.secrets_of`), found once per
    #: pool: every connection of it masks the same ones.
    secrets: tuple[str, ...] = field(repr=False)

    def resized(self, *, max_connections: object, min_connections: object) -> PoolConfig:
        """This config with other size limits, checked as the constructor checks them.

        Raises:
            TypeError: A limit is not an int.
            ValueError: A limit is out of range, or the minimum exceeds the maximum.
        """
        max_conns = check_count("max_connections", max_connections, minimum=1)
        minimum = _check_minimum(min_connections, max_conns)
        return dataclasses.replace(self, max_connections=max_conns, min_connections=minimum)

    @classmethod
    def from_arguments(
        cls,
        *,
        uri: object,
        headers: object,
        idle_timeout: object,
        max_connections: object,
        max_retries: object,
        cleanup_interval: object,
        connection_timeout: object,
        warmup_connections: object,
        check_server_data_on_release: object,
        drain_timeout: object,
        drain_quiet_period: object,
        drain_condition: object,
        acquire_timeout: object,
        health_check_interval: object,
        health_check_timeout: object,
        history_size: object,
        on_connect: object,
        on_acquire: object,
        on_release: object,
        on_unsolicited: object,
        hook_timeout: object,
        max_lifetime: object,
        min_connections: object,
        max_waiting: object,
        drain_max_messages: object,
        drain_max_bytes: object,
        connect_kwargs: Mapping[str, Any],
        owner: str,
    ) -> PoolConfig:
        """Check every argument and build the config.

        Raises:
            TypeError: An argument has the wrong type, or an unknown keyword
                argument was passed on to websockets.
            ValueError: An argument is out of range.
        """  # fmt: skip
        max_conns = check_count("max_connections", max_connections, minimum=1)
        warmup = check_count("warmup_connections", warmup_connections, minimum=0)
        if warmup > max_conns:
            raise ValueError(
                f"warmup_connections ({warmup}) must not exceed max_connections ({max_conns})"
            )
        minimum = _check_minimum(min_connections, max_conns)
        drain = check_number("drain_timeout", drain_timeout, strict=True)
        quiet = check_number("drain_quiet_period", drain_quiet_period)
        if not isinstance(check_server_data_on_release, bool):
            raise TypeError("check_server_data_on_release must be a bool")
        # Checked only where draining is on: 0.1.0 code may set a drain_timeout
        # below the default quiet period on a pool that never drains.
        if check_server_data_on_release and quiet >= drain:
            raise ValueError(
                f"drain_quiet_period ({quiet:g}) must be shorter than drain_timeout "
                f"({drain:g}), or every drain would time out"
            )
        if drain_condition is not None and not callable(drain_condition):
            raise TypeError("drain_condition must be callable or None")
        checked_uri, checked_headers = check_uri(uri), check_headers(headers)
        return cls(
            uri=checked_uri,
            headers=checked_headers,
            secrets=secrets_of(checked_uri, checked_headers),
            idle_timeout=check_number("idle_timeout", idle_timeout),
            max_connections=max_conns,
            max_retries=check_count("max_retries", max_retries, minimum=1),
            cleanup_interval=check_number("cleanup_interval", cleanup_interval, strict=True),
            connection_timeout=check_number("connection_timeout", connection_timeout, strict=True),
            warmup_connections=warmup,
            check_server_data_on_release=check_server_data_on_release,
            drain_timeout=drain,
            drain_quiet_period=quiet,
            drain_condition=drain_condition or default_drain_condition,
            acquire_timeout=check_optional_number("acquire_timeout", acquire_timeout),
            health_check_interval=check_optional_number(
                "health_check_interval", health_check_interval
            ),
            health_check_timeout=check_number(
                "health_check_timeout", health_check_timeout, strict=True
            ),
            history_size=check_history_size(history_size),
            on_connect=check_hook("on_connect", on_connect),
            on_acquire=check_hook("on_acquire", on_acquire),
            on_release=check_hook("on_release", on_release),
            on_unsolicited=check_hook("on_unsolicited", on_unsolicited),
            hook_timeout=check_number("hook_timeout", hook_timeout, strict=True),
            max_lifetime=check_optional_positive("max_lifetime", max_lifetime),
            min_connections=minimum,
            max_waiting=None
            if max_waiting is None
            else check_count("max_waiting", max_waiting, minimum=0),
            drain_max_messages=check_count("drain_max_messages", drain_max_messages, minimum=1),
            drain_max_bytes=check_count("drain_max_bytes", drain_max_bytes, minimum=1),
            connect_kwargs=check_connect_kwargs(checked_uri, connect_kwargs, owner=owner),
        )
