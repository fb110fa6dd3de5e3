"""``--engine ray``: ``encode`` and ``index`` as Ray Data jobs, on a local or an existing Ray cluster.

The command expands its inputs exactly as the in-process engine does (the same items, named the
same) and sends them to the cluster: lines as text, files as paths that the actors open and read
with the modality's checks and size caps (so on a cluster of several machines the inputs must be at
the same path on every node). It reports the same way: one ``failed: SOURCE: REASON`` line per bad
item, the summary line, exit 1 when some items failed. Without ``--ray-address`` it starts a local
cluster with every core and stops it at the end; in a process already connected to Ray it uses that.

``index`` reads the keys the collection holds before the job (once, on the driver) and the actors
leave those items out before the model, as in-process ``index`` does: a run killed at any point
and run again embeds only what is missing and ends with every item stored once (keys are content
hashes and rows are upserted, so a batch stored twice is still one row per item).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from multiembed.batching import windows
from multiembed.cli import common
from multiembed.encoder import Role
from multiembed.errors import BackendError, MultiembedError
from multiembed.ray.embed import FAILED_COLUMN, Layout, embed_with  # the ray extra, or a clear error
from multiembed.ray.tables import to_embeddings
from multiembed.sources import Item, Loaded
from multiembed.workers import attempt

if TYPE_CHECKING:
    import ray.data

#: how many items go into one block of the input dataset
ITEMS_PER_BLOCK = 1024


#: the input dataset's columns (see :func:`items_dataset`)
LAYOUT = Layout(column="text", source_column="source", file_column="file")


def connect(address: str | None, verbose: bool = False) -> bool:
    """Join the cluster at ``address``, or start a local one; True if this call started Ray."""
    import ray

    if not verbose:  # a failure is reported once, as multiembed's one line, not as Ray's tracebacks
        for name in ("ray", "ray.data"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
    if ray.is_initialized():
        return False
    level = logging.INFO if verbose else logging.ERROR
    try:
        if address:
            ray.init(address=address, logging_level=level, log_to_driver=verbose)
        else:
            from multiembed.ray.local import init_local

            init_local(
                num_cpus=os.cpu_count() or 1,
                include_dashboard=False,
                logging_level=level,
                log_to_driver=verbose,
            )
    except (ConnectionError, RuntimeError, ValueError) as error:
        where = f"the Ray cluster at {address}" if address else "a local Ray cluster"
        raise BackendError(f"cannot connect to {where} ({' '.join(str(error).split())[:300]})") from None
    return True


@contextlib.contextmanager
def cluster(args: argparse.Namespace, verbose: bool = False) -> Iterator[None]:
    """Ray for one command: connected (or started) on entry, a cluster started here stopped on exit.

    A failure inside a Ray task is raised as the multiembed error it was (one line, exit 2), not as
    Ray's wrapper with the remote traceback.
    """
    import ray

    started = connect(args.ray_address, verbose)
    ray.data.DataContext.get_current().enable_progress_bars = not getattr(args, "quiet", False)
    try:
        yield
    except Exception as error:
        cause = _multiembed_cause(error)
        if cause is None:
            raise
        raise cause from None
    finally:
        if started:
            ray.shutdown()


def _multiembed_cause(error: BaseException) -> MultiembedError | None:
    """The multiembed error a Ray task raised, unwrapped from Ray's exceptions around it."""
    from ray.exceptions import RayError

    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, MultiembedError) and not isinstance(current, RayError):
            if current.args and isinstance(current.args[0], str):  # Ray Data appends its retry advice
                current.args = (current.args[0].split("\nFailed to ")[0], *current.args[1:])
            return current
        current = getattr(current, "cause", None) or current.__cause__
    return None


def _block(items: list[Item], load: Callable[[Any], Loaded]) -> pa.Table:
    """Items as columns: ``text`` for texts, ``file`` for paths; anything else is loaded here.

    What is neither (a line that is not UTF-8, a line too long) is refused by the loader at once,
    with the same reason as in-process.
    """
    sources: list[str] = []
    texts: list[str | None] = []
    files: list[str | None] = []
    failed: list[str | None] = []
    for item in items:
        value = item.value
        reason = None
        if not isinstance(value, (str, Path)):
            loaded = attempt(load, value)
            reason = (
                loaded if isinstance(loaded, str) else "cannot be sent to the cluster (not text or a file)"
            )
        sources.append(item.source)
        texts.append(value if isinstance(value, str) else None)
        files.append(str(value) if isinstance(value, Path) else None)
        failed.append(reason)
    return pa.table(
        {
            "source": pa.array(sources, pa.string()),
            "text": pa.array(texts, pa.large_string()),
            "file": pa.array(files, pa.string()),
            FAILED_COLUMN: pa.array(failed, pa.string()),
        }
    )


