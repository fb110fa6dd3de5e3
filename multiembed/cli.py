"""The ``multiembed`` command.

Exit codes: 0 every item embedded; 1 some items failed (the rest are still written, failures are
listed on stderr); 2 usage or configuration error (unknown modality, missing model, bad device),
reported in one line without a traceback.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from pathlib import Path

from multiembed import load
from multiembed.embeddings import Embeddings, ItemError
from multiembed.errors import MultiembedError
from multiembed.milvus import DEFAULT_URI
from multiembed.output import FORMATS, format_for, write_embeddings
from multiembed.registry import get, list_modalities
from multiembed.sources import Item, read_lines

EXIT_OK, EXIT_PARTIAL, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """A problem with what the user asked for; printed as one line, exit code 2."""


def _quiet_libraries() -> None:
    """Library progress bars and warnings would drown our own progress and summary."""
    import warnings

    from transformers.utils import logging as transformers_logging

    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning)


def _add_model_options(parser: argparse.ArgumentParser, modality_required: bool = True) -> None:
    parser.add_argument(
        "-m",
        "--modality",
        required=modality_required,
        help="what the inputs are: see `multiembed modalities`",
    )
    parser.add_argument(
        "--model",
        help="model alias, hub id or local directory (default: the modality's default model)",
    )
    parser.add_argument(
        "--device",
        default="auto",
        help="auto (cuda > mps > cpu), cpu, cuda, cuda:N or mps (default: auto)",
    )
    parser.add_argument(
        "--dtype",
        choices=["float32", "bfloat16", "float16"],
        default=None,
        help="float32 is exact (default); bfloat16/float16 are faster, ~1e-3 off",
    )
    parser.add_argument("--batch-size", type=int, default=None,
                        help="items per forward pass (default: the modality's own)")  # fmt: skip
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="processes that decode files ahead of the model (0 = none; default depends on the device)",
    )
    parser.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="allow models that run code from their own repository (off by default)",
    )


def _add_store_options(
    parser: argparse.ArgumentParser, *, collection_required: bool = False, with_collection: bool = True
) -> None:
    parser.add_argument("--uri", default=DEFAULT_URI,
                        help=f"Milvus Lite file or server URL (default: {DEFAULT_URI})")  # fmt: skip
    if with_collection:
        parser.add_argument(
            "-c",
            "--collection",
            required=collection_required,
            help="collection name" + ("" if collection_required else " (default: the modality's name)"),
        )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="multiembed",
        description="Turn text, images, audio, video and image-text pairs into embedding vectors "
        "with well-known open models, and store them in Milvus.",
        epilog="Examples:\n"
        "  multiembed modalities\n"
        "  multiembed encode --modality text notes.txt -o notes.parquet\n"
        "  multiembed encode --modality image ./photos -o photos.parquet\n"
        "  multiembed encode --modality image-text --text 'a red bicycle' -o query.npy\n"
        "  cat questions.txt | multiembed encode --modality text - -o q.jsonl\n"
        "  multiembed index ./photos --modality image-text --collection photos\n"
        "  multiembed search 'a red bicycle' --collection photos --limit 5\n\n"
        "Exit codes: 0 all items embedded, 1 some items failed (the rest are written), "
        "2 usage or configuration error.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    encode = commands.add_parser(
        "encode",
        help="embed files, folders or stdin and write the vectors to a file",
        description="Embed every input item and write one row per item (id = sha256 of the item, "
        "source, modality, model, vector). For text, a file or `-` (stdin) holds one text per "
        "line and a folder holds one text per .txt/.md file; for other modalities a folder is "
        "searched recursively for files of that modality. Items that fail are listed with the "
        "reason and skipped; the output is written atomically.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    encode.add_argument("inputs", nargs="*", metavar="INPUT", help="file, folder, or - for stdin")
    _add_model_options(encode)
    encode.add_argument(
        "--text",
        action="append",
        default=[],
        metavar="TEXT",
        help="embed this text as a query instead of INPUTs (repeatable); with image-text it lands "
        "in the image space, with text it gets the model's query instruction",
    )
    encode.add_argument("--texts", metavar="FILE", help="embed each line of FILE as a query (- for stdin)")

    encode.add_argument(
        "-o",
        "--output",
        default="embeddings.parquet",
        help="output file (default: embeddings.parquet)",
    )
    encode.add_argument(
        "--format",
        choices=FORMATS,
        default=None,
        help="output format (default: from the output's suffix)",
    )
    encode.add_argument("-q", "--quiet", action="store_true", help="no progress bar")

    index = commands.add_parser(
        "index",
        help="embed files or folders into a Milvus collection (Milvus Lite file by default)",
        description="Embed every input and upsert it into a collection, keyed by the sha256 of its "
        "content: items already stored are skipped before the model runs, so re-running adds only "
        "new files and finishes an interrupted run. The collection records its modality and model; "
        "later runs and searches reuse them.",
    )
    index.add_argument("inputs", nargs="+", metavar="INPUT", help="file, folder, or - for stdin")
    _add_model_options(index, modality_required=False)
    _add_store_options(index)
    index.add_argument("--hybrid", action="store_true",
                       help="text only: also store the text with a BM25 index for hybrid search")  # fmt: skip
    index.add_argument("--index-type", default="AUTOINDEX",
                       help="AUTOINDEX, HNSW, IVF_FLAT, FLAT (servers also DISKANN, ...)")  # fmt: skip
    index.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    index.add_argument("-v", "--verbose", action="store_true", help="a line per stored batch")

    search = commands.add_parser(
        "search",
        help="search a collection with text, an example file, using its recorded model",
        description="Embed the query with the model the collection was built with and print the "
        "nearest items: rank, score (cosine similarity; higher is closer) and source.",
    )
    search.add_argument("query", nargs="?", help="query text (text and image-text collections)")
    search.add_argument("--file", help="query by example: a file of the collection's modality")
    _add_store_options(search, collection_required=True)
    search.add_argument("--limit", type=int, default=5, help="number of hits (default: 5)")
    search.add_argument("--filter", help="Milvus boolean expression, e.g. 'source like \"%%.png\"'")
    search.add_argument("--hybrid", action="store_true", help="fuse dense and BM25 results (RRF)")
    search.add_argument("--json", action="store_true", help="print hits as JSON")
    search.add_argument("--device", default="auto", help="where the query is embedded (default: auto)")

    collections = commands.add_parser(
        "collections",
        help="list collections with their modality, model, dim and row count",
        description="List the collections at --uri with the encoder each was built with.",
    )
    _add_store_options(collections, with_collection=False)

    commands.add_parser(
        "modalities",
        help="list modalities with their models, dimensions and defaults",
        description="List every modality with its models (alias, hub id, dimension) and default.",
    )
    return parser


def _iter_inputs(modality_encoder: type, targets: Sequence[str]) -> Iterator[Item]:
    for target in targets:
        yield from modality_encoder.expand_input(target)


def _encoder_options(args: argparse.Namespace) -> dict[str, object]:
    options: dict[str, object] = {}
    if args.batch_size is not None:
        options["batch_size"] = args.batch_size
    if args.trust_remote_code:
        options["trust_remote_code"] = True
    if args.workers is not None:
        options["workers"] = args.workers
    if args.dtype:
        options["dtype"] = args.dtype
    return options


def _first_or_fail(items: Iterator[Item], where: str, extensions: frozenset[str]) -> Iterator[Item]:
    """The same items, after checking there is at least one (an empty run is a usage error)."""
    first = list(itertools.islice(items, 1))
    if not first:
        kinds = ", ".join(sorted(extensions)) or "lines"
        raise UsageError(f"nothing to embed in {where} (looked for {kinds})")
    return itertools.chain(first, items)


def _iter_queries(texts: Sequence[str], texts_file: str | None) -> Iterator[Item]:
    for number, text in enumerate(texts, start=1):
        yield Item(f"--text:{number}", text)
    if texts_file == "-":
        yield from read_lines(sys.stdin.buffer, "stdin")
    elif texts_file:
        with open(texts_file, "rb") as stream:
            yield from read_lines(stream, texts_file)


def _check_targets(targets: Sequence[str]) -> None:
    if targets.count("-") > 1:
        raise UsageError("stdin (-) can be given only once")
    for target in targets:
        if target != "-" and not Path(target).exists():
            raise UsageError(f"no such file or directory: {target}")


def _check_model_options(args: argparse.Namespace) -> None:
    if args.batch_size is not None and args.batch_size < 1:
        raise UsageError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.workers is not None and args.workers < 0:
        raise UsageError(f"--workers must be >= 0, got {args.workers}")


def _print_failures(errors: Sequence[ItemError]) -> None:
    for error in errors:
        print(f"failed: {error.source}: {error.reason}", file=sys.stderr)


def _report(result: Embeddings, seconds: float, output: Path) -> int:
    _print_failures(result.errors)
    print(
        f"embedded {len(result)} of {result.total} items, {len(result.errors)} failed, "
        f"in {seconds:.1f}s with {result.model} -> {output}",
        file=sys.stderr,
    )
    return EXIT_PARTIAL if result.errors else EXIT_OK


def cmd_encode(args: argparse.Namespace) -> int:
    spec = get(args.modality)
    output = Path(args.output)
    try:
        fmt = format_for(output, args.format)
    except ValueError as error:
        raise UsageError(str(error)) from None
    if bool(args.text or args.texts) == bool(args.inputs):
        raise UsageError("give either INPUT files/folders or --text/--texts, not both or neither")
    _check_targets([*args.inputs, *([args.texts] if args.texts else [])])
    _check_model_options(args)
    role = "query" if args.text or args.texts else "document"
    if role == "query":
        items = _first_or_fail(_iter_queries(args.text, args.texts), str(args.texts), frozenset())
    else:
        items = _first_or_fail(
            _iter_inputs(spec.encoder_class, args.inputs), " ".join(args.inputs), spec.extensions
        )
    _quiet_libraries()
    started = time.perf_counter()
    options = _encoder_options(args)
    dtype = options.pop("dtype", None)
    encoder = load(args.modality, args.model, device=args.device, dtype=dtype, **options)
    result = encoder.encode(items, role=role, progress=None if not args.quiet else False)
    write_embeddings(result, output, fmt)
    return _report(result, time.perf_counter() - started, output)


def cmd_index(args: argparse.Namespace) -> int:
    from multiembed.milvus import MilvusStore, check_backend

    _check_targets(args.inputs)
    _check_model_options(args)
    check_backend(args.uri, index_type=args.index_type)
    if args.collection is None:
        if args.modality is None:
            raise UsageError("give --modality (for a new collection) or --collection")
        args.collection = args.modality.replace("-", "_")
    _quiet_libraries()
    started = time.perf_counter()
    options = _encoder_options(args)
    with MilvusStore(
        args.uri,
        args.collection,
        modality=args.modality,
        model=args.model,
        hybrid=args.hybrid,
        index_type=args.index_type,
        device=args.device,
        **options,
    ) as store:
        spec = get(store.info.modality)
        items = _first_or_fail(
            _iter_inputs(spec.encoder_class, args.inputs), " ".join(args.inputs), spec.extensions
        )
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
    _print_failures(errors)
    print(
        f"added {added}, skipped {skipped} already stored, {len(errors)} failed, in "
        f"{time.perf_counter() - started:.1f}s -> {args.uri} collection {args.collection!r} ({total} rows)",
        file=sys.stderr,
    )
    return EXIT_PARTIAL if errors else EXIT_OK


def cmd_search(args: argparse.Namespace) -> int:
    from multiembed.milvus import MilvusStore

    if (args.query is None) == (args.file is None):
        raise UsageError("give a query text or --file, not both or neither")
    if args.file is not None and not Path(args.file).is_file():
        raise UsageError(f"no such file: {args.file}")
    if args.limit < 1:
        raise UsageError(f"--limit must be >= 1, got {args.limit}")
    _quiet_libraries()
    with MilvusStore(args.uri, args.collection, device=args.device) as store:
        query = Path(args.file) if args.file else args.query
        hits = store.search(query, limit=args.limit, filter=args.filter, hybrid=args.hybrid)
    if args.json:
        print(json.dumps([{"rank": rank, **asdict(hit)} for rank, hit in enumerate(hits, 1)], indent=2))
    else:
        for rank, hit in enumerate(hits, 1):
            print(f"{rank:>3}  {hit.score:8.4f}  {hit.source}")
        if not hits:
            print("no hits", file=sys.stderr)
    return EXIT_OK


def cmd_collections(args: argparse.Namespace) -> int:
    from multiembed.milvus import list_collections

    summaries = list_collections(args.uri)
    if not summaries:
        print(f"no collections in {args.uri}", file=sys.stderr)
    for summary in summaries:
        info = summary.info
        described = (
            f"{info.modality:<11} {info.model}  {info.dim}-d {info.metric}" if info else "(not multiembed)"
        )
        hybrid = "  +BM25" if info and info.hybrid else ""
        print(f"{summary.name:<20} {summary.rows:>8} rows  {described}{hybrid}")
    return EXIT_OK


def cmd_modalities(args: argparse.Namespace) -> int:
    for spec in list_modalities():
        kinds = " ".join(sorted(spec.extensions))
        print(f"{spec.name}: {spec.description}  [files: {kinds}]")
        for info in spec.models:
            default = "  (default)" if info.alias == spec.default_model else ""
            print(f"  {info.alias:<12} {info.hub_id:<45} {info.dim:>5}-d{default}")
            if info.description:
                print(f"  {'':<12} {info.description}")
    return EXIT_OK


COMMANDS = {
    "encode": cmd_encode,
    "index": cmd_index,
    "search": cmd_search,
    "collections": cmd_collections,
    "modalities": cmd_modalities,
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        return COMMANDS[args.command](args)
    except (UsageError, MultiembedError) as error:
        print(f"multiembed: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as error:
        if type(error).__module__.startswith("pymilvus"):  # a server-side refusal, not our bug
            print(f"multiembed: error: Milvus: {getattr(error, 'message', error)}", file=sys.stderr)
            return EXIT_USAGE
        raise
    except KeyboardInterrupt:
        print("multiembed: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
