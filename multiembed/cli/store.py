"""``multiembed index`` / ``search`` / ``collections``: the Milvus side of the command line."""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from multiembed.cli import common
from multiembed.cli.bulk import index_params
from multiembed.milvus.client import is_lite, lite_path, silence_library_logs
from multiembed.models import resolve_model
from multiembed.registry import get
from multiembed.sources import count_items, expand_all

if TYPE_CHECKING:
    from collections.abc import Iterator

    from multiembed.embeddings import ItemError
    from multiembed.registry import ModalitySpec
    from multiembed.sources import Item


class IndexTarget(Protocol):
    """What ``index`` writes into on either engine: a :class:`MilvusStore` or a Ray ``MilvusSink``."""

    created: bool
    row_shortfall: str | None

    def drop(self) -> None: ...


def collection_options(args: argparse.Namespace) -> dict[str, Any]:
    """How ``index`` opens or creates its collection; the store and the Ray sink take the same."""
    return {
        "modality": args.modality,
        "model": args.model,
        "hybrid": args.hybrid,
        "index_type": args.index_type,
        "index_params": index_params(args),
        "accept_row_count": "repair",  # indexing its inputs again is how a damaged collection is repaired
        **common.encoder_options(args),
    }


def index_inputs(
    args: argparse.Namespace, target: IndexTarget, modality: str
) -> tuple[ModalitySpec, Iterator[Item]]:
    """The collection's modality and the inputs to index, after warning about missing rows.

    A collection made for this run that then finds nothing to put in it is dropped again.
    """
    if target.row_shortfall:
        print(
            f"multiembed: warning: {target.row_shortfall}; the missing items among these inputs "
            "are stored again",
            file=sys.stderr,
        )
    spec = get(modality)
    try:
        items = common.first_or_fail(expand_all(spec, args.inputs), " ".join(args.inputs), spec.extensions)
    except common.UsageError:
        if target.created:  # made for this run, which has nothing to put in it: leave nothing behind
            target.drop()
        raise
    return spec, items


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
    if args.modality is not None and is_lite(args.uri) and not Path(lite_path(args.uri)).exists():
        # A new database holds no collection yet: find the model before the file is made, so a
        # model that is not there leaves no empty database behind.
        resolve_model(get(args.modality), args.model)
    if args.engine == "ray":
        from multiembed.cli import ray_engine

        return ray_engine.index(args)
    started = time.perf_counter()
    store = MilvusStore(args.uri, args.collection, device=args.device, **collection_options(args))
    with store:
        spec, items = index_inputs(args, store, store.info.modality)
        added = skipped = 0
        errors: list[ItemError] = []
        total = count_items(spec, args.inputs)
        for part in store.iter_add(items, progress=None if not args.quiet else False, total=total):
            added, skipped = added + len(part), skipped + len(part.skipped)
            errors.extend(part.errors)
            if args.verbose:
                print(
                    f"stored {len(part)} rows (added {added}, skipped {skipped})", file=sys.stderr, flush=True
                )
        rows = store.count()
        if rows < store.rows_expected:
            print(
                f"multiembed: warning: collection {args.collection!r} still holds {rows} of the "
                f"{store.rows_expected} rows multiembed stored; index the rest of its inputs to repair it",
                file=sys.stderr,
            )
    common.print_failures(errors)
    print(
        f"added {added}, skipped {skipped} already stored, {len(errors)} failed, in "
        f"{time.perf_counter() - started:.1f}s -> {args.uri} collection {args.collection!r} ({rows} rows)",
        file=sys.stderr,
    )
    return common.EXIT_PARTIAL if errors else common.EXIT_OK


def _print_hits(hits: list[Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps([{"rank": rank, **asdict(hit)} for rank, hit in enumerate(hits, 1)], indent=2))
        return
    if not hits:
        print("no hits", file=sys.stderr)
        return
    print(f"{'#':>3}  {hits[0].score_kind:>8}  source")
    for rank, hit in enumerate(hits, 1):
        text = " ".join(str(hit.fields.get("text", "")).split())
        snippet = f"  {text[:100]}{'...' if len(text) > 100 else ''}" if text else ""
        print(f"{rank:>3}  {hit.score:8.4f}  {hit.source}{snippet}")


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
    remote_code: dict[str, Any] = {"trust_remote_code": True} if args.trust_remote_code else {}
    store = MilvusStore(args.uri, args.collection, device=args.device, model=args.model, **remote_code)
    with store:
        query = Path(args.file) if args.file else args.query
        hits = store.search(
            query, limit=args.limit, filter=args.filter, output=args.output, hybrid=args.hybrid
        )
    _print_hits(hits, args.json)
    return common.EXIT_OK


def _print_details(uri: str, name: str) -> None:
    from multiembed.milvus.results import describe_collection

    details = describe_collection(uri, name)
    print(f"collection {details.name} in {uri}: {details.rows} rows")
    if details.info is not None:
        config = details.info.config
        print(f"  modality  {config['modality']}\n  model     {config['model']}")
        print(
            f"  weights   {config.get('weights') or '-'}   dtype {config.get('dtype', '-')}"
            f"   backend {config.get('backend', 'torch')}"
        )
        for key, value in sorted((config.get("options") or {}).items()):
            print(f"  option    {key} = {value!r}")
        print(f"  BM25      {'yes' if details.info.hybrid else 'no'}")
    else:
        print("  (not made by multiembed: no encoder recorded)")
    for field_name, kind, params in details.fields:
        extra = " ".join(f"{key}={value}" for key, value in params.items())
        print(f"  field     {field_name:<16} {kind:<20} {extra}")
    for field_name, index_type, metric in details.indexes:
        print(f"  index     {field_name:<16} {index_type:<20} {metric}")


def cmd_collections(args: argparse.Namespace) -> int:
    from multiembed.milvus import list_collections
    from multiembed.milvus.results import drop_collection

    if not args.verbose:
        silence_library_logs()
    if args.action != "list" and not args.name:
        raise common.UsageError(f"collections {args.action} needs a collection NAME")
    if args.action == "show":
        _print_details(args.uri, args.name)
        return common.EXIT_OK
    if args.action == "drop":
        if not args.yes:
            raise common.UsageError(f"dropping {args.name!r} deletes all its rows; add --yes to confirm")
        rows = drop_collection(args.uri, args.name)
        print(f"dropped collection {args.name!r} ({rows} rows) from {args.uri}", file=sys.stderr)
        return common.EXIT_OK
    summaries = list_collections(args.uri)
    if not summaries:
        print(f"no collections in {args.uri}", file=sys.stderr)
    damaged = [summary for summary in summaries if summary.damage]
    for summary in (summary for summary in summaries if not summary.damage):
        info = summary.info
        if info is None:
            described = "(not multiembed)"
        else:
            outputs = ", ".join(  # "dense 384-d COSINE", "lexical sparse 250002-d IP"
                " ".join(dict.fromkeys([spec.name, spec.kind])) + f" {spec.dim}-d {spec.metric}"
                for spec in info.outputs
            )
            described = f"{info.modality:<11} {info.model}  {outputs}" + ("  +BM25" if info.hybrid else "")
        print(f"{summary.name:<20} {summary.rows:>8} rows  {described}")
    if damaged:
        raise common.UsageError("; ".join(str(summary.damage) for summary in damaged))
    return common.EXIT_OK
