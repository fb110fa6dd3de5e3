"""Dynamic batching: concurrent requests for one model become one ``encode`` call on one thread.

Each served encoder is owned by a single worker thread: the event loop never runs a model, and a
model is never run by two threads at once. Requests wait in a queue; the worker takes the first,
waits at most ``max_wait_ms`` for others of the same role to join it (up to ``max_batch`` items),
encodes them together and hands each request its own rows, or the first of its items that failed.
Other work that needs the model (a collection search, adding items) runs on the same thread as a job.

A failure of the model itself (what ``Encoder.encode`` raises rather than reports per item: a lost
device, a model that fails on every item) or of the loop marks the worker dead; /healthz then
answers 503 and every waiting and later request gets a 503 instead of hanging. Items failing alike
can also be one client's doing (a few huge files): before dying, the worker embeds again the last
input that worked, and if that still works only the requests whose items failed are refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

from multiembed.errors import BackendError, InputError, MultiembedError
from multiembed.failures import SystemicFailure
from multiembed.serve.model_check import ModelCheck, bare
from multiembed.workers import failure_reason

if TYPE_CHECKING:
    from multiembed.encoder import Encoder, Role
    from multiembed.outputs import OutputSpec

T = TypeVar("T")
State = Literal["loading", "ok", "dead"]


class ItemFailure(MultiembedError):
    """One item of a request could not be embedded; the request is refused, naming it."""

    def __init__(self, index: int, reason: str) -> None:
        self.index, self.reason = index, reason
        super().__init__(f"input[{index}]: {reason}")


class WorkerDead(MultiembedError):
    """The model's worker has stopped (its load failed, or the model failed as a whole)."""


class QueueFull(MultiembedError):
    """The model already has ``max_queue`` items waiting: the caller should retry later (503).

    Without a bound, a burst larger than the model can work through would pile up in memory and
    every request would time out instead of a few being refused at once.
    """


@dataclass(frozen=True)
class Encoded:
    """One request's rows of every output, in its input order."""

    outputs: dict[str, Any]
    specs: tuple[OutputSpec, ...]
    ids: list[str]


@dataclass
class _Waiter(Generic[T]):
    future: asyncio.Future[T]
    loop: asyncio.AbstractEventLoop
    #: still counted in ``Batcher.queued`` (until the worker starts it or its client leaves)
    counted: bool = field(default=False, init=False)

    def settle(self, value: T | None = None, error: BaseException | None = None) -> None:
        """Answer from the worker thread; a request whose client left (cancelled) is skipped."""

        def apply() -> None:
            if self.future.done():
                return
            if error is not None:
                self.future.set_exception(error)
            else:
                self.future.set_result(value)  # type: ignore[arg-type]

        with contextlib.suppress(RuntimeError):  # the loop has closed: nobody is waiting any more
            self.loop.call_soon_threadsafe(apply)


@dataclass
class _Encode(_Waiter[Encoded]):
    values: list[Any]
    role: Role


@dataclass
class _Job(_Waiter[Any]):
    function: Callable[[Encoder], Any]


_STOP = object()


