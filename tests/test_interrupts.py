"""Ctrl+C stops a run wherever it lands: it is never mistaken for one item's failure.

CI caught `index` carrying on after SIGINT, with one file "failed: OSError: [Errno 9] Bad file
descriptor": the interrupt landed just after a file object took over its descriptor, the cleanup
closed the descriptor a second time, and the EBADF replaced the KeyboardInterrupt.
"""

from __future__ import annotations

import random
import signal
import threading
import time

import pytest

from multiembed.errors import hidden_interrupt
from multiembed.sources import read_bytes
from multiembed.workers import attempt


def test_interrupts_while_files_open_and_close_stay_interrupts_and_close_once(tmp_path):
    path = tmp_path / "note.txt"
    path.write_text("hello " * 10)
    main = threading.get_ident()
    done = threading.Event()
    armed = True

    def interrupt(signum: int, frame: object) -> None:  # Python's own handler, until disarmed
        if armed:
            raise KeyboardInterrupt

    def pester() -> None:  # SIGINTs at random moments of the open/read/close cycle
        while not done.is_set():
            time.sleep(random.random() * 0.0005)
            signal.pthread_kill(main, signal.SIGINT)

    interrupts = 0
    failures: dict[str, int] = {}
    previous = signal.signal(signal.SIGINT, interrupt)
    thread = threading.Thread(target=pester, daemon=True)
    thread.start()
    deadline = time.monotonic() + 3
    try:
        while time.monotonic() < deadline:
            try:
                read_bytes(path)  # no catch-all in between: the file handling alone must be right
            except KeyboardInterrupt:
                interrupts += 1
            except OSError as error:  # a descriptor closed twice (the second close may hit another file)
                failures[repr(error)] = failures.get(repr(error), 0) + 1
    finally:
        armed = False
        done.set()
        thread.join()
        signal.signal(signal.SIGINT, previous)
    assert interrupts > 100, "the interrupts must land"
    assert failures == {}, f"interrupts turned into item failures: {failures}"


def test_an_error_raised_while_handling_ctrl_c_is_the_ctrl_c():
    def cleanup_fails_during_interrupt(value: str) -> str:
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            raise OSError(9, "Bad file descriptor") from None  # `from None` hides, still __context__

    with pytest.raises(KeyboardInterrupt):
        attempt(cleanup_fails_during_interrupt, "x")
    assert attempt(lambda value: int(value), "not a number").startswith("ValueError")


def test_only_interrupts_count_as_hidden():
    try:
        try:
            raise ValueError("first")
        except ValueError:
            raise OSError("second") from None
    except OSError as error:
        assert hidden_interrupt(error) is None
