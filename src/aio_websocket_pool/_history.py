"""History export: transition records as JSON lines, for tools and for later.

A connection's history, and the pool's, live in memory and go with the
process. Written out as JSON lines (one record per line) they can be kept
with a bug report, filtered with ``jq`` or loaded into anything that reads
JSON, to answer "why did my connection die?" after the fact.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any, Protocol

from ._fsm import TransitionRecord


class TextSink(Protocol):
    """Anything with a ``write(str)`` method: an open text file, ``sys.stdout``, a StringIO."""

    def write(self, text: str, /) -> object: ...


def write_history_jsonl(
    records: Iterable[TransitionRecord[Any]], file: str | os.PathLike[str] | TextSink
) -> int:
    """Write ``records`` as JSON lines, oldest first as given; return how many.

    Each line is :meth:`TransitionRecord.to_json`: ``time``, ``connection_id``,
    ``trigger``, ``source``, ``dest`` and ``reason``. Records never hold
    secrets or payloads, so neither does the file.

    Args:
        records: For example ``pool.history``, ``conn.history`` or ``rpc.history``.
        file: A path (created or overwritten, UTF-8) or an open text stream
            (written to, left open).
    """
    if isinstance(file, str | os.PathLike):
        with open(file, "w", encoding="utf-8") as stream:
            return write_history_jsonl(records, stream)
    written = 0
    for record in records:
        file.write(record.to_json() + "\n")
        written += 1
    return written
