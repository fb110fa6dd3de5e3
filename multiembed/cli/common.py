"""What every command shares: the usage error, exit codes, option checks and the failure report."""

from __future__ import annotations

import argparse
import itertools
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from multiembed.sources import Item

if TYPE_CHECKING:
    from multiembed.embeddings import ItemError

EXIT_OK, EXIT_PARTIAL, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """A problem with what the user asked for; printed as one line, exit code 2."""


def quiet_libraries() -> None:
    """Library progress bars and warnings would drown our own progress and summary."""
    import warnings

    from transformers.utils import logging as transformers_logging

    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning)


def encoder_options(args: argparse.Namespace) -> dict[str, Any]:
    """The encoder options given on the command line (only those given: the rest keep defaults)."""
    options: dict[str, Any] = {}
    if args.batch_size is not None:
        options["batch_size"] = args.batch_size
    if args.trust_remote_code:
        options["trust_remote_code"] = True
    if args.workers is not None:
        options["workers"] = args.workers
    if args.dtype:
        options["dtype"] = args.dtype
    if getattr(args, "backend", None):
        options["backend"] = args.backend
    for pair in getattr(args, "option", None) or []:
        key, value = parse_option(pair)
        options[key] = value
    return options


def parse_option(pair: str) -> tuple[str, Any]:
    """``KEY=VALUE`` from ``--option``: numbers, booleans, null, lists and objects as JSON, else text."""
    import json

    key, equals, value = pair.partition("=")
    key = key.strip().replace("-", "_")
    if not equals or not key.isidentifier():
        raise UsageError(f"--option needs KEY=VALUE with KEY a name, got {pair!r}")
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value


def first_or_fail(items: Iterator[Item], where: str, extensions: frozenset[str]) -> Iterator[Item]:
    """The same items, after checking there is at least one (an empty run is a usage error)."""
    first = list(itertools.islice(items, 1))
    if not first:
        kinds = ", ".join(sorted(extensions)) or "lines"
        raise UsageError(f"nothing to embed in {where} (looked for {kinds})")
    return itertools.chain(first, items)


def check_targets(targets: Sequence[str]) -> None:
    if targets.count("-") > 1:
        raise UsageError("stdin (-) can be given only once")
    for target in targets:
        if target != "-" and not Path(target).exists():
            raise UsageError(f"no such file or directory: {target}")


def check_model_options(args: argparse.Namespace) -> None:
    if args.batch_size is not None and args.batch_size < 1:
        raise UsageError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.workers is not None and args.workers < 0:
        raise UsageError(f"--workers must be >= 0, got {args.workers}")


def print_failures(errors: Sequence[ItemError]) -> None:
    for error in errors:
        print(f"failed: {error.source}: {error.reason}", file=sys.stderr)
