"""``multiembed export-bulk`` / ``import-bulk``: bulk import files for a Milvus server, and their import."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from multiembed.cli import common
from multiembed.registry import get
from multiembed.sources import count_items, expand_all


def index_params(args: argparse.Namespace) -> dict[str, Any] | None:
    """The ``--index-param KEY=VALUE`` options as a dict (None when none were given)."""
    pairs = [common.parse_option(pair) for pair in getattr(args, "index_param", None) or []]
    return dict(pairs) or None


def cmd_export_bulk(args: argparse.Namespace) -> int:
    from multiembed import load
    from multiembed.bulk import MB, export_bulk

    spec = get(args.modality)
    common.check_targets(args.inputs)
    common.check_model_options(args)
    if args.chunk_mb < 1:
        raise common.UsageError(f"--chunk-mb must be >= 1, got {args.chunk_mb}")
    output = Path(args.output)
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise common.UsageError(f"{output} is not an empty folder; bulk files go into a new one")
    items = common.first_or_fail(expand_all(spec, args.inputs), " ".join(args.inputs), spec.extensions)
    common.quiet_libraries()
    started = time.perf_counter()
    encoder = load(args.modality, args.model, device=args.device, **common.encoder_options(args))
    report = export_bulk(
        encoder,
        items,
        output,
        hybrid=args.hybrid,
        chunk_bytes=args.chunk_mb * MB,
        progress=None if not args.quiet else False,
        total=count_items(spec, args.inputs),
    )
    common.print_failures(report.errors)
    files = sum(len(group) for group in report.files)
    print(
        f"wrote {report.rows} rows in {files} files, skipped {report.skipped} repeated, "
        f"{len(report.errors)} failed, in {time.perf_counter() - started:.1f}s -> {output} "
        f"(import: multiembed import-bulk {output} --uri http://HOST:19530 -c NAME)",
        file=sys.stderr,
    )
    return common.EXIT_PARTIAL if report.errors else common.EXIT_OK


def cmd_import_bulk(args: argparse.Namespace) -> int:
    from multiembed.bulk import import_bulk
    from multiembed.milvus.client import silence_library_logs

    if not args.verbose:
        silence_library_logs()
    started = time.perf_counter()
    rows = import_bulk(
        args.uri,
        args.collection,
        args.folder,
        server_path=args.server_path,
        index_type=args.index_type,
        index_params=index_params(args),
    )
    print(
        f"imported {rows} rows in {time.perf_counter() - started:.1f}s -> {args.uri} "
        f"collection {args.collection!r}",
        file=sys.stderr,
    )
    return common.EXIT_OK
