"""Pool-wide backoff: when the server says "not now", every new handshake waits.

A server that answers a handshake with HTTP 503, or closes a connection with
code 1013 (try again later), is overloaded. Retrying each connection on its
own schedule would still send it a storm of handshakes from a busy pool, so
the pool keeps one gate that all of its new handshakes pass through. Each
"not now" pushes the gate's opening further out, exponentially with the number
of signals in a row, with jitter (so that many clients spread out); a
successful handshake resets the count. Only a signal that comes while the gate
is open counts as a new one: the other refusals of a burst of handshakes sent
before the first answer came back are echoes of the same "not now", and must
not push one short overload to the maximum delay. A ``Retry-After`` the server sent is
honoured, up to :data:`MAX_DELAY`.
"""

from __future__ import annotations

import asyncio
import random
from typing import Final

#: Seconds of the first backoff (before jitter); doubled for each further signal.
BASE_DELAY: Final = 0.1
#: The longest backoff in seconds, whatever the signals or Retry-After say.
MAX_DELAY: Final = 10.0
#: Doublings beyond which the delay is MAX_DELAY anyway.
_MAX_DOUBLINGS: Final = 32


class Backoff:
    """The gate new handshakes wait at. Synchronous bookkeeping, one await."""

    __slots__ = ("_open_at", "_random", "_signals")

    def __init__(self, rng: random.Random | None = None) -> None:
        self._signals = 0
        self._open_at = 0.0  # event loop time
        self._random = rng or random.Random()  # noqa: S311  (jitter, not cryptography)

    def trip(self, retry_after: float | None = None) -> float:
        """Record one "not now" from the server; return the seconds the gate now stays shut."""
        now = asyncio.get_running_loop().time()
        delay = 0.0
        if now >= self._open_at:  # a new signal, not an echo of the one that shut the gate
            self._signals += 1
            # The exponent is capped too: 2.0 ** 1024 overflows, and a server may
            # say "not now" for hours.
            ceiling = min(MAX_DELAY, BASE_DELAY * 2.0 ** min(self._signals - 1, _MAX_DOUBLINGS))
            delay = self._random.uniform(ceiling / 2, ceiling)  # "equal jitter": never ~0
        if retry_after is not None:
            delay = max(delay, min(retry_after, MAX_DELAY))
        self._open_at = max(self._open_at, now + delay)
        return self._open_at - now

    def reset(self) -> None:
        """A handshake succeeded: the next signal starts the backoff from the bottom again."""
        self._signals = 0

    @property
    def remaining(self) -> float:
        """Seconds until the gate opens (0 when it is open)."""
        return max(0.0, self._open_at - asyncio.get_running_loop().time())

    async def wait(self) -> None:
        """Return once the gate is open (at once if it is)."""
        # A signal that arrives meanwhile moves the opening: look again after each sleep.
        while (remaining := self.remaining) > 0:  # noqa: ASYNC110
            await asyncio.sleep(remaining)
