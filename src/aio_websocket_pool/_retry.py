"""Which failed handshakes are worth another try, and how long to wait.

A connection refused, a timeout, an HTTP 5xx or a 429 may pass: the server is
restarting, overloaded or rate-limiting. Any other HTTP 4xx will not: the same
credentials get the same 401. So transient errors are retried with exponential backoff and jitter
(jitter spreads the retries of many connections that failed together), and
everything else fails at once.

The caller never sees tenacity: after the last attempt it gets a
:class:`~aio_websocket_pool.ConnectionUnavailableError` chained from the last
cause, or a :class:`~aio_websocket_pool.HandshakeRejectedError` for a 4xx.
That cause is a redacted copy (:func:`~aio_websocket_pool._redact.without_secrets`):
websockets' errors quote redirect targets, proxy URIs and header values.
"""

from __future__ import annotations

import functools
import logging
import ssl
from collections.abc import Awaitable, Callable
from typing import Final, TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)
from websockets.exceptions import InvalidMessage, InvalidStatus

from ._exceptions import ConnectionUnavailableError, HandshakeRejectedError
from ._redact import describe_error, raise_from

logger: Final = logging.getLogger("aio_websocket_pool")

T = TypeVar("T")

#: Seconds before the second attempt; doubled for each further one.
FIRST_RETRY_DELAY: Final = 0.1
#: The longest wait between two attempts, in seconds.
MAX_RETRY_DELAY: Final = 5.0
#: Up to this many seconds of random jitter are added to each wait.
RETRY_JITTER: Final = 0.1
#: The statuses that mean "not now" (overloaded, too many requests): retried, and
#: they shut the pool's shared gate for the ``Retry-After`` they ask for.
NOT_NOW_STATUSES: Final = frozenset({503, 429})


def is_transient(exc: BaseException) -> bool:
    """Whether trying the same handshake again might succeed.

    websockets' own rule for its reconnect loop (network errors, timeouts, a
    connection dropped mid-handshake, HTTP 500/502/503/504), widened to every
    5xx status and to 429 (Too Many Requests). Written out here because
    websockets moved that function between 15.x and 16.x. Cancellation is never
    retried.
    """
    if isinstance(exc, InvalidStatus):
        status = exc.response.status_code
        return status >= 500 or status in NOT_NOW_STATUSES
    if isinstance(exc, InvalidMessage):
        return isinstance(exc.__cause__, EOFError)
    if isinstance(exc, ssl.SSLCertVerificationError):
        return False  # the same certificate fails the same way: an OSError that is final
    return isinstance(exc, OSError | TimeoutError)


def server_says_not_now(exc: BaseException) -> float | None:
    """For an HTTP 503 or 429 refusal, the seconds its ``Retry-After`` asks for (0.0 if none).

    ``None`` for any other failure. Only the delay-seconds form of
    ``Retry-After`` is read; a date, or nonsense, counts as no header.
    """
    if not isinstance(exc, InvalidStatus) or exc.response.status_code not in NOT_NOW_STATUSES:
        return None
    retry_after = exc.response.headers.get("Retry-After", "")
    return float(retry_after) if retry_after.isdigit() else 0.0


async def open_with_retries(
    attempt: Callable[[], Awaitable[T]], *, max_attempts: int, where: str, who: str
) -> T:
    """Await ``attempt()`` until it succeeds, retrying transient failures.

    Args:
        attempt: Makes one connection attempt.
        max_attempts: How many attempts in all (the first included).
        where: The redacted URI, for messages.
        who: The connection's id, for the log line of each retry.

    Raises:
        HandshakeRejectedError: The server answered with a 4xx status (not 429).
        ConnectionUnavailableError: Every attempt failed, or the failure was
            not transient; ``__cause__`` is a redacted copy of the last error,
            and there is no ``__context__``.
    """
    # The first attempt pays for no retry machinery (an AsyncRetrying and its
    # iteration cost a cold handshake about 25 µs of CPU): tenacity is built only
    # once it has failed, and is handed that failure as its own first attempt, so
    # that the schedule, the log lines and the count of attempts are tenacity's.
    try:
        return await attempt()
    except Exception as exc:  # noqa: BLE001  (given to tenacity, which decides)
        first_failure: Exception | None = exc

    async def from_the_first_failure() -> T:
        nonlocal first_failure
        if first_failure is not None:
            failure, first_failure = first_failure, None
            raise failure
        return await attempt()

    retrying = AsyncRetrying(
        stop=stop_after_attempt(max_attempts),
        wait=wait_exponential(multiplier=FIRST_RETRY_DELAY, max=MAX_RETRY_DELAY)
        + wait_random(0, RETRY_JITTER),
        retry=retry_if_exception(is_transient),
        before_sleep=functools.partial(_log_retry, who),
        reraise=True,
    )
    try:
        async for attempt_state in retrying:
            with attempt_state:
                return await from_the_first_failure()
    except InvalidStatus as exc:
        status = exc.response.status_code
        if not is_transient(exc):
            raise_from(
                HandshakeRejectedError(
                    f"{where} rejected the WebSocket handshake with HTTP {status}",
                    status_code=status,
                ),
                exc,
            )
        raise_from(_unavailable(where, retrying, exc), exc)
    except Exception as exc:  # noqa: BLE001  (raised again, redacted)
        raise_from(_unavailable(where, retrying, exc), exc)
    raise AssertionError("unreachable: tenacity either returns or raises")  # pragma: no cover


def _unavailable(where: str, retrying: AsyncRetrying, exc: Exception) -> ConnectionUnavailableError:
    attempts = retrying.statistics.get("attempt_number", 1)
    tries = "1 attempt" if attempts == 1 else f"{attempts} attempts"
    return ConnectionUnavailableError(
        f"could not connect to {where} ({tries}): {describe_error(exc)}"
    )


def _log_retry(who: str, state: RetryCallState) -> None:
    if state.outcome is None or not logger.isEnabledFor(logging.INFO):
        return
    exc = state.outcome.exception()
    delay = state.next_action.sleep if state.next_action else 0.0
    logger.info(
        "%s: connect attempt %d failed (%s); retrying in %.2fs",
        who,
        state.attempt_number,
        describe_error(exc) if exc else "no error",
        delay,
    )
