"""Output formats by name and by file suffix: light enough for the CLI to parse its arguments."""

from __future__ import annotations

from pathlib import Path

from multiembed.errors import ConfigError

FORMATS = ("parquet", "npy", "jsonl")
_SUFFIXES = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".npy": "npy",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}


def format_for(path: Path, requested: str | None = None) -> str:
    """The output format: the one asked for, else the one the file suffix names."""
    if requested:
        if requested not in FORMATS:
            raise ConfigError(f"unknown format {requested!r}; choose one of {', '.join(FORMATS)}")
        return requested
    try:
        return _SUFFIXES[path.suffix.lower()]
    except KeyError:
        raise ConfigError(
            f"cannot tell the output format from {path.name!r}; use a .parquet, .npy or .jsonl "
            "suffix or pass --format"
        ) from None
