"""``multiembed encode``: embed files, folders, stdin or query texts into a parquet/npy/jsonl file.

Windows are streamed into the output as they are embedded, so memory does not grow with the
number of items; the file appears (atomically) only when the run ends.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from multiembed import load
from multiembed.cli.common import (
    EXIT_OK,
    EXIT_PARTIAL,
    UsageError,
    check_model_options,
    check_targets,
    encoder_options,
    first_or_fail,
    print_failures,
    quiet_libraries,
)
from multiembed.embeddings import ItemError
from multiembed.encoder import Role
from multiembed.errors import ConfigError
from multiembed.formats import format_for
from multiembed.output import open_writer
from multiembed.registry import get
from multiembed.sources import Item, count_items, expand_all, read_lines


def _iter_queries(texts: Sequence[str], texts_file: str | None) -> Iterator[Item]:
    for number, text in enumerate(texts, start=1):
        yield Item(f"--text:{number}", text)
    if texts_file == "-":
        yield from read_lines(sys.stdin.buffer, "stdin")
    elif texts_file:
        with open(texts_file, "rb") as stream:
            yield from read_lines(stream, texts_file)


def cmd_encode(args: argparse.Namespace) -> int:
    spec = get(args.modality)
    output = Path(args.output)
    sharded = getattr(args, "shard_size", None) is not None
    fmt = _shard_format(args, output) if sharded else format_for(output, args.format)
    if bool(args.text or args.texts) == bool(args.inputs):
        raise UsageError("give either INPUT files/folders or --text/--texts, not both or neither")
    check_targets([*args.inputs, *([args.texts] if args.texts else [])])
    check_model_options(args)
    role: Role = "query" if args.text or args.texts else "document"
    total = None if role == "query" else count_items(spec, args.inputs)
    if role == "query":
        items = first_or_fail(_iter_queries(args.text, args.texts), str(args.texts), frozenset())
    else:
        items = first_or_fail(expand_all(spec, args.inputs), " ".join(args.inputs), spec.extensions)
    quiet_libraries()
    if sharded:
        return _encode_sharded(args, items, role, total, output, fmt)
    if args.engine == "ray":
        from multiembed.cli import ray_engine

        return ray_engine.encode(args, items, role, output, fmt)
    started = time.perf_counter()
    encoder = load(args.modality, args.model, device=args.device, **encoder_options(args))
    errors: list[ItemError] = []
    embedded = seen = 0
    with open_writer(output, fmt, encoder.outputs, encoder.config()) as writer:
        progress = None if not args.quiet else False
        for part in encoder.iter_encode(items, role=role, progress=progress, total=total):
            writer.write(part)
            embedded, seen = embedded + len(part), seen + part.total
            errors.extend(part.errors)
    print_failures(errors)
    print(
        f"embedded {embedded} of {seen} items, {len(errors)} failed, "
        f"in {time.perf_counter() - started:.1f}s with {encoder.model_id} -> {output}",
        file=sys.stderr,
    )
    return EXIT_PARTIAL if errors else EXIT_OK


def _shard_format(args: argparse.Namespace, output: Path) -> str:
    """The format of each shard (parquet unless --format says otherwise); -o must name a folder."""
    if args.shard_size < 1:
        raise UsageError(f"--shard-size must be >= 1, got {args.shard_size}")
    if getattr(args, "engine", "local") != "local":
        raise UsageError("--shard-size runs on the local engine; leave out --engine")
    try:
        format_for(output)
    except ConfigError:  # no file suffix: a folder name
        return format_for(Path("shard.parquet"), args.format)
    raise UsageError(f"with --shard-size, -o names a folder for the shards (e.g. -o shards/), not {output}")


def _encode_sharded(
    args: argparse.Namespace, items: Iterator[Item], role: Role, total: int | None, output: Path, fmt: str
) -> int:
    """``encode --shard-size N -o DIR``: resumable, one atomically written file per N inputs."""
    from multiembed.shards import encode_shards

    started = time.perf_counter()
    encoder = load(args.modality, args.model, device=args.device, **encoder_options(args))
    report = encode_shards(
        encoder,
        items,
        output,
        args.shard_size,
        fmt=fmt,
        role=role,
        progress=None if not args.quiet else False,
        total=total,
    )
    print_failures(report.errors)
    print(
        f"embedded {report.rows} of {report.items} items, {len(report.errors)} failed, in "
        f"{len(report.written) + len(report.kept)} shards ({len(report.written)} written, "
        f"{len(report.kept)} already done), in {time.perf_counter() - started:.1f}s with "
        f"{encoder.model_id} -> {output}",
        file=sys.stderr,
    )
    return EXIT_PARTIAL if report.errors else EXIT_OK
