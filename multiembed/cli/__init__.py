"""The ``multiembed`` command.

Exit codes: 0 every item embedded; 1 some items failed (the rest are still written, failures are
listed on stderr); 2 usage or configuration error (unknown modality, missing model, bad device),
reported in one line without a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Callable, Sequence

from multiembed.cli.common import EXIT_OK, EXIT_USAGE, UsageError
from multiembed.cli.parser import build_parser
from multiembed.errors import MultiembedError
from multiembed.registry import import_failures, list_modalities


def cmd_modalities(args: argparse.Namespace) -> int:
    """Every registered modality and its models; modules that failed to import are named on stderr."""
    for name, reason in sorted(import_failures().items()):
        print(f"{name}: unavailable, its module failed to import ({reason})", file=sys.stderr)
    for spec in list_modalities():
        kinds = " ".join(sorted(spec.extensions))
        print(f"{spec.name}: {spec.description}  [files: {kinds}]")
        for info in spec.models:
            default = "  (default)" if info.alias == spec.default_model else ""
            print(f"  {info.alias:<12} {info.hub_id:<45} {info.dim:>5}-d{default}")
            if info.description:
                print(f"  {'':<12} {info.description}")
    return EXIT_OK


def _commands() -> dict[str, Callable[[argparse.Namespace], int]]:
    from multiembed.cli.encode import cmd_encode
    from multiembed.cli.store import cmd_collections, cmd_index, cmd_search

    return {
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
        return _commands()[args.command](args)
    except (UsageError, MultiembedError) as error:
        print(f"multiembed: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("multiembed: interrupted", file=sys.stderr)
        return 130
    except OSError as error:  # the disk is full, a folder is read-only, ...
        where = f": {error.filename}" if error.filename else ""
        print(f"multiembed: error: {error.strerror or error}{where}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as error:  # a bug of ours: one line, the traceback only when asked for
        if os.environ.get("MULTIEMBED_DEBUG"):
            traceback.print_exc()
        print(
            f"multiembed: internal error: {type(error).__name__}: {error} "
            "(set MULTIEMBED_DEBUG=1 for the traceback, and please report it)",
            file=sys.stderr,
        )
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