def items_dataset(items: Iterable[Item], load: Callable[[Any], Loaded]) -> ray.data.Dataset:
    """The items as a dataset, in order; each block goes into the object store as it is made."""
    import ray

    refs: list[Any] = [ray.put(_block(window, load)) for window in windows(items, ITEMS_PER_BLOCK)]
    dataset = ray.data.from_arrow_refs(refs)
    # the job's own context (the steps after share it): an actor's multiembed error comes back as
    # itself, which :func:`cluster` reports in one line, not wrapped in a UserCodeException
    dataset.context.raise_original_map_exception = True
    return dataset


def encode(args: argparse.Namespace, items: Iterable[Item], role: Role, output: Path, fmt: str) -> int:
    """``multiembed encode --engine ray``: the rows come back in input order into the same writers."""
    from multiembed import load
    from multiembed.output import open_writer

    started = time.perf_counter()
    options = common.encoder_options(args)
    encoder = load(args.modality, args.model, device="cpu", **options)  # identity, outputs; fails fast
    identity: dict[str, Any] = {
        "modality": encoder.modality,
        "model": encoder.model_id,
        "config": encoder.config(),
    }
    errors = []
    embedded = seen = 0
    with cluster(args), open_writer(output, fmt, encoder.outputs, identity["config"]) as writer:
        rows = embed_with(
            items_dataset(items, encoder.loader(role)),
            encoder,
            modality=args.modality,
            model=args.model,
            options=options,
            layout=LAYOUT,
            device=args.device,
            role=role,
            keep_text=False,
        )
        rows.context.execution_options.preserve_order = True
        for batch in rows.iter_batches(batch_size=None, batch_format="pyarrow"):
            table: pa.Table = batch
            part = to_embeddings(table, encoder.outputs, identity, start=seen)
            writer.write(part)
            embedded, seen = embedded + len(part), seen + table.num_rows
            errors.extend(part.errors)
    common.print_failures(errors)
    print(
        f"embedded {embedded} of {seen} items, {len(errors)} failed, "
        f"in {time.perf_counter() - started:.1f}s with {encoder.model_id} -> {output}",
        file=sys.stderr,
    )
    return common.EXIT_PARTIAL if errors else common.EXIT_OK


def index(args: argparse.Namespace) -> int:
    """``multiembed index --engine ray``: embedded by actors, upserted by :class:`MilvusSink`."""
    from multiembed.cli.store import collection_options, index_inputs
    from multiembed.ray.sink import MilvusSink

    started = time.perf_counter()
    sink = MilvusSink(args.uri, args.collection, **collection_options(args))
    encoder = sink.open()
    assert sink.info is not None
    _, items = index_inputs(args, sink, sink.info.modality)
    modality, model, options = sink.encoder_arguments()
    known = sink.stored_keys()  # before the job: on Lite, its write task holds the database
    with cluster(args, verbose=args.verbose):
        rows = embed_with(
            items_dataset(items, encoder.loader("document")),
            encoder,
            modality=modality,
            model=model,
            options=options,
            layout=LAYOUT,
            device=args.device,
            keep_text=sink.info.keeps_text,
            stored=known,
        )
        rows.write_datasink(sink, concurrency=sink.write_concurrency)
    report, stored = sink.report, sink.rows or 0
    if stored < sink.rows_expected:
        print(
            f"multiembed: warning: collection {args.collection!r} still holds {stored} of the "
            f"{sink.rows_expected} rows multiembed stored; index the rest of its inputs to repair it",
            file=sys.stderr,
        )
    common.print_failures(report.errors)
    print(
        f"added {report.added}, skipped {report.skipped} already stored, {report.failed} failed, in "
        f"{time.perf_counter() - started:.1f}s -> {args.uri} collection {args.collection!r} ({stored} rows)",
        file=sys.stderr,
    )
    return common.EXIT_PARTIAL if report.errors else common.EXIT_OK
