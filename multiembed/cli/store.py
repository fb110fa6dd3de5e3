"""``multiembed index`` / ``search`` / ``collections``: the Milvus side of the command line."""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

from multiembed.cli import common
from multiembed.embeddings import ItemError
from multiembed.milvus.client import silence_library_logs
from multiembed.registry import get
from multiembed.sources import expand_all


def cmd_index(args: argparse.Namespace) -> int:
    from multiembed.milvus import MilvusStore, check_backend

    common.check_targets(args.inputs)
    common.check_model_options(args)
    check_backend(args.uri, index_type=args.index_type)
    if not args.verbose:
        silence_library_logs()
    if args.collection is None:
        if args.modality is None:
            raise common.UsageError("give --modality (for a new collection) or --collection")
        args.collection = args.modality.replace("-", "_")
    common.quiet_libraries()
    started = time.perf_counter()
    with MilvusStore(
        args.uri,
        args.collection,
        modality=args.modality,
        model=args.model,
        hybrid=args.hybrid,
        index_type=args.index_type,
        device=args.device,
        accept_row_count=True,  # indexing its inputs again is how a damaged collection is repaired
        **common.encoder_options(args),
    ) as store:
        if store.row_shortfall:
            print(
                f"multiembed: warning: {store.row_shortfall}; the missing items among these inputs "
                "are stored again",
                file=sys.stderr,
            )
        spec = get(store.info.modality)
        items = common.first_or_fail(expand_all(spec, args.inputs), " ".join(args.inputs), spec.extensions)
        added = skipped = 0
        errors: list[ItemError] = []
        for part in store.iter_add(items, progress=None if not args.quiet else False):
            added, skipped = added + len(part), skipped + len(part.skipped)
            errors.extend(part.errors)
            if args.verbose:
                print(
                    f"stored {len(part)} rows (added {added}, skipped {skipped})", file=sys.stderr, flush=True
                )
        total = store.count()
    common.print_failures(errors)
    print(
        f"added {added}, skipped {skipped} already stored, {len(errors)} failed, in "
        f"{time.perf_counter() - started:.1f}s -> {args.uri} collection {args.collection!r} ({total} rows)",
        file=sys.stderr,
    )
    return common.EXIT_PARTIAL if errors else common.EXIT_OK


def cmd_search(args: argparse.Namespace) -> int:
    from multiembed.milvus import MilvusStore

    if (args.query is None) == (args.file is None):
        raise common.UsageError("give a query text or --file, not both or neither")
    if args.file is not None and not Path(args.file).is_file():
        raise common.UsageError(f"no such file: {args.file}")
    if args.limit < 1:
        raise common.UsageError(f"--limit must be >= 1, got {args.limit}")
    if not args.verbose:
        silence_library_logs()
    common.quiet_libraries()
    with MilvusStore(args.uri, args.collection, device=args.device) as store:
        query = Path(args.file) if args.file else args.query
        hits = store.search(
            query, limit=args.limit, filter=args.filter, output=args.output, hybrid=args.hybrid
        )
    if args.json:
        print(json.dumps([{"rank": rank, **asdict(hit)} for rank, hit in enumerate(hits, 1)], indent=2))
    else:
        for rank, hit in enumerate(hits, 1):
            print(f"{rank:>3}  {hit.score:8.4f}  {hit.source}")
        if not hits:
            print("no hits", file=sys.stderr)
    return common.EXIT_OK


def cmd_collections(args: argparse.Namespace) -> int:
    from multiembed.milvus import list_collections

    if not args.verbose:
        silence_library_logs()
    summaries = list_collections(args.uri)
    if not summaries:
        print(f"no collections in {args.uri}", file=sys.stderr)
    for summary in summaries:
        info = summary.info
        if info is None:
            described = "(not multiembed)"
        else:
            outputs = ", ".join(
                f"{spec.name} {spec.kind} {spec.dim}-d {spec.metric}" for spec in info.outputs
            )
            described = f"{info.modality:<11} {info.model}  {outputs}" + ("  +BM25" if info.hybrid else "")
        print(f"{summary.name:<20} {summary.rows:>8} rows  {described}")
    return common.EXIT_OK
