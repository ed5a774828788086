"""Every websockets internal the pool relies on, in one place.

websockets' asyncio ``ClientConnection`` has no public way to say when the
last pong came, how many frames wait unread, or to take frames away from the
next ``recv()``; and no way to send a message without a coroutine and an
async context manager of its own. The pool needs all four, so this module
reaches into the connection for them, and nowhere else does. Each attribute used here is the
same from websockets 15 to 17, the range pyproject.toml admits, and the test
suite runs on both ends of that range. It also finds the proxy ``connect()``
would pick from the environment, whose function moved between those versions.

The one behaviour added is frame routing. While a pooled connection is lent
to nobody, :attr:`PooledWebSocket.sink` is set and every data frame goes to it
(the pool's :class:`~aio_websocket_pool._inbox.Inbox`) as it arrives, inside
websockets' own ``data_received``: no task per idle connection, no buffer that
fills up and stops the socket being read, nothing on the borrower's path but
one attribute test per frame.
"""

from __future__ import annotations

import functools
import math
import time
import urllib.parse
from collections.abc import Callable
from typing import Any, Final

from websockets.asyncio.client import ClientConnection, connect
from websockets.frames import Frame, Opcode
from websockets.protocol import SEND_EOF, Event, State
from websockets.uri import parse_uri

try:
    from websockets.proxy import get_proxy
except ImportError:  # pragma: no cover  (websockets 15: the oldest run of the suite takes it)
    from websockets.uri import get_proxy  # type: ignore[attr-defined, no-redef]

OPEN: Final = State.OPEN

#: The opcodes of frames that carry a message (or a piece of one).
DATA_OPCODES: Final = frozenset({Opcode.TEXT, Opcode.BINARY, Opcode.CONT})

#: Takes a data frame off the connection as it arrives.
FrameSink = Callable[[Frame], None]


class PooledWebSocket(ClientConnection):
    """A websockets client connection the pool can take frames from.

    Attributes:
        pong_at: When the last pong came (monotonic clock). websockets
            measures each ping's round trip but not when the pong came; a pong
            of its keepalive proves the peer alive as well as the pool's own
            health check, so the pool can skip a check the keepalive did.
        sink: While set, data frames go here instead of to ``recv()``.
        writing_in_turn: A write of the frames :func:`send_in_turn` queued
            is due at the end of this loop turn.
        held_in_turn: Bytes of data :func:`send_in_turn` holds for that write.
    """

    pong_at: float = -math.inf
    sink: FrameSink | None = None
    writing_in_turn: bool = False
    held_in_turn: int = 0

    def acknowledge_pings(self, data: bytes) -> None:
        super().acknowledge_pings(data)
        self.pong_at = time.monotonic()

    def process_event(self, event: Event) -> None:
        sink = self.sink
        if sink is not None and isinstance(event, Frame) and event.opcode in DATA_OPCODES:
            sink(event)
        else:
            super().process_event(event)


@functools.cache
def pooled_class(connection_class: type[ClientConnection]) -> type[PooledWebSocket]:
    """``connection_class`` (a user's ``create_connection``) with frame routing mixed in."""
    if issubclass(connection_class, PooledWebSocket):
        return connection_class
    return type(f"{connection_class.__name__}Pooled", (PooledWebSocket, connection_class), {})


def buffered_frames(websocket: ClientConnection) -> int:
    """Frames received that nobody has read yet (no I/O)."""
    # The queue's deque, not the queue: its __len__ is a Python call, on every release.
    return len(websocket.recv_messages.frames.queue)


def is_open(websocket: ClientConnection) -> bool:
    """Whether the WebSocket is open (no I/O).

    The protocol's own field: ``websocket.state`` reads it through two
    Python properties, and this runs on every hand-out and release.
    """
    return websocket.protocol._state is OPEN


