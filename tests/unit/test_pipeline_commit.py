"""The manifest write (the commit) is not cut by SIGTERM or SIGINT: a stop that arrives meanwhile
is handed to the handler it was meant for once the write is done, and a ``KeyboardInterrupt`` it
raises then is dropped, since the artifact it would have stopped is published (issue 19, item 10).
The whole command is tested by the fault suite (``backup:commit``, ``backup:committed``)."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from types import FrameType

import pytest

from dataferry import runspace


@pytest.fixture
def restore_handlers() -> Iterator[None]:
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def test_a_stop_during_the_commit_reaches_its_handler_after_it(restore_handlers: None) -> None:
    """A job runner's handler (it sets a flag) still hears of the stop, after the write."""
    heard: list[int] = []

    def runner_handler(signum: int, frame: FrameType | None) -> None:
        heard.append(signum)

    signal.signal(signal.SIGTERM, runner_handler)
    with runspace.stops_deferred() as stopped:
        os.kill(os.getpid(), signal.SIGTERM)
        assert heard == []  # not during the write
        committed = True
    assert committed and stopped == ["SIGTERM"] and heard == [signal.SIGTERM]
    assert signal.getsignal(signal.SIGTERM) is runner_handler


def test_the_commands_keyboard_interrupt_is_dropped_once_published(restore_handlers: None) -> None:
    """The command's own handler (SIGTERM and Ctrl-C raise KeyboardInterrupt) would report a
    failure for a published artifact: after the commit it is dropped."""

    def command_handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt("stopped by SIGTERM")

    signal.signal(signal.SIGTERM, command_handler)
    with runspace.stops_deferred() as stopped:
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGINT)
    assert stopped == ["SIGTERM", "SIGINT"]
    with pytest.raises(KeyboardInterrupt):  # outside the commit, a stop stops again
        os.kill(os.getpid(), signal.SIGTERM)


def test_a_failed_commit_still_fails(restore_handlers: None) -> None:
    with pytest.raises(OSError, match="store down"), runspace.stops_deferred():
        raise OSError("store down")
