"""Saved encoder identities: compare a recorded ``Encoder.config()`` with a live one, and rebuild it.

A collection or a file of vectors records how its vectors were made. Reopening it must give the
same vectors, so the record is enough to rebuild the encoder (``load_arguments``), and any
difference is named key by key (``mismatches``) instead of searching with other vectors silently.
"""

from __future__ import annotations

from typing import Any

#: the order differences are reported in: what the vectors are first, how they were made last
_ORDER = ("modality", "model", "weights", "outputs", "dtype", "backend", "options", "details")
#: top-level keys whose values are dicts compared key by key (and named by their inner keys)
_NESTED = ("options", "details")


def legacy_config(modality: str, model: str, dim: int, metric: str) -> dict[str, Any]:
    """The identity of a collection made before identities were saved: only what it recorded."""
    return {
        "modality": modality,
        "model": model,
        "outputs": [{"name": "dense", "kind": "dense", "dim": dim, "metric": metric}],
        "legacy": True,
    }


def _differs(name: str, recorded: Any, current: Any, where: str) -> str:
    return f"{name}: {where} has {recorded!r}, encoder has {current!r}"


def mismatches(recorded: dict[str, Any], current: dict[str, Any], where: str = "collection") -> list[str]:
    """Every key whose value differs, as ``key: collection has X, encoder has Y``.

    The model path alone is not a difference when both sides fingerprint the same weights: the
    weights were moved, not changed. A legacy record is compared on the keys it has.
    """
    keys = set(recorded) - {"legacy"} if recorded.get("legacy") else set(recorded) | set(current)
    same_weights = bool(recorded.get("weights")) and recorded.get("weights") == current.get("weights")
    problems: list[str] = []
    for key in sorted(keys, key=lambda name: (_ORDER.index(name) if name in _ORDER else len(_ORDER), name)):
        if key in _NESTED:
            inner_recorded, inner_current = recorded.get(key) or {}, current.get(key) or {}
            # Options are compared in full. Details follow from the weights and library versions: a
            # setting one side doesn't record (a newer library saving one more key) is no difference.
            names = set(inner_recorded) | set(inner_current)
            if key == "details":
                names = set(inner_recorded) & set(inner_current)
            for inner in sorted(names):
                if inner_recorded.get(inner) != inner_current.get(inner):
                    problems.append(
                        _differs(inner, inner_recorded.get(inner), inner_current.get(inner), where)
                    )
        elif key == "outputs":
            problems += _output_mismatches(recorded.get(key) or [], current.get(key) or [], where)
        elif key == "model" and same_weights:
            continue
        elif recorded.get(key) != current.get(key):
            problems.append(_differs(key, recorded.get(key), current.get(key), where))
    return problems


def _output_mismatches(
    recorded: list[dict[str, Any]], current: list[dict[str, Any]], where: str
) -> list[str]:
    """Outputs compared field by field: ``dim: ...`` for the primary, ``sparse dim: ...`` for others."""
    problems: list[str] = []
    names = [output["name"] for output in recorded] + [
        output["name"] for output in current if output["name"] not in {item["name"] for item in recorded}
    ]
    by_name = [({o["name"]: o for o in side}) for side in (recorded, current)]
    for position, name in enumerate(names):
        old, new = by_name[0].get(name), by_name[1].get(name)
        if old is None or new is None:
            problems.append(_differs(f"output {name!r}", "it" if old else None, "it" if new else None, where))
            continue
        prefix = "" if position == 0 else f"{name} "
        for attribute in ("kind", "dim", "metric"):
            if old.get(attribute) != new.get(attribute):
                problems.append(_differs(prefix + attribute, old.get(attribute), new.get(attribute), where))
    return problems


def load_arguments(config: dict[str, Any]) -> tuple[str, str, dict[str, Any]]:
    """``(modality, model, options)`` that make :func:`multiembed.load` rebuild the recorded encoder."""
    options = dict(config.get("options") or {})
    if config.get("dtype"):
        options["dtype"] = config["dtype"]
    if config.get("backend") not in (None, "torch"):  # a fast backend is rebuilt as it was recorded
        options["backend"] = config["backend"]
    return str(config["modality"]), str(config["model"]), options