def take_buffered_frames(websocket: ClientConnection) -> list[Frame]:
    """Take every unread frame away from ``recv()``, oldest first.

    Reading resumes if websockets had paused it for a full buffer. Only for a
    connection nobody is receiving on (see :func:`is_receiving`).
    """
    assembler = websocket.recv_messages
    queue = assembler.frames.queue
    frames = list(queue)
    queue.clear()
    assembler.maybe_resume()
    return frames


def give_back_frames(websocket: ClientConnection, frames: list[Frame]) -> None:
    """Queue ``frames`` for ``recv()`` behind what is already there, in order."""
    assembler = websocket.recv_messages
    for frame in frames:
        assembler.frames.put(frame)
    assembler.maybe_pause()


def is_receiving(websocket: ClientConnection) -> bool:
    """Whether a ``recv()`` is running on it right now (and may take the next message)."""
    return websocket.recv_messages.get_in_progress


def peer_close_code(websocket: ClientConnection) -> int | None:
    """The close code the peer sent, as soon as its close frame came."""
    received = websocket.protocol.close_rcvd
    return None if received is None else received.code


def loss_reason(websocket: ClientConnection | None) -> str:
    """Why a connection is not open, in words fit for its history."""
    if websocket is None:
        return "connection lost"
    # close_code is only set once the TCP connection is gone; the frame the
    # peer sent is known as soon as the close handshake starts.
    if (received := peer_close_code(websocket)) is not None:
        return f"closed by peer: close code {received}"
    if (sent := websocket.protocol.close_sent) is not None:
        # websockets closed it itself: a message over max_size (1009), ...
        return f"closed by this side: close code {sent.code}"
    if websocket.close_code is not None:
        return f"closed: close code {websocket.close_code}"
    return "connection lost"


def send_at_once(
    websocket: ClientConnection, data: bytes | bytearray | memoryview, *, text: bool
) -> bool:
    """Write ``data`` as one frame (text or binary) now, if ``send()`` would write it at once.

    That is: the connection is open, no fragmented message is being sent, and
    the write buffer is below its high-water mark. Then this does what
    ``send()`` does (the frame, then the socket write) without its coroutine,
    its ``send_context`` and its ``drain``: a send saves about 3 µs.
    Otherwise it writes nothing and returns ``False``: ``await
    websocket.send(data, text=text)`` then waits, or raises
    ``ConnectionClosed``, as it should.
    """
    if not _frame(websocket, data, text=text):
        return False
    websocket.send_data()
    return True


#: Bytes of data one loop turn may hold back for its joined write. Past this,
#: what is held is written at once: a turn of large messages is not copied
#: once more by the join, and the transport's flow control (``paused``, which
#: sends later callers through ``send()`` and its drain) sees every byte.
TURN_BYTES: Final = 65536


def send_in_turn(
    websocket: PooledWebSocket, data: bytes | bytearray | memoryview, *, text: bool
) -> bool:
    """:func:`send_at_once`, but the frames sent after it in the same loop turn share one write.

    The first frame of a turn is written at once; the others wait in
    websockets' outgoing buffer, in order, for one socket write when the turn
    ends (or sooner, once they hold :data:`TURN_BYTES`). A multiplexer's
    callers send many requests on a connection in one turn, and a write each
    was a system call each (about 8 µs of a call's 26 in M1). Whatever else
    writes on the connection meanwhile (a ping, a ``send()`` that had to
    wait, the close) writes the buffer first, so the order on the wire is the
    order of the sends.
    """
    if not _frame(websocket, data, text=text):
        return False
    if not websocket.writing_in_turn:
        websocket.send_data()
        websocket.writing_in_turn = True
        websocket.held_in_turn = 0
        websocket.loop.call_soon(_write_the_turns_frames, websocket)
    else:
        held = websocket.held_in_turn + len(data)
        if held > TURN_BYTES:
            websocket.send_data()
            held = 0
        websocket.held_in_turn = held
    return True


