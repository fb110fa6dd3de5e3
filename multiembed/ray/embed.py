"""``embed_dataset``: a Ray Dataset of items in, a Dataset of vectors (and failures) out.

Each actor of an actor pool loads the model once (``multiembed.load`` in its ``__init__``) and
embeds every batch it is handed with the encoder's own pipeline: items are decoded in the actor,
sorted by size into model batches and embedded, and a bad item becomes a row with its reason in
``error`` and null vectors instead of failing the job (see :mod:`multiembed.ray.tables`). With
GPUs, decoding runs in a separate stage of CPU tasks by default, so the GPU actors only run the model.

The driver loads the encoder once too, on the CPU: a bad model or option fails before any cluster
work, its identity (``Encoder.config()``) is what every actor must reproduce (a node with other
weights or library versions is refused, not mixed in), and its loader (which holds no model) is
what the CPU decode stage runs.

Given the keys a collection already holds (``embed_with(..., stored=)``, what ``index --engine ray``
does), the actors leave those items out before the model, as in-process ``index`` does: a re-run
of a killed job embeds only what is missing.
"""

from __future__ import annotations

import functools
import os
import pickle
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
from tqdm.auto import tqdm

from multiembed.encoder import Encoder, Role
from multiembed.errors import ConfigError, MultiembedError, SchemaMismatchError
from multiembed.failures import FailureWatch
from multiembed.identity import mismatches
from multiembed.ray.keys import StoredKeys
from multiembed.ray.tables import Stored, to_table
from multiembed.sources import Item, Loaded
from multiembed.workers import attempt

if TYPE_CHECKING:
    import ray
    import ray.data

#: an input column of reasons: a row with one is reported as failed without being loaded (the CLI
#: marks items it could not send this way, and the decode stage the items it could not decode)
FAILED_COLUMN = "_multiembed_failed"
#: columns taken as the item's name when ``source_column`` is not given, in this order
SOURCE_COLUMNS = ("path", "source")
#: how many model batches one call of an actor gets, by default
BATCHES_PER_CALL = 4

#: an actor call's items: (position in the batch, item, what its loader gave or why it failed)
Window = list[tuple[int, Item, Loaded | str]]


@dataclass(frozen=True)
class Layout:
    """Which columns of an input batch hold the items, their names and earlier failures."""

    #: the values handed to the modality's loader (text, bytes, arrays...)
    column: str
    #: the item names used in reports; None: ``path`` or ``source`` if the batch has one
    source_column: str | None = None
    #: paths the actors open themselves (with the loader's size caps), where not null; the CLI's files
    file_column: str | None = None


def _preview(value: Any) -> str:
    """A name for an item whose dataset has no source column: the text itself, or its size."""
    if isinstance(value, (bytes, bytearray)):
        return f"<{len(value):,} bytes>"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _values(batch: pa.Table, name: str) -> list[Any]:
    if name not in batch.column_names:
        raise ConfigError(
            f"the dataset has no column {name!r} (it has {', '.join(batch.column_names)}); "
            "name the items' column with column="
        )
    return list(batch.column(name).to_pylist())


def read_items(batch: pa.Table, layout: Layout) -> list[tuple[Item, str | None]]:
    """The batch's items, each with the reason it already failed (or None)."""
    rows = batch.num_rows
    names = batch.column_names
    has_value = layout.file_column is None or layout.column in names
    values = _values(batch, layout.column) if has_value else [None] * rows
    files = _values(batch, layout.file_column) if layout.file_column else [None] * rows
    failed = _values(batch, FAILED_COLUMN) if FAILED_COLUMN in names else [None] * rows
    source = layout.source_column or next((name for name in SOURCE_COLUMNS if name in names), None)
    if source is not None:
        sources = [str(name) for name in _values(batch, source)]
    else:
        sources = [
            _preview(file if file is not None else value) for value, file in zip(values, files, strict=True)
        ]
    return [
        (Item(name, Path(file) if file is not None else value), reason)
        for name, value, file, reason in zip(sources, values, files, failed, strict=True)
    ]


@dataclass(frozen=True)
class Job:
    """What each actor needs to rebuild the driver's encoder and embed a batch (plain, picklable data)."""

    modality: str
    model: str | None
    device: str
    options: dict[str, Any]
    #: the driver's ``Encoder.config()``: every actor's encoder must have the same
    config: dict[str, Any]
    role: Role
    batch_size: int
    keep_text: bool
    layout: Layout
    #: rows come from the decode stage (``source``, ``key``, ``loaded``), not from the input
    decoded: bool = False
    #: the keys the collection already holds, in the object store; None: embed every item
    stored: ray.ObjectRef[StoredKeys] | None = None