class Batcher:
    """The worker thread of one encoder, and the queue requests reach it through."""

    def __init__(
        self,
        name: str,
        load: Callable[[], Encoder],
        *,
        max_batch: int = 64,
        max_wait_ms: float = 5.0,
        batching: bool = True,
        max_queue: int | None = None,
    ) -> None:
        self.name = name
        #: the most items (a job counts as one) waiting for the worker; None: no bound
        self.max_queue = max_queue
        self._queued = 0  # items submitted and not yet started (guarded by _lock)
        self._stopping = False
        self._load = load
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000.0
        self.batching = batching
        self.encoder: Encoder | None = None
        self.error: str | None = None
        #: (requests merged, items) of each encode call, newest last: what tests and stats read
        self.batches: deque[tuple[int, int]] = deque(maxlen=10_000)
        self._state: State = "loading"
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        #: tasks taken from the queue while gathering a batch, to run after it (worker thread only)
        self._held: deque[Any] = deque()
        self._lock = threading.Lock()  # orders "still alive? then enqueue" against dying
        #: what tells a broken model from inputs that fail alike (see multiembed.serve.model_check)
        self._model_check = ModelCheck()
        self._started = False
        self._thread = threading.Thread(target=self._run, name=f"multiembed-model-{name}", daemon=True)

    @property
    def state(self) -> State:
        return self._state

    def start(self) -> None:
        """Start loading the model on the worker thread (once; a first request starts it too)."""
        with self._lock:
            if not self._started:
                self._started = True
                self._thread.start()

    @property
    def queued(self) -> int:
        """Items submitted that the worker has not started on yet."""
        return self._queued

    def signal_stop(self) -> None:
        """Ask the worker to end after what it is running; returns at once (see :func:`stop_all`)."""
        self._stopping = True
        if self._thread.is_alive():
            self._queue.put(_STOP)

    def join(self, deadline: float) -> None:
        """Wait for the worker until ``deadline`` (``time.monotonic()``); never for one still loading.

        A model still loading cannot be interrupted; its thread is a daemon and ends with the process.
        """
        if self._thread.is_alive() and self._state != "loading":
            self._thread.join(max(0.0, deadline - time.monotonic()))

    def stop(self, timeout: float = 10.0) -> None:
        """Let the worker finish what it is running, then end it (pending requests get 503s)."""
        stop_all([self], timeout)

    # ---- the asyncio side ----------------------------------------------------------------------
    def _submit(self, task: _Waiter[Any]) -> None:
        self.start()
        size = _size(task)
        with self._lock:
            if self._state == "dead":
                raise WorkerDead(f"model {self.name!r} is not running: {self.error}")
            # One request larger than the bound still runs when nothing waits (max_inputs caps it).
            if self.max_queue is not None and self._queued and self._queued + size > self.max_queue:
                raise QueueFull(
                    f"model {self.name!r} is busy: {self._queued} items are waiting "
                    f"(the limit is {self.max_queue}); retry shortly"
                )
            self._queued += size
            task.counted = True
            self._queue.put(task)

    def _started_on(self, tasks: list[Any]) -> None:
        """``tasks`` no longer wait: the worker took them, or their clients left.

        A request whose client hangs up stops counting at once, not when the worker reaches it, so
        it does not hold a place under ``max_queue`` while the model is busy with others.
        """
        with self._lock:
            for task in tasks:
                if isinstance(task, _Waiter) and task.counted:
                    task.counted = False
                    self._queued = max(0, self._queued - _size(task))

    async def _wait(self, task: _Waiter[T]) -> T:
        """``task``'s answer; if the caller is cancelled (its client left), it stops counting."""
        self._submit(task)
        try:
            return await task.future
        except asyncio.CancelledError:
            self._started_on([task])
            raise

    async def encode(self, values: list[Any], role: Role) -> Encoded:
        """The vectors of ``values``, merged with other requests; raises ItemFailure for a bad item."""
        loop = asyncio.get_running_loop()
        return await self._wait(_Encode(loop.create_future(), loop, values, role))

    async def call(self, function: Callable[[Encoder], T]) -> T:
        """Run ``function(encoder)`` on the worker thread (work that needs the model, unbatched)."""
        loop = asyncio.get_running_loop()
        result: T = await self._wait(_Job(loop.create_future(), loop, function))
        return result

    async def ready(self) -> Encoder:
        """The encoder, once loaded (raises WorkerDead if loading failed or the worker died)."""
        encoder = self.encoder
        if self._state == "ok" and encoder is not None:
            return encoder  # no round trip through the queue: it would split batches
        return await self.call(lambda loaded: loaded)

    # ---- the worker thread ----------------------------------------------------------------------
    def _run(self) -> None:
        try:
            self.encoder = self._load()
        except BaseException as error:
            self._die(f"loading the model failed: {failure_reason(error)}", [])
            return
        if self._stopping:
            self._die("the server is shutting down", [])
            return
        self._state = "ok"
        batch: list[_Encode] = []
        try:
            while True:
                task = self._held.popleft() if self._held else self._queue.get()
                if task is _STOP:
                    break
                if isinstance(task, _Job):
                    self._started_on([task])
                    self._run_job(task)
                    continue
                batch = [task]
                self._gather(batch)
                self._run_batch(batch)
                batch = []
        except BaseException as error:
            self._die(failure_reason(error), batch)
            return
        self._die("the server is shutting down", [])

    def _gather(self, batch: list[_Encode]) -> None:
        """Add queued requests of the same role to ``batch`` until it is full or the wait is over.

        Whatever else arrives meanwhile (a search, a request of the other role) is held, in order,
        for after this batch, instead of cutting the batch short.
        """
        if not self.batching:
            return
        role, count = batch[0].role, len(batch[0].values)
        deadline = time.monotonic() + self.max_wait
        while count < self.max_batch:
            remaining = deadline - time.monotonic()
            try:
                task = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                return
            if isinstance(task, _Encode) and task.future.cancelled():
                self._started_on([task])
                continue  # its client left before it ran
            if isinstance(task, _Encode) and task.role == role and count + len(task.values) <= self.max_batch:
                batch.append(task)
                count += len(task.values)
                continue
            self._held.append(task)
            if task is _STOP or (isinstance(task, _Encode) and task.role == role):
                return  # stopping, or the batch is full

    def _run_batch(self, batch: list[_Encode]) -> None:
        assert self.encoder is not None
        self._started_on(list(batch))
        # A request whose client left (its future cancelled) while it waited is not embedded: this
        # is checked here, for every request of the batch, the first one included.
        batch[:] = [task for task in batch if not task.future.cancelled()]
        if not batch:
            return
        values = [value for task in batch for value in task.values]
        self.batches.append((len(batch), len(values)))
        try:
            result = self._encode(values, batch[0].role, stop_on_systemic=True)
        except SystemicFailure as error:
            # Items failed alike. Only the model's fault if it fails on what it embedded before;
            # else the batch runs again with its items failing one by one, naming themselves.
            self._check_model(bare(error), batch[0].role)
            result = self._encode(values, batch[0].role, stop_on_systemic=False)
        except BackendError:
            raise  # the model itself failed: the worker dies, naming why
        except MultiembedError as error:  # a refusal of the whole call (e.g. a role it has no tower for)
            for task in batch:
                task.settle(error=error)
            return
        start = 0
        for task in batch:
            end = start + len(task.values)
            errors = [error for error in result.errors if start <= error.index < end]
            if errors:
                task.settle(error=ItemFailure(errors[0].index - start, errors[0].reason))
            else:
                first = start - sum(1 for error in result.errors if error.index < start)
                rows = slice(first, first + len(task.values))
                outputs = {name: column[rows] for name, column in result.outputs.items()}
                task.settle(Encoded(outputs, result.specs, result.ids[rows]))
                self._model_check.remember(task.values, task.role)
            start = end

    def _encode(self, values: list[Any], role: Role, *, stop_on_systemic: bool) -> Any:
        assert self.encoder is not None
        batch_size = max(self.encoder.batch_size, min(len(values), self.max_batch))
        return self.encoder.encode(
            values, role=role, batch_size=batch_size, progress=False, stop_on_systemic=stop_on_systemic
        )

    def _check_model(self, error: SystemicFailure, role: Role) -> None:
        """Raise ``error`` (the worker dies) unless the model still embeds a known-good input of ``role``."""
        if not self._model_check.model_works(
            lambda values: self._encode(values, role, stop_on_systemic=True), role
        ):
            raise error

    def _run_job(self, job: _Job) -> None:
        assert self.encoder is not None
        try:
            value = job.function(self.encoder)
        except SystemicFailure as error:  # e.g. items added to a collection, failing alike
            failure = bare(error)
            self._check_model(failure, "document")
            reason = str(failure).split(": ", 1)[-1]
            job.settle(error=InputError(f"this request's items fail alike: {reason}"))
            return
        except Exception as error:  # the job's own failure (a bad query, a Milvus refusal): its caller's
            job.settle(error=error)
            return
        job.settle(value)

    def _die(self, reason: str, running: list[Any]) -> None:
        """Mark the worker dead and answer everything still waiting, so no request hangs."""
        with self._lock:
            self._state, self.error = "dead", reason
            pending = [*running, *self._held]
            self._held.clear()
            while True:
                try:
                    pending.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            self._queued = 0
            for task in pending:
                if isinstance(task, _Waiter):
                    task.counted = False
        for task in pending:
            if isinstance(task, _Waiter):
                task.settle(error=WorkerDead(f"model {self.name!r} stopped: {reason}"))


def _size(task: Any) -> int:
    """How much of the queue bound a task takes: its items, or one for a job."""
    return len(task.values) if isinstance(task, _Encode) else 1


def stop_all(batchers: list[Batcher], timeout: float = 3.0) -> None:
    """Stop every worker against one shared deadline: Ctrl+C is not ``timeout`` per model.

    All are told to stop first, so they wind down together; then each is joined for what is left
    of the deadline, and a worker still loading its model is not waited for at all.
    """
    for batcher in batchers:
        batcher.signal_stop()
    deadline = time.monotonic() + timeout
    for batcher in batchers:
        batcher.join(deadline)