def _write_the_turns_frames(websocket: PooledWebSocket) -> None:
    websocket.writing_in_turn = False
    protocol = websocket.protocol
    frames = protocol.writes  # what data_to_send() would take: at most TURN_BYTES of data
    if not frames or websocket.transport.is_closing():  # written, or lost with the connection
        return
    if len(frames) > 1 and SEND_EOF not in frames:
        protocol.writes = [b"".join(frames)]
    websocket.send_data()


def _frame(
    websocket: ClientConnection, data: bytes | bytearray | memoryview, *, text: bool
) -> bool:
    """Queue ``data`` as a frame for the socket, if ``send()`` would write it at once."""
    attributes = websocket.__dict__
    if (
        websocket.protocol._state is not OPEN  # the field, not its property (see is_open)
        or websocket.paused
        or websocket.transport.is_closing()
        or attributes.get("send_in_progress") is not None  # websockets 16-17
        or attributes.get("fragmented_send_waiter") is not None  # websockets 15
    ):
        return False
    if text:
        websocket.protocol.send_text(data)
    else:
        websocket.protocol.send_binary(data)
    return True


def find_proxy(uri: str) -> str | None:
    """The proxy ``connect(uri)`` takes from the environment by default (``proxy=True``), if any.

    websockets looks it up on every connect, reading every environment
    variable (about 40 µs of a handshake's 350 µs of client CPU in W4); a
    pool, whose connections all go to one URI, looks it up once and opens
    them with :class:`PooledConnect`.
    """
    return get_proxy(parse_uri(uri))


#: websockets' arguments for the TLS to an HTTPS proxy. With no proxy they go
#: to the loop's ``create_connection()``, which refuses them.
PROXY_TLS_PARAMETERS: Final = frozenset(
    {
        "proxy_ssl",
        "proxy_server_hostname",
        "proxy_ssl_handshake_timeout",
        "proxy_ssl_shutdown_timeout",
    }
)


class PooledConnect(connect):
    """websockets' ``connect``, which may be given the environment's proxy found in advance.

    With ``proxy_found_for_uri=True``, ``proxy`` is what :func:`find_proxy`
    found for ``uri``: right for ``uri`` only. A redirect leads to another
    URI, which the environment may send through another proxy or none (a host
    in ``NO_PROXY``, a move from ws:// to wss://, which reads ``HTTPS_PROXY``),
    so after one the proxy is looked up again for the new target, as
    websockets does by default.

    The environment decides per URI which proxy is used, if any, so the TLS
    settings for an HTTPS proxy (``proxy_ssl`` and the like) are passed on
    only for a hop through one: websockets alone would hand them to
    ``create_connection()`` for a direct hop (a ``TypeError``) and refuse
    them for an ``http://`` proxy (a ``ValueError``).
    """

    def __init__(self, uri: str, *, proxy_found_for_uri: bool = False, **kwargs: Any) -> None:
        super().__init__(uri, **kwargs)
        self._proxy_found_for_uri = proxy_found_for_uri
        self._given = kwargs  # kept whole: websockets' own copy is changed per hop
        if proxy_found_for_uri and not PROXY_TLS_PARAMETERS.isdisjoint(kwargs):
            self._route(self.proxy)

    def process_redirect(self, exc: Exception) -> Exception | str:
        target = super().process_redirect(exc)
        if isinstance(target, str) and self._proxy_found_for_uri:
            self.proxy = find_proxy(target)
            self._route(self.proxy)
        return target

    def _route(self, proxy: str | bool | None) -> None:
        """Give websockets the proxy's TLS settings for a hop through an HTTPS ``proxy`` only."""
        attributes = self.__dict__
        name_of_kwargs = "create_connection_kwargs"  # websockets 16-17
        connection_kwargs: dict[str, Any] = attributes[
            name_of_kwargs if name_of_kwargs in attributes else "connection_kwargs"  # 15
        ]
        through_https = isinstance(proxy, str) and urllib.parse.urlsplit(proxy).scheme == "https"
        for name in PROXY_TLS_PARAMETERS.intersection(self._given):
            if through_https:
                connection_kwargs[name] = self._given[name]
            else:
                connection_kwargs.pop(name, None)
