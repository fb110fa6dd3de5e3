"""Ctrl+C stops a run wherever it lands: it is never mistaken for one item's failure.

CI caught `index` carrying on after SIGINT, with one file "failed: OSError: [Errno 9] Bad file
descriptor": the interrupt landed just after a file object took over its descriptor, the cleanup
closed the descriptor a second time, and the EBADF replaced the KeyboardInterrupt.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from multiembed.errors import hidden_interrupt
from multiembed.workers import attempt

#: A storm of SIGINTs at random moments of the open/read/close cycle, in a fresh interpreter: in
#: the test process, a signal could land in the finalizer of some earlier test's native object
#: (a gRPC channel, a compiled model) that does not expect EINTR, and crash pytest (seen once).
_STORM = """
import json, random, signal, sys, threading, time
from pathlib import Path
from multiembed.sources import read_bytes

path, main = Path(sys.argv[1]), threading.get_ident()
done, handled = threading.Event(), threading.Event()
lost = 0

def pester():  # one SIGINT in flight at a time, so none lands in the code that counts the last
    global lost
    while not done.is_set():
        handled.clear()
        time.sleep(random.random() * 0.0005)
        signal.pthread_kill(main, signal.SIGINT)
        if not handled.wait(timeout=2) and not done.is_set():
            lost += 1  # swallowed: neither an interrupt nor an error came out

interrupts, failures, finished = 0, {}, False
thread = threading.Thread(target=pester, daemon=True)
thread.start()
deadline = time.monotonic() + 3
while not finished:
    try:
        while time.monotonic() < deadline:
            read_bytes(path)  # no catch-all in between: the file handling alone must be right
        done.set()
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # inside the try: one may land just before
        finished = True
    except KeyboardInterrupt:
        interrupts += 1
        handled.set()
    except OSError as error:  # a descriptor closed twice (the second close may hit another file)
        failures[repr(error)] = failures.get(repr(error), 0) + 1
        handled.set()
thread.join()
print(json.dumps({"interrupts": interrupts, "failures": failures, "lost": lost}))
"""


def test_interrupts_while_files_open_and_close_stay_interrupts_and_close_once(tmp_path):
    path = tmp_path / "note.txt"
    path.write_text("hello " * 10)
    done = subprocess.run(
        [sys.executable, "-c", _STORM, str(path)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    counts = json.loads(done.stdout.strip().splitlines()[-1])
    assert counts["interrupts"] > 100, "the interrupts must land"
    assert counts["failures"] == {}, f"interrupts turned into errors: {counts['failures']}"
    assert counts["lost"] == 0


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


#: Decoding in worker processes, then a terminal's Ctrl+C: SIGINT to the whole process group.
_GROUP_CTRL_C = """
import os, signal, sys
from multiembed.sources import as_items
from multiembed.workers import load_in_workers

def slow_length(value):
    import time
    time.sleep(0.05)
    return len(value)

try:
    for number, (item, loaded) in enumerate(
        load_in_workers(slow_length, as_items(["text"] * 400), workers=2, chunk_size=4)
    ):
        if number == 8:  # the workers are up and busy
            os.killpg(os.getpgid(0), signal.SIGINT)
except KeyboardInterrupt:
    print("interrupted", flush=True)
    sys.exit(130)
print("not interrupted")
"""


def test_a_terminal_ctrl_c_stops_decoders_without_their_tracebacks():
    done = subprocess.run(
        [sys.executable, "-c", _GROUP_CTRL_C],
        capture_output=True,
        text=True,
        timeout=120,
        start_new_session=True,  # a process group of its own, as a terminal gives a command
    )
    assert done.returncode == 130 and done.stdout.strip() == "interrupted", done.stderr[-2000:]
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
