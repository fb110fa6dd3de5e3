"""The ``multiembed`` command.

Exit codes: 0 every item embedded; 1 some items failed (the rest are still written, failures are
listed on stderr); 2 usage or configuration error (unknown modality, missing model, bad device),
reported in one line without a traceback.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from multiembed import load
from multiembed.embeddings import Embeddings
from multiembed.errors import MultiembedError
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


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-m", "--modality", required=True, help="what the inputs are: see `multiembed modalities`"
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
    parser.add_argument("--batch-size", type=int, default=32, help="items per forward pass (default: 32)")
    parser.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="allow models that run code from their own repository (off by default)",
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
        "  cat questions.txt | multiembed encode --modality text - -o q.jsonl\n\n"
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
        "--workers",
        type=int,
        default=None,
        help="processes that decode inputs ahead of the model (0 = none; default: cores - 1, at most 4)",
    )
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

    commands.add_parser(
        "modalities",
        help="list modalities with their models, dimensions and defaults",
        description="List every modality with its models (alias, hub id, dimension) and default.",
    )
    return parser


def _iter_inputs(modality_encoder: type, targets: Sequence[str]) -> Iterator[Item]:
    for target in targets:
        yield from modality_encoder.expand_input(target)


def _iter_queries(texts: Sequence[str], texts_file: str | None) -> Iterator[Item]:
    for number, text in enumerate(texts, start=1):
        yield Item(f"--text:{number}", text)
    if texts_file == "-":
        yield from read_lines(sys.stdin.buffer, "stdin")
    elif texts_file:
        with open(texts_file, "rb") as stream:
            yield from read_lines(stream, texts_file)


def _check_targets(args: argparse.Namespace) -> None:
    queries = bool(args.text or args.texts)
    if queries == bool(args.inputs):
        raise UsageError("give either INPUT files/folders or --text/--texts, not both or neither")
    targets = [*args.inputs, *([args.texts] if args.texts else [])]
    if targets.count("-") > 1:
        raise UsageError("stdin (-) can be given only once")
    for target in targets:
        if target != "-" and not Path(target).exists():
            raise UsageError(f"no such file or directory: {target}")
    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.workers is not None and args.workers < 0:
        raise UsageError(f"--workers must be >= 0, got {args.workers}")


def _report(result: Embeddings, seconds: float, output: Path) -> int:
    for error in result.errors:
        print(f"failed: {error.source}: {error.reason}", file=sys.stderr)
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
    _check_targets(args)
    role = "query" if args.text or args.texts else "document"
    if role == "query":
        items = _iter_queries(args.text, args.texts)
    else:
        items = _iter_inputs(spec.encoder_class, args.inputs)
    first = list(itertools.islice(items, 1))
    if not first:
        kinds = ", ".join(sorted(spec.extensions))
        where = " ".join(args.inputs) or args.texts
        raise UsageError(f"nothing to embed in {where} (looked for {kinds or 'lines'})")
    _quiet_libraries()
    started = time.perf_counter()
    options: dict[str, object] = {"batch_size": args.batch_size}
    if args.trust_remote_code:
        options["trust_remote_code"] = True
    if args.workers is not None:
        options["workers"] = args.workers
    encoder = load(args.modality, args.model, device=args.device, dtype=args.dtype, **options)
    result = encoder.encode(
        itertools.chain(first, items), role=role, progress=None if not args.quiet else False
    )
    write_embeddings(result, output, fmt)
    return _report(result, time.perf_counter() - started, output)


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


COMMANDS = {"encode": cmd_encode, "modalities": cmd_modalities}


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
    except KeyboardInterrupt:
        print("multiembed: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
