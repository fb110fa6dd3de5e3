"""What a Milvus server can do, by its version: refuse up front what it lacks, fill what it requires.

A server older than a feature does not always say so: Milvus 2.3 accepts a SPARSE_FLOAT_VECTOR field
it cannot index or search, and fails later, in a traceback from deep inside the server. Before a
collection is made on a server, its version is read once and every feature the collection needs is
checked here, so the refusal is one line naming the server's version and the one the feature needs.
Milvus Lite has its own rules (:func:`multiembed.milvus.schema.check_backend`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from multiembed.errors import BackendError
from multiembed.outputs import OutputSpec

Version = tuple[int, int, int]

#: upsert and the COSINE metric, which every multiembed collection uses, came with Milvus 2.3.0
BASELINE: Version = (2, 3, 0)
#: feature -> (first Milvus version that has it, what it is called in the refusal)
FEATURES: dict[str, tuple[Version, str]] = {
    "sparse": ((2, 4, 0), "a sparse vector field (SPARSE_FLOAT_VECTOR)"),
    "several vectors": ((2, 4, 0), "a second vector field in one collection"),
    "bm25": ((2, 5, 0), "the built-in BM25 function (hybrid=True, --hybrid)"),
}
#: index types that arrived after the baseline (the others are older than 2.3)
INDEX_MINIMUM: dict[str, Version] = {
    "GPU_CAGRA": (2, 4, 0),
    "GPU_BRUTE_FORCE": (2, 4, 0),
    "SPARSE_INVERTED_INDEX": (2, 4, 0),
    "SPARSE_WAND": (2, 4, 0),
}
#: build parameters Milvus 2.3 requires for these index types (newer servers default them);
#: used when the caller gives none. IVF_PQ's ``m`` is derived from the dimension.
DEFAULT_INDEX_PARAMS: dict[str, dict[str, int]] = {
    "IVF_FLAT": {"nlist": 128},
    "IVF_SQ8": {"nlist": 128},
    "IVF_PQ": {"nlist": 128, "nbits": 8},
    "SCANN": {"nlist": 128},
    "GPU_IVF_FLAT": {"nlist": 128},
    "GPU_IVF_PQ": {"nlist": 128, "nbits": 8},
    "HNSW": {"M": 30, "efConstruction": 360},
}


def parse_version(text: str) -> Version | None:
    """``(2, 3, 5)`` from what a server reports (``v2.3.5-lite``, ``2.4.0-rc.1``, a cloud's
    ``Compatible with Milvus 2.5``), or None when it names no version."""
    found = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", text or "")
    if not found:
        return None
    major, minor, patch = found.groups()
    return int(major), int(minor), int(patch or 0)


def shown(version: Version) -> str:
    return ".".join(str(part) for part in version)


def server_version(client: Any) -> tuple[Version | None, str]:
    """The server's version (None if it names none) and its own words for it."""
    reported = str(client.get_server_version())
    return parse_version(reported), reported


def needed_features(outputs: Iterable[OutputSpec], hybrid: bool) -> list[str]:
    """The :data:`FEATURES` a collection with these stored outputs (and BM25, if ``hybrid``) needs."""
    stored = [spec for spec in outputs if spec.milvus_type is not None]
    needs = []
    if any(spec.kind == "sparse" for spec in stored) or hybrid:
        needs.append("sparse")
    if len(stored) + int(hybrid) > 1:
        needs.append("several vectors")
    if hybrid:
        needs.append("bm25")
    return needs


def check_server(
    uri: str,
    version: Version | None,
    reported: str,
    *,
    features: Iterable[str] = (),
    index_type: str | None = None,
) -> None:
    """Refuse, in one line, what this server version cannot do (a server naming no version passes)."""
    if version is None:
        return
    where = f"the Milvus server at {uri} is {reported}"
    if version < BASELINE:
        raise BackendError(f"{where}; multiembed needs Milvus {shown(BASELINE)} or newer (upsert, COSINE)")
    # the feature needing the newest server first: that is the version the user must reach
    for feature in sorted(features, key=lambda feature: FEATURES[feature][0], reverse=True):
        minimum, name = FEATURES[feature]
        if version < minimum:
            raise BackendError(
                f"{where}; {name} needs Milvus {shown(minimum)} or newer (Milvus Lite, a local .db "
                "path, has it too)"
            )
    index = (index_type or "").upper()
    minimum_index = INDEX_MINIMUM.get(index)
    if minimum_index is not None and version < minimum_index:
        raise BackendError(f"{where}; the {index} index needs Milvus {shown(minimum_index)} or newer")


def server_index_params(index_type: str, dim: int, given: dict[str, Any] | None) -> dict[str, Any]:
    """Build parameters for a dense index on a server: ``given`` over the defaults Milvus 2.3 requires."""
    defaults: dict[str, Any] = dict(DEFAULT_INDEX_PARAMS.get(index_type.upper(), {}))
    if index_type.upper() in ("IVF_PQ", "GPU_IVF_PQ"):
        # m sub-quantizers must divide dim; take sub-vectors of at least 8 dimensions.
        width = next(width for width in range(min(8, dim), dim + 1) if dim % width == 0)
        defaults["m"] = dim // width
    return {**defaults, **(given or {})}
