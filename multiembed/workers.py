"""Load + preprocess items in worker processes, ahead of the model, with bounded memory.

Decoding runs in a process pool while the main process runs the model on the previous batch.
At most ``in_flight`` chunks are queued, so memory does not grow with the number of inputs, and
results come back in input order. The loader sent to the workers must hold no model (it is
pickled once per worker). An item whose loading fails is returned as a reason string; a worker that
dies (a crashing decoder) makes the pool fall back to loading in-process for the rest of the run.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from multiembed.batching import windows
from multiembed.errors import InputError, hidden_interrupt
from multiembed.sources import Item, Refused

T = TypeVar("T")
Loader = Callable[[Any], T]

_worker_loader: Callable[[Any], Any] | None = None


def default_workers(device_type: str = "cpu") -> int:
    """How many decoder processes pay off, given where the model runs.

    On an accelerator the model is fast and decoding is the bottleneck: use most cores. On a CPU the
    decoders compete with the model's own threads: on 2 cores one worker measured 0.97x of none
    (benchmarks/image.py), so small machines decode in-process and large ones spare a quarter.
    """
    cores = os.cpu_count() or 1
    if device_type in ("cuda", "mps"):
        return max(1, min(8, cores - 1))
    return min(4, cores // 4)


def failure_reason(error: BaseException) -> str:
    """What a user reads about a failed item: the InputError's reason, else the exception."""
    if isinstance(error, InputError):
        return error.reason
    return f"{type(error).__name__}: {error}"


def attempt(load: Callable[[Any], T], value: Any) -> T | str:
    """Run a loader on one value; a failure becomes its reason instead of an exception.

    Input expansion already refused some values (a PNG given as a file of lines): every modality's
    loader is spared from knowing the marker.
    """
    if isinstance(value, Refused):
        return value.reason
    try:
        return load(value)
    except Exception as error:  # one bad item never stops the run; a Ctrl+C does
        if (interrupt := hidden_interrupt(error)) is not None:
            raise interrupt from None
        return failure_reason(error)


def load_in_process(load: Callable[[Any], T], items: Iterable[Item]) -> Iterator[tuple[Item, T | str]]:
    for item in items:
        yield item, attempt(load, item.value)


def _leave_quietly(signum: int, frame: object) -> None:
    os._exit(128 + signum)


def _init_worker(load: Callable[[Any], Any]) -> None:
    global _worker_loader
    _worker_loader = load
    # A terminal's Ctrl+C reaches the decoders too. The main process reports it; a decoder just
    # goes (as it did), without printing multiprocessing's traceback of where it was waiting.
    signal.signal(signal.SIGINT, _leave_quietly)
    import torch

    torch.set_num_threads(1)  # the main process owns the cores for the model


def _load_chunk(values: list[Any]) -> list[Any]:
    assert _worker_loader is not None
    return [attempt(_worker_loader, value) for value in values]


def _context() -> multiprocessing.context.BaseContext:
    # fork starts workers in milliseconds and they inherit the imported libraries; elsewhere spawn.
    return multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")


def load_in_workers(
    load: Callable[[Any], T],
    items: Iterable[Item],
    *,
    workers: int,
    chunk_size: int,
    in_flight: int | None = None,
) -> Iterator[tuple[Item, T | str]]:
    """Like :func:`load_in_process`, but decoding ``in_flight`` chunks ahead in ``workers`` processes."""
    in_flight = in_flight or 2 * workers + 1
    pool: ProcessPoolExecutor | None = ProcessPoolExecutor(
        workers, mp_context=_context(), initializer=_init_worker, initargs=(load,)
    )
    pending: deque[tuple[list[Item], Future[list[Any]] | None]] = deque()

    def collect(chunk: list[Item], future: Future[list[Any]] | None) -> Iterator[tuple[Item, T | str]]:
        nonlocal pool
        if future is not None:
            try:
                yield from zip(chunk, future.result(), strict=True)
                return
            except BrokenProcessPool:  # a worker died (e.g. a decoder crashed): finish in-process
                if pool is not None:
                    pool.shutdown(wait=False, cancel_futures=True)
                pool = None
        yield from load_in_process(load, chunk)

    try:
        for chunk in windows(items, chunk_size):
            future = None
            if pool is not None:
                try:
                    future = pool.submit(_load_chunk, [item.value for item in chunk])
                except BrokenProcessPool:
                    pool.shutdown(wait=False, cancel_futures=True)
                    pool = None
            pending.append((chunk, future))
            if len(pending) > in_flight:
                yield from collect(*pending.popleft())
        while pending:
            yield from collect(*pending.popleft())
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
