"""What a connection lent to nobody receives (``_inbox``): assembly, caps, keeping, failures.

Fed websockets' own ``Frame`` objects, as its ``data_received`` hands them to
the frame sink; the pool's use of the inbox against real servers (bursts,
floods, greetings) is in ``tests/test_ownership.py`` and
``tests/test_server_signals.py``.
"""

from __future__ import annotations

import pytest
from websockets.frames import Frame, Opcode

from aio_websocket_pool._inbox import Assembler, Inbox


class Told:
    """The inbox's two callbacks, recording what they were told."""

    def __init__(self) -> None:
        self.messages: list[str | bytes] = []
        self.failures: list[str] = []

    def inbox(
        self, *, max_messages: int = 10, max_bytes: int = 1000, keeping: bool = False
    ) -> Inbox:
        return Inbox(
            max_messages=max_messages,
            max_bytes=max_bytes,
            on_message=self.messages.append,
            on_failure=self.failures.append,
            keeping=keeping,
        )


def text(data: str, *, fin: bool = True) -> Frame:
    return Frame(Opcode.TEXT, data.encode(), fin)


def cont(data: bytes, *, fin: bool) -> Frame:
    return Frame(Opcode.CONT, data, fin)


def test_whole_messages_come_out_as_str_or_bytes() -> None:
    assembler = Assembler()
    assert assembler.add(text("héllo")) == "héllo"
    assert assembler.add(Frame(Opcode.BINARY, b"\x00\xff")) == b"\x00\xff"
    assert not assembler.partial


def test_fragments_are_put_together_even_across_a_split_character() -> None:
    assembler = Assembler()
    encoded = "naïve".encode()  # the ï is two bytes: split between them
    assert assembler.add(Frame(Opcode.TEXT, encoded[:3], fin=False)) is None
    assert assembler.partial
    assert assembler.add(cont(encoded[3:4], fin=False)) is None
    assert assembler.add(cont(encoded[4:], fin=True)) == "naïve"
    assert not assembler.partial


@pytest.mark.parametrize(
    ("started", "then", "why"),
    [
        (None, cont(b"x", fin=True), "without the start"),
        (text("a", fin=False), text("b"), "began before the previous one ended"),
    ],
    ids=["orphan-continuation", "interleaved"],
)
def test_frames_out_of_order_are_refused_and_dropped(
    started: Frame | None, then: Frame, why: str
) -> None:
    assembler = Assembler()
    if started is not None:
        assembler.add(started)
    with pytest.raises(ValueError, match=why):
        assembler.add(then)
    assert not assembler.partial


def test_text_that_is_not_utf8_is_refused() -> None:
    with pytest.raises(UnicodeDecodeError):
        Assembler().add(Frame(Opcode.TEXT, b"\xff\xfe"))


def test_taking_mode_passes_each_message_on_and_counts_it() -> None:
    told = Told()
    inbox = told.inbox()
    inbox.put(text("one"))
    inbox.put(Frame(Opcode.BINARY, b"two", fin=False))
    inbox.put(cont(b"!", fin=True))
    assert told.messages == ["one", b"two!"]
    assert (inbox.messages, inbox.size) == (2, 7)
    assert told.failures == []


@pytest.mark.parametrize(
    ("max_messages", "max_bytes", "frames", "why"),
    [
        (2, 1000, [text("a")] * 3, "flooded: 3 messages, 3 bytes"),
        (10, 5, [text("abc"), text("def")], "flooded: 2 messages, 6 bytes"),
    ],
    ids=["messages", "bytes"],
)
def test_a_flood_is_told_once_and_nothing_more_is_taken(
    max_messages: int, max_bytes: int, frames: list[Frame], why: str
) -> None:
    told = Told()
    inbox = told.inbox(max_messages=max_messages, max_bytes=max_bytes)
    for frame in [*frames, text("after")]:
        inbox.put(frame)
    assert told.failures == [why + " since it was given back"]
    assert len(told.messages) == len(frames) - 1
    assert inbox.failed


def test_the_count_starts_again_at_each_hand_out() -> None:
    told = Told()
    inbox = told.inbox(max_messages=2)
    for _ in range(3):
        inbox.put(text("a"))
        inbox.put(text("b"))
        inbox.restart_count()  # the connection was lent and given back
    assert told.failures == []
    assert len(told.messages) == 6


def test_keeping_mode_keeps_frames_for_the_first_borrower_untouched() -> None:
    told = Told()
    inbox = told.inbox(keeping=True)
    greeting = [text("hel", fin=False), cont(b"lo", fin=True), Frame(Opcode.TEXT, b"\xff")]
    for frame in greeting:
        inbox.put(frame)  # even invalid UTF-8 is the borrower's to find out about
    assert told.messages == []
    assert inbox.take_kept() == greeting
    assert not inbox.keeping
    inbox.put(text("now taken"))
    assert told.messages == ["now taken"]


def test_keeping_mode_still_counts_against_the_caps() -> None:
    told = Told()
    inbox = told.inbox(max_messages=1, keeping=True)
    inbox.put(text("a"))
    inbox.put(text("b"))
    assert told.failures == ["flooded: 2 messages, 2 bytes since it was given back"]
    assert inbox.kept == []  # what was kept is dropped with the connection


def test_bad_utf8_in_taking_mode_fails_the_inbox() -> None:
    told = Told()
    inbox = told.inbox()
    inbox.put(Frame(Opcode.TEXT, b"\xff"))
    assert told.failures == ["a text message was not valid UTF-8"]


def test_a_callback_that_raises_never_escapes_into_websockets() -> None:
    failures: list[str] = []

    def broken(message: str | bytes) -> None:
        raise RuntimeError(message)

    inbox = Inbox(max_messages=5, max_bytes=100, on_message=broken,
                  on_failure=failures.append, keeping=False)  # fmt: skip
    inbox.put(text("boom"))
    assert failures == ["taking an unsolicited message raised RuntimeError"]
    inbox.put(text("ignored"))  # failed: nothing more is taken
    assert failures == ["taking an unsolicited message raised RuntimeError"]
