"""The Encoder base: the shared pipeline every modality plugs its few differing stages into.

A modality writes ``loader`` (one item -> raw value, or :class:`InputError`), ``preprocess`` (raw values
-> model batch) and ``forward`` (batch -> hidden states + mask), and picks a pooling. Everything
else lives here once: device/dtype placement, ``torch.inference_mode``, size-ordered batching with
the input order restored, pooling, L2 normalisation, the progress bar and per-item error isolation
(one bad item is reported and skipped; the rest of the batch still gets its vectors).
"""

from __future__ import annotations

import sys
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence, Sized
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, NamedTuple

import numpy as np
import torch
from tqdm.auto import tqdm

from multiembed.batching import chunked, longest_first, windows
from multiembed.device import DevicePolicy
from multiembed.embeddings import Embeddings, ItemError
from multiembed.errors import BackendError, InputError
from multiembed.models import ResolvedModel
from multiembed.pooling import get_pooler, l2_normalize
from multiembed.sources import Item, Loaded, as_items, read_lines, walk_files
from multiembed.workers import default_workers, failure_reason, load_in_process, load_in_workers

Role = Literal["document", "query"]
#: given the keys of a window's items, returns those that must not be embedded (already stored)
KeyFilter = Callable[[Sequence[str]], Collection[str]]


@dataclass
class ModelOutput:
    """What ``forward`` hands to ``pool``: per-position states, which positions are real, extras."""

    hidden: torch.Tensor
    mask: torch.Tensor | None = None
    extras: dict[str, Any] = field(default_factory=dict)


class _Entry(NamedTuple):
    position: int
    item: Item
    loaded: Loaded


