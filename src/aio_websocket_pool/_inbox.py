"""What a pooled connection receives while nobody holds it.

While a connection is lent to nobody (idle, draining, or not yet handed out
at all), its messages belong to the pool, however many arrive. An
:class:`Inbox` is attached to the connection's websocket as its frame sink
(:attr:`~aio_websocket_pool._websocket.PooledWebSocket.sink`) for that time
and takes every data frame as it arrives, inside websockets' own
``data_received``. So the socket is always read: a burst cannot fill
websockets' buffer, stop the reading, and stall a health check's pong behind
it, and nothing that arrived while idle is left for the next borrower.

Synchronous and free of I/O: the pool decides what a message or a flood
means (see :meth:`._cleaning.Cleaning.take_message`); this only assembles
messages, counts them and tells. It runs inside websockets' protocol
callback, so it must never raise there: anything unexpected becomes a
failure the pool acts on.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from websockets.frames import Frame, Opcode

if TYPE_CHECKING:
    import asyncio


class Assembler:
    """Data frames in, whole messages out: what websockets' ``recv()`` does, for a frame sink.

    Shared by the :class:`Inbox` and a multiplexer's channels, which both take
    frames inside websockets' ``data_received``.
    """

    __slots__ = ("_fragments", "_opcode")

    def __init__(self) -> None:
        self._fragments: list[bytes] = []
        self._opcode: Opcode | None = None  # of the message being assembled

    @property
    def partial(self) -> bool:
        """Whether a fragmented message has begun and not ended."""
        return self._opcode is not None

    def add(self, frame: Frame) -> str | bytes | None:
        """The message ``frame`` completes (``str`` for text), or ``None`` for a fragment.

        Raises:
            ValueError: The frames break the protocol's order, or a text
                message is not valid UTF-8 (``UnicodeDecodeError``); what was
                assembled is dropped.
        """
        if frame.opcode is Opcode.CONT:
            if self._opcode is None:
                raise ValueError("a continuation frame came without the start of its message")
        elif self._opcode is not None:
            self.clear()
            raise ValueError("a message began before the previous one ended")
        elif frame.fin:  # a whole message in one frame, as nearly every one is
            return str(frame.data, "utf-8") if frame.opcode is Opcode.TEXT else bytes(frame.data)
        else:
            self._opcode = frame.opcode
        self._fragments.append(bytes(frame.data))
        if not frame.fin:
            return None
        payload = b"".join(self._fragments)
        text = self._opcode is Opcode.TEXT
        self.clear()
        return payload.decode() if text else payload

    def clear(self) -> None:
        """Drop what was assembled."""
        self._fragments.clear()
        self._opcode = None


class Inbox:
    """Takes a connection's data frames while it is lent to nobody.

    Two modes, by :attr:`keeping`:

    * keeping: before the first hand-out of a connection that has no
      ``on_connect``, frames are kept as they came and go back to
      websockets for the first borrower. What a server sends right after the
      handshake (a greeting) is the first borrower's, as on a plain
      websockets connection.
    * taking: every complete message goes to ``on_message`` at once.

    Either way, every message and byte counts against the caps, from the
    moment the connection was last given back: beyond either, ``on_failure``
    is told once (a flood) and the inbox takes nothing more.

    Args:
        max_messages: Messages allowed since the connection was last given back.
        max_bytes: Payload bytes allowed since then.
        on_message: Given each complete message (``str`` for text) in taking mode.
        on_failure: Told, once, why the connection cannot be kept (a flood, bad UTF-8).
    """

    __slots__ = (
        "_assembler",
        "_max_bytes",
        "_max_messages",
        "_on_failure",
        "_on_message",
        "delivery",
        "failed",
        "keeping",
        "kept",
        "last_arrival",
        "messages",
        "size",
        "undelivered",
    )

    def __init__(
        self,
        *,
        max_messages: int,
        max_bytes: int,
        on_message: Callable[[str | bytes], None],
        on_failure: Callable[[str], None],
        keeping: bool,
    ) -> None:
        self._max_messages = max_messages
        self._max_bytes = max_bytes
        self._on_message = on_message
        self._on_failure = on_failure
        self.keeping = keeping
        self.kept: list[Frame] = []
        self._assembler = Assembler()
        self.messages = 0
        self.size = 0
        self.last_arrival = -math.inf  # monotonic clock
        self.failed = False
        #: Messages the pool took and has yet to give ``on_unsolicited``; made on first use,
        #: since most pools set no such hook and an empty deque is 0.6 KiB per connection.
        self.undelivered: deque[str | bytes] | None = None
        #: The task giving them to ``on_unsolicited``, while there are any.
        self.delivery: asyncio.Task[None] | None = None

    @property
    def partial(self) -> bool:
        """Whether a fragmented message has begun and not ended (taking mode)."""
        return self._assembler.partial

    def restart_count(self) -> None:
        """Start counting against the caps again: the connection was just handed out."""
        self.messages = self.size = 0

    def take_kept(self) -> list[Frame]:
        """Stop keeping; return what was kept, for the first borrower."""
        self.keeping = False
        kept, self.kept = self.kept, []
        return kept

    def put(self, frame: Frame) -> None:
        """The frame sink. Never raises: it runs inside websockets' ``data_received``."""
        if self.failed:
            return
        try:
            self._put(frame)
        except Exception as exc:  # noqa: BLE001  (an on_message bug must not break websockets)
            self._fail(f"taking an unsolicited message raised {type(exc).__name__}")

    def _put(self, frame: Frame) -> None:
        self.last_arrival = time.monotonic()
        self.size += len(frame.data)
        if frame.fin:
            self.messages += 1
        if self.messages > self._max_messages or self.size > self._max_bytes:
            self._fail(
                f"flooded: {self.messages} messages, {self.size} bytes since it was given back"
            )
            return
        if self.keeping:
            self.kept.append(frame)
            return
        try:
            message = self._assembler.add(frame)
        except UnicodeDecodeError:
            self._fail("a text message was not valid UTF-8")
            return
        except ValueError as exc:
            self._fail(str(exc))
            return
        if message is not None:
            self._on_message(message)

    def _fail(self, reason: str) -> None:
        self.failed = True
        self.kept.clear()
        self._assembler.clear()
        self._on_failure(reason)