class Embedder:
    """A Ray actor's model: loaded once in ``__init__``, then called with batch after batch."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.watch = FailureWatch()  # a model that fails on every item stops the job, as in-process
        self.bar = tqdm(disable=True)
        #: why the model could not be loaded here; raised with the first batch, as a task error (an
        #: actor whose ``__init__`` fails is restarted by Ray and its error loses its type)
        self.failure: MultiembedError | None = None
        try:
            self.encoder = self._load(job)
        except MultiembedError as error:
            self.failure = error
            return
        self.load = self.encoder.loader(job.role)
        config = self.encoder.config()
        self.identity = {"modality": self.encoder.modality, "model": self.encoder.model_id, "config": config}
        self.stored: StoredKeys | None = None
        if job.stored is not None:
            import ray

            self.stored = ray.get(job.stored)

    @staticmethod
    def _load(job: Job) -> Encoder:
        import multiembed

        encoder = multiembed.load(job.modality, job.model, device=job.device, **job.options)
        problems = mismatches(job.config, encoder.config(), where="the driver")
        if problems:
            raise SchemaMismatchError(
                "the encoder on this Ray worker differs from the driver's: " + "; ".join(problems)
            )
        return encoder

    def _window(self, batch: pa.Table) -> Window:
        if self.job.decoded:
            return [
                (position, item, reason if reason is not None else Loaded(pickle.loads(payload), key))
                for position, (item, reason, key, payload) in enumerate(decoded_rows(batch))
            ]
        return [
            (position, item, reason if reason is not None else attempt(self.load, item.value))
            for position, (item, reason) in enumerate(read_items(batch, self.job.layout))
        ]

    def __call__(self, batch: pa.Table) -> pa.Table:
        if self.failure is not None:
            raise self.failure
        window = self._window(batch)
        stored = None
        if self.stored is not None:
            window, stored = leave_out_stored(window, self.stored)
        part = self.encoder._encode_window(
            window,
            self.job.role,
            self.job.batch_size,
            self.bar,
            self.watch,
            self.identity,
            keep_raw=self.job.keep_text,
        )
        return to_table(part, keep_text=self.job.keep_text, stored=stored)


def leave_out_stored(window: Window, stored: StoredKeys) -> tuple[Window, list[Stored]]:
    """The window without the items whose key ``stored`` holds, and those items."""
    known = stored.known([loaded.key for _, _, loaded in window if isinstance(loaded, Loaded)])
    kept: Window = []
    left: list[Stored] = []
    for position, item, loaded in window:
        if isinstance(loaded, Loaded) and loaded.key in known:
            left.append(Stored(position, item.source, loaded.key))
        else:
            kept.append((position, item, loaded))
    return kept, left


def decode_batch(batch: pa.Table, *, load: Callable[[Any], Loaded], layout: Layout) -> pa.Table:
    """The CPU stage: each item decoded by the modality's loader, or the reason it failed.

    The decoded value travels to the model's actors pickled: it only moves between this job's stages.
    """
    sources: list[str] = []
    keys: list[str | None] = []
    payloads: list[bytes | None] = []
    reasons: list[str | None] = []
    for item, reason in read_items(batch, layout):
        loaded = reason if reason is not None else attempt(load, item.value)
        sources.append(item.source)
        if isinstance(loaded, Loaded):
            keys.append(loaded.key)
            payloads.append(pickle.dumps(loaded.raw, protocol=pickle.HIGHEST_PROTOCOL))
            reasons.append(None)
        else:
            keys.append(None)
            payloads.append(None)
            reasons.append(loaded)
    return pa.table(
        {
            "source": pa.array(sources, pa.string()),
            "key": pa.array(keys, pa.string()),
            "loaded": pa.array(payloads, pa.large_binary()),
            FAILED_COLUMN: pa.array(reasons, pa.string()),
        }
    )


def decoded_rows(batch: pa.Table) -> list[tuple[Item, str | None, str, bytes]]:
    columns = [batch.column(name).to_pylist() for name in ("source", FAILED_COLUMN, "key", "loaded")]
    return [
        (Item(source, None), reason, key, payload)
        for source, reason, key, payload in zip(*columns, strict=True)
    ]


def _actor_pool(concurrency: int | tuple[int, int] | None) -> Any:
    from ray.data import ActorPoolStrategy

    if concurrency is None:
        return ActorPoolStrategy(min_size=1)
    if isinstance(concurrency, int):
        return ActorPoolStrategy(size=concurrency)
    low, high = concurrency
    return ActorPoolStrategy(min_size=low, max_size=high)


def _check_role(role: str) -> None:
    if role not in ("document", "query"):
        raise ConfigError(f"role must be 'document' or 'query', not {role!r}")


def default_column(encoder: Encoder, role: Role) -> str:
    """``text`` where the items are texts (text documents, text queries), else ``bytes`` (files)."""
    texts = encoder.documents_are_text or (role == "query" and encoder.accepts_text_queries)
    return "text" if texts else "bytes"


def embed_with(
    ds: ray.data.Dataset,
    encoder: Encoder,
    *,
    modality: str,
    model: str | None,
    options: dict[str, Any],
    layout: Layout,
    device: str = "auto",
    role: Role = "document",
    batch_size: int | None = None,
    rows_per_call: int | None = None,
    concurrency: int | tuple[int, int] | None = None,
    num_cpus: float = 1,
    num_gpus: float = 0,
    separate_decode: bool | None = None,
    keep_text: bool | None = None,
    stored: StoredKeys | None = None,
) -> ray.data.Dataset:
    """:func:`embed_dataset` with the driver's encoder already loaded (the CLI loads it itself).

    Items whose key is in ``stored`` are not embedded: each gives a row with its id, null vectors
    and true in ``STORED_COLUMN`` (see :mod:`multiembed.ray.tables`), which the sink counts as skipped.
    """
    import ray
    from ray.data import TaskPoolStrategy

    _check_role(role)
    batch_size = encoder.batch_size if batch_size is None else batch_size
    for name, value in (("batch_size", batch_size), ("rows_per_call", rows_per_call)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ConfigError(f"{name} must be an integer >= 1, got {value!r}")
    rows = rows_per_call or batch_size * BATCHES_PER_CALL
    if keep_text is None:
        keep_text = encoder.documents_are_text and role == "document"
    job = Job(modality, model, device, dict(options), encoder.config(), role, batch_size, keep_text, layout)
    if stored is not None and len(stored):
        job = replace(job, stored=ray.put(stored))
    if num_gpus if separate_decode is None else separate_decode:
        decode = functools.partial(decode_batch, load=encoder.loader(role), layout=layout)
        ds = ds.map_batches(
            decode, batch_format="pyarrow", batch_size=rows, num_cpus=1, compute=TaskPoolStrategy()
        )
        job = replace(job, decoded=True)
    return ds.map_batches(
        Embedder,
        fn_constructor_kwargs={"job": job},
        batch_format="pyarrow",
        batch_size=rows,
        compute=_actor_pool(concurrency),
        num_cpus=num_cpus,
        num_gpus=num_gpus or None,
    )


def embed_dataset(
    ds: ray.data.Dataset,
    modality: str,
    model: str | os.PathLike[str] | None = None,
    *,
    column: str | None = None,
    source_column: str | None = None,
    role: Role = "document",
    batch_size: int | None = None,
    rows_per_call: int | None = None,
    concurrency: int | tuple[int, int] | None = None,
    num_cpus: float = 1,
    num_gpus: float = 0,
    device: str = "auto",
    separate_decode: bool | None = None,
    keep_text: bool | None = None,
    **encoder_options: Any,
) -> ray.data.Dataset:
    """Embed every row of ``ds`` on a Ray cluster; the vectors equal :meth:`Encoder.encode`'s.

    The items are in ``column``: by default ``text`` (text documents, text queries) or ``bytes``
    (what ``ray.data.read_binary_files(..., include_paths=True)`` gives). They are named in reports
    by ``source_column``, else by a ``path`` or ``source`` column, else by a preview of the value.

    The result has one row per input row: ``id`` (sha256 content key), ``source``, ``modality``,
    ``model``, the vector columns (``vector``, ``<name>_vector``) as multiembed's parquet files
    name them, ``text`` for text documents (unless ``keep_text=False``) and ``error``: the reason
    an item failed, with null id and vectors (None for the items that worked).

    ``batch_size`` items go through the model at once; an actor gets ``rows_per_call`` rows per
    call (default 4 batches) and sorts them by size into batches. ``concurrency`` actors (a number,
    or ``(min, max)`` to autoscale; default from 1 up to what the cluster fits) each reserve
    ``num_cpus`` and ``num_gpus`` (a fraction shares a GPU) and load the model once, on ``device``.
    Decoding runs in the actors, or in a separate stage of 1-CPU tasks when ``separate_decode``
    (default: when ``num_gpus`` > 0). ``encoder_options`` are :func:`multiembed.load`'s.
    """
    import multiembed

    _check_role(role)
    model = None if model is None else os.fspath(model)
    encoder = multiembed.load(modality, model, device="cpu", **encoder_options)
    layout = Layout(column or default_column(encoder, role), source_column)
    return embed_with(
        ds,
        encoder,
        modality=modality,
        model=model,
        options=encoder_options,
        layout=layout,
        device=device,
        role=role,
        batch_size=batch_size,
        rows_per_call=rows_per_call,
        concurrency=concurrency,
        num_cpus=num_cpus,
        num_gpus=num_gpus,
        separate_decode=separate_decode,
        keep_text=keep_text,
    )