class Encoder(ABC):
    """Base class of every modality's encoder; see the module docstring for the contract."""

    modality: ClassVar[str] = ""
    #: name of a pooler in :mod:`multiembed.pooling`, applied to ``forward``'s output
    pooling: str = "mean"
    metric: str = "COSINE"
    #: a window of ``batch_size * sort_window_batches`` items is sorted by size before batching
    sort_window_batches: ClassVar[int] = 64
    #: whether a plain string query means text (text, CLIP) rather than a file path
    accepts_text_queries: ClassVar[bool] = False
    #: modalities whose decoding is costly (images, audio, video) get worker processes by default
    decodes_in_workers: ClassVar[bool] = False

    def __init__(
        self,
        *,
        model_id: str,
        dim: int,
        policy: DevicePolicy,
        normalize: bool = True,
        batch_size: int = 32,
        workers: int | None = None,
    ) -> None:
        if workers is None:
            workers = default_workers(policy.device.type) if self.decodes_in_workers else 0
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if workers < 0:
            raise ValueError(f"workers must be >= 0, got {workers}")
        self.model_id = model_id
        self._dim = dim
        self.policy = policy
        self.normalize_embeddings = normalize
        self.batch_size = batch_size
        #: processes that run ``loader`` ahead of the model; 0 loads in the calling process
        self.workers = workers

    # ---- construction ---------------------------------------------------------------------
    @classmethod
    @abstractmethod
    def from_pretrained(cls, model: ResolvedModel, policy: DevicePolicy, **options: Any) -> Encoder:
        """Build the encoder from resolved weights; ``options`` are the modality's own settings."""

    # ---- identity -------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        """Length of every vector this encoder emits."""
        return self._dim

    @property
    def device(self) -> torch.device:
        return self.policy.device

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(modality={self.modality!r}, model={self.model_id!r}, "
            f"dim={self.dim}, metric={self.metric!r}, policy='{self.policy}')"
        )

    # ---- stages a modality writes -----------------------------------------------------------
    @abstractmethod
    def loader(self, role: Role) -> Callable[[Any], Loaded]:
        """The load stage: a callable that decodes one input or raises :class:`InputError`.

        It must hold no model: it is sent to worker processes when ``workers`` > 0.
        """

    def load(self, value: Any, role: Role) -> Loaded:
        """Decode one input in this process (what the workers do, for one item)."""
        return self.loader(role)(value)

    @abstractmethod
    def preprocess(self, raws: list[Any], role: Role) -> Any:
        """Turn decoded items into one model batch (tensors, or a dict of them) on the CPU."""

    @abstractmethod
    def forward(self, batch: Any) -> ModelOutput:
        """Run the model on a batch already on the device."""

    def pool(self, output: ModelOutput, batch: Any) -> torch.Tensor:
        """One vector per item; by default the class's ``pooling`` over the real positions."""
        return get_pooler(self.pooling)(output.hidden, output.mask)

    def normalize(self, vectors: torch.Tensor) -> torch.Tensor:
        """L2-normalise (the default) so cosine, inner product and Milvus COSINE agree."""
        return l2_normalize(vectors) if self.normalize_embeddings else vectors

    def size_of(self, raw: Any) -> int:
        """Cost estimate used to group similar items into batches; 0 keeps the input order."""
        return 0

    # ---- inputs from the command line -------------------------------------------------------
    extensions: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def expand_input(cls, target: str) -> Iterator[Item]:
        """Items for one CLI argument: a folder (recursive, by extension), a file, or ``-``."""
        if target == "-":
            yield from cls.items_from_stdin()
            return
        path = Path(target)
        if path.is_dir():
            for file in walk_files(path, cls.extensions):
                yield Item(str(file), file)
        elif path.is_file():
            yield from cls.items_from_file(path)
        else:
            raise FileNotFoundError(f"no such file or directory: {target}")

    @classmethod
    def items_from_file(cls, path: Path) -> Iterator[Item]:
        """A file named on the command line is one item (text overrides: one per line)."""
        yield Item(str(path), path)

    @classmethod
    def items_from_stdin(cls) -> Iterator[Item]:
        """``-`` reads one path per line (text overrides: one text per line)."""
        for item in read_lines(sys.stdin.buffer, "stdin"):
            value = item.value
            path = Path(value if isinstance(value, str) else value.decode("utf-8", "replace"))
            yield Item(str(path), path)

    # ---- the shared pipeline ------------------------------------------------------------------
    def _embed(self, raws: list[Any], role: Role) -> np.ndarray:
        batch = self.policy.move(self.preprocess(raws, role))
        with self.policy.inference():
            output = self.forward(batch)
            vectors = self.normalize(self.pool(output, batch).float())
        return vectors.cpu().numpy().astype(np.float32, copy=False)

    def _embed_isolated(self, entries: Sequence[_Entry], role: Role) -> list[np.ndarray | str]:
        """Vectors for a batch; a failing batch is split until the failing items are found."""
        try:
            return list(self._embed([entry.loaded.raw for entry in entries], role))
        except (BackendError, KeyboardInterrupt):
            raise
        except torch.OutOfMemoryError:
            if len(entries) == 1:
                raise
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
        except Exception as error:
            if len(entries) == 1:
                return [failure_reason(error)]
        half = len(entries) // 2
        return self._embed_isolated(entries[:half], role) + self._embed_isolated(entries[half:], role)

    def _load_stream(
        self, items: Iterable[Item], role: Role, batch_size: int, total: int | None
    ) -> Iterator[tuple[Item, Loaded | str]]:
        """Loaded items in input order; in worker processes unless the input is small."""
        load = self.loader(role)
        small = total is not None and total < 2 * batch_size
        if self.workers == 0 or small:
            return load_in_process(load, items)
        return load_in_workers(load, items, workers=self.workers, chunk_size=batch_size)

    def _encode_window(
        self,
        window: list[tuple[int, Item, Loaded | str]],
        role: Role,
        batch_size: int,
        bar: tqdm,
        skip_keys: KeyFilter | None = None,
        keep_raw: bool = False,
    ) -> Embeddings:
        entries = [_Entry(pos, item, loaded) for pos, item, loaded in window if isinstance(loaded, Loaded)]
        errors = [
            ItemError(pos, item.source, loaded) for pos, item, loaded in window if isinstance(loaded, str)
        ]
        entries, skipped = self._drop_known(entries, skip_keys)
        bar.update(len(errors) + len(skipped))
        ordered = [entries[i] for i in longest_first([self.size_of(e.loaded.raw) for e in entries])]
        results: dict[int, np.ndarray] = {}
        keyed: dict[int, _Entry] = {}
        for batch in chunked(ordered, batch_size):
            for entry, result in zip(batch, self._embed_isolated(batch, role), strict=True):
                if isinstance(result, str):
                    errors.append(ItemError(entry.position, entry.item.source, result))
                else:
                    results[entry.position] = result
                    keyed[entry.position] = entry
            bar.update(len(batch))
        positions = sorted(results)
        return Embeddings(
            vectors=np.stack([results[p] for p in positions])
            if positions
            else np.zeros((0, self.dim), dtype=np.float32),
            ids=[keyed[p].loaded.key for p in positions],
            sources=[keyed[p].item.source for p in positions],
            indices=positions,
            errors=sorted(errors, key=lambda error: error.index),
            skipped=skipped,
            raws=[keyed[p].loaded.raw for p in positions] if keep_raw else [],
            modality=self.modality,
            model=self.model_id,
            metric=self.metric,
        )

    @staticmethod
    def _drop_known(entries: list[_Entry], skip_keys: KeyFilter | None) -> tuple[list[_Entry], list[str]]:
        """Items repeated in the window, or whose key the caller already has, are not embedded."""
        if skip_keys is None:
            return entries, []
        known = set(skip_keys([entry.loaded.key for entry in entries]))
        kept: list[_Entry] = []
        skipped: list[str] = []
        for entry in entries:
            if entry.loaded.key in known:
                skipped.append(entry.item.source)
            else:
                known.add(entry.loaded.key)
                kept.append(entry)
        return kept, skipped

    def iter_encode(
        self,
        inputs: Iterable[Any],
        *,
        role: Role = "document",
        batch_size: int | None = None,
        progress: bool | None = None,
        skip_keys: KeyFilter | None = None,
        keep_raw: bool = False,
    ) -> Iterator[Embeddings]:
        """Encode a stream window by window, so memory stays flat however many items come.

        ``skip_keys`` lets a store leave out items it already holds before the model runs; the
        next window is read only after the caller has handled (e.g. stored) the previous one.
        """
        batch_size = batch_size or self.batch_size
        total = len(inputs) if isinstance(inputs, Sized) else None
        window = batch_size * self.sort_window_batches
        with tqdm(
            total=total,
            desc=f"{self.modality} {role}s",
            unit="item",
            file=sys.stderr,
            disable=None if progress is None else not progress,
            delay=0.5,
            dynamic_ncols=True,
        ) as bar:
            stream = self._load_stream(as_items(inputs), role, batch_size, total)
            numbered = ((position, item, loaded) for position, (item, loaded) in enumerate(stream))
            for chunk in windows(numbered, window):
                yield self._encode_window(chunk, role, batch_size, bar, skip_keys, keep_raw)

    def encode(
        self,
        inputs: Iterable[Any],
        *,
        role: Role = "document",
        batch_size: int | None = None,
        progress: bool | None = None,
    ) -> Embeddings:
        """Embed everything; failures are collected in ``errors`` instead of raised.

        ``progress=None`` shows a bar on stderr only when it is a terminal.
        """
        parts = list(self.iter_encode(inputs, role=role, batch_size=batch_size, progress=progress))
        return Embeddings.concat(
            parts, dim=self.dim, modality=self.modality, model=self.model_id, metric=self.metric
        )

    # ---- the pymilvus.model surface ------------------------------------------------------------
    def _encode_strict(self, inputs: Iterable[Any], role: Role) -> list[np.ndarray]:
        result = self.encode(list(inputs), role=role, progress=False)
        if result.errors:
            first = result.errors[0]
            raise InputError(first.reason, first.source)
        return list(result.vectors)

    def encode_documents(self, documents: Iterable[Any]) -> list[np.ndarray]:
        """One vector per document, as pymilvus.model does; raises InputError on a bad item."""
        return self._encode_strict(documents, "document")

    def encode_queries(self, queries: Iterable[Any]) -> list[np.ndarray]:
        """One vector per query (with the model's query instruction, if it has one)."""
        return self._encode_strict(queries, "query")

    def __call__(self, inputs: Iterable[Any]) -> list[np.ndarray]:
        return self.encode_documents(inputs)
