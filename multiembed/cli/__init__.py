"""The ``multiembed`` command.

Exit codes: 0 every item embedded; 1 some items failed (the rest are still written, failures are
listed on stderr); 2 usage or configuration error (unknown modality, missing model, bad device),
reported in one line without a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback
from collections.abc import Callable, Sequence

from multiembed.cli.common import EXIT_OK, EXIT_USAGE, UsageError
from multiembed.cli.parser import build_parser
from multiembed.errors import CollectionNotFoundError, MultiembedError, hidden_interrupt
from multiembed.registry import import_failures, list_modalities


def cmd_modalities(args: argparse.Namespace) -> int:
    """Every registered modality and its models; modules that failed to import are named on stderr."""
    for name, reason in sorted(import_failures().items()):
        print(f"{name}: unavailable, its module failed to import ({reason})", file=sys.stderr)
    for spec in list_modalities():
        kinds = " ".join(sorted(spec.extensions))
        print(f"{spec.name}: {spec.description}  [files: {kinds}]")
        alias_width = max([12, *(len(info.alias) for info in spec.models)])
        hub_width = max([45, *(len(info.hub_id) for info in spec.models)])
        for info in spec.models:
            default = "  (default)" if info.alias == spec.default_model else ""
            dim = f"{info.dim:>5}-d" if info.dim else "  any-d"  # set by a file or a server
            print(f"  {info.alias:<{alias_width}} {info.hub_id:<{hub_width}} {dim}{default}")
            if info.description:
                print(f"  {'':<{alias_width}} {info.description}")
    return EXIT_OK


#: subcommand -> (module, function); a command's module is imported only when it runs, so the
#: light ones (modalities, collections, --help) don't pay for torch
_COMMANDS = {
    "encode": ("multiembed.cli.encode", "cmd_encode"),
    "index": ("multiembed.cli.store", "cmd_index"),
    "search": ("multiembed.cli.store", "cmd_search"),
    "collections": ("multiembed.cli.store", "cmd_collections"),
    "export-bulk": ("multiembed.cli.bulk", "cmd_export_bulk"),
    "import-bulk": ("multiembed.cli.bulk", "cmd_import_bulk"),
    "modalities": ("multiembed.cli", "cmd_modalities"),
    "serve": ("multiembed.cli.serve", "cmd_serve"),
}


def _command(name: str) -> Callable[[argparse.Namespace], int]:
    module, function = _COMMANDS[name]
    command: Callable[[argparse.Namespace], int] = getattr(importlib.import_module(module), function)
    return command


#: what an interrupted run kept, and how to go on: said when Ctrl+C stops one
_RESUME_HINTS = {
    "index": "; what was stored stays (rows are written every few thousand items): "
    "run the same command again to go on, stored items are skipped",
    "encode": "; no output file was written (with --shard-size DIR, finished shards are kept "
    "and the same command again goes on from them)",
}


def _interrupted(command: str) -> int:
    print(f"multiembed: interrupted{_RESUME_HINTS.get(command, '')}", file=sys.stderr)
    return 130


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "verbose", False):
        # gRPC's C core prints keep-alive complaints (too_many_pings) straight to stderr; it reads
        # this before it is first imported, which happens later, with pymilvus.
        os.environ.setdefault("GRPC_VERBOSITY", "NONE")
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        return _command(args.command)(args)
    except KeyboardInterrupt:
        return _interrupted(args.command)
    except Exception as error:
        if hidden_interrupt(error) is not None:  # a cleanup that failed during Ctrl+C
            return _interrupted(args.command)
        return _report(error, args)


def _report(error: Exception, args: argparse.Namespace) -> int:
    """Say in one line why a command failed; the exit status for it."""
    if isinstance(error, CollectionNotFoundError):  # the command line's way to make one, not the API's
        there = ", ".join(error.existing) or "none"
        print(
            f"multiembed: error: no collection {error.collection!r} in {getattr(args, 'uri', '?')} "
            f"(collections there: {there}); make one with "
            f"`multiembed index INPUT --modality MODALITY --collection {error.collection}`",
            file=sys.stderr,
        )
    elif isinstance(error, (UsageError, MultiembedError)):
        print(f"multiembed: error: {error}", file=sys.stderr)
    elif isinstance(error, OSError):  # the disk is full, a folder is read-only, ...
        where = f": {error.filename}" if error.filename else ""
        print(f"multiembed: error: {error.strerror or error}{where}", file=sys.stderr)
    else:  # a bug of ours: one line, the traceback only when asked for
        if os.environ.get("MULTIEMBED_DEBUG"):
            traceback.print_exception(error)
        print(
            f"multiembed: internal error: {type(error).__name__}: {error} "
            "(set MULTIEMBED_DEBUG=1 for the traceback, and please report it)",
            file=sys.stderr,
        )
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
