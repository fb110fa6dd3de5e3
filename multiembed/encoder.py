"""The Encoder base: the shared pipeline every modality plugs its few differing stages into.

A modality writes ``loader`` (one item -> raw value, or :class:`InputError`), ``preprocess`` (raw values
-> model batch) and ``forward`` (batch -> hidden states + mask), and picks a pooling; the role
(``document`` / ``query``) is handed to every stage, so none has to guess it. It declares its
``outputs`` (dense, sparse or multi-vector) and its identity (``identity_options`` / ``details``),
which ``config()`` turns into the record saved with collections and files. Everything else lives
here once: device/dtype placement, ``torch.inference_mode``, size-ordered batching with the input
order restored, L2 normalisation, the conversion of each output kind, the progress bar and per-item
error isolation (:mod:`multiembed.isolation`: one bad item is reported and skipped; a model that
fails on every item stops the run). A fast backend plugs in through :class:`FastHook`.
"""

from __future__ import annotations

import json
import sys
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence, Sized
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal, NamedTuple

from tqdm.auto import tqdm

from multiembed.batching import budget_batches, windows
from multiembed.device import DevicePolicy
from multiembed.embeddings import Embeddings, ItemError
from multiembed.errors import BackendError, ConfigError
from multiembed.failures import FailureWatch
from multiembed.fast.core import FastHook
from multiembed.isolation import embed_isolated
from multiembed.models import ResolvedModel
from multiembed.outputs import NON_FINITE, OutputSpec, is_finite_row, split_rows, stack_rows
from multiembed.pooling import get_pooler, l2_normalize
from multiembed.pymilvus_surface import PymilvusSurface
from multiembed.sources import Item, Loaded, as_items
from multiembed.workers import default_workers, load_in_process, load_in_workers

if TYPE_CHECKING:
    import torch
else:
    from multiembed.lazy import torch

Role = Literal["document", "query"]
#: given the keys of a window's items, returns those that must not be embedded (already stored)
KeyFilter = Callable[[Sequence[str]], Collection[str]]
#: one item's vectors: output name -> its row (dense vector, 1-row CSR, or a matrix)
ItemVectors = dict[str, Any]


def _non_finite(vectors: ItemVectors) -> str | None:
    """Why one item's vectors cannot be kept: NaN or infinity in any output (too loud a clip)."""
    return None if all(map(is_finite_row, vectors.values())) else NON_FINITE


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


def _json_safe(value: dict[str, Any]) -> dict[str, Any]:
    """The same dict as JSON would give it back (tuples become lists), so saved and live compare equal."""
    return dict(json.loads(json.dumps(value, default=str)))


class Encoder(FastHook, PymilvusSurface, ABC):
    """Base class of every modality's encoder; see the module docstring for the contract.

    ``exportable_core`` (the network a fast backend may run in place of ``forward``) and the
    ``fast`` / ``fast_report`` slots it fills come from :class:`~multiembed.fast.core.FastHook`.
    """

    modality: ClassVar[str] = ""
    #: name of a pooler in :mod:`multiembed.pooling`, applied to ``forward``'s output
    pooling: str = "mean"
    metric: str = "COSINE"
    #: a window of ``batch_size * sort_window_batches`` items is sorted by size before batching
    sort_window_batches: ClassVar[int] = 64
    #: a batch pads to at most ``batch_size * size_budget_per_item`` units of ``size_of`` (text: tokens),
    #: so long items go in smaller batches; None: every batch has ``batch_size`` items
    size_budget_per_item: int | None = None
    #: called with each model batch as ``forward`` gets it (instrumentation: padded shapes, counts)
    batch_observer: Callable[[Any], None] | None = None
    #: whether a plain string query means text (text, CLIP) rather than a file path
    accepts_text_queries: ClassVar[bool] = False
    #: whether documents are texts (then a collection can also keep them for Milvus' BM25)
    documents_are_text: ClassVar[bool] = False
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
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        if not isinstance(workers, int) or workers < 0:
            raise ConfigError(f"workers must be an integer >= 0, got {workers!r}")
        self.model_id = model_id
        self._dim = dim
        self.policy = policy
        self.normalize_embeddings = normalize
        self.batch_size = batch_size
        #: processes that run ``loader`` ahead of the model; 0 loads in the calling process
        self.workers = workers
        #: a fingerprint of the weights files (set by :func:`multiembed.load`), part of the identity
        self.weights: str | None = None

    # ---- construction ---------------------------------------------------------------------
    @classmethod
    @abstractmethod
    def from_pretrained(cls, model: ResolvedModel, policy: DevicePolicy) -> Encoder:
        """Build the encoder from resolved weights.

        A modality adds its own settings as keyword-only parameters with defaults (that is what
        ``load()`` accepts and checks options against), so each override stays a valid subtype.
        """

    # ---- identity -------------------------------------------------------------------------
    @property
    def outputs(self) -> tuple[OutputSpec, ...]:
        """What this encoder emits per item; one dense vector unless a modality says otherwise."""
        return (OutputSpec("dense", "dense", self._dim, self.metric),)

    @property
    def dim(self) -> int:
        """Length of the primary output (the only one for dense encoders)."""
        return self.outputs[0].dim

    @property
    def device(self) -> torch.device:
        return self.policy.device

    def identity_options(self) -> dict[str, Any]:
        """The ``load()`` keyword options that change the vectors; passing them back rebuilds this encoder."""
        return {"normalize": self.normalize_embeddings}

    def details(self) -> dict[str, Any]:
        """Settings that follow from the weights (pooling, transforms, rates): recorded and compared."""
        return {"pooling": self.pooling}

    def config(self) -> dict[str, Any]:
        """Everything that changes the vectors, JSON-able: saved with collections and files."""
        return _json_safe(
            {
                "modality": self.modality,
                "model": self.model_id,
                "weights": self.weights,
                "dtype": self.policy.precision_name,
                "backend": self.policy.backend,
                "outputs": [spec.describe() for spec in self.outputs],
                "options": self.identity_options(),
                "details": self.details(),
            }
        )

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
        """Turn decoded items into one model batch (tensors, or a dict of them) on the CPU.

        Plain Python values in the batch (counts, lists) stay on the CPU; only tensors are moved.
        """

    @abstractmethod
    def forward(self, batch: Any, role: Role) -> ModelOutput:
        """Run the model on a batch already on the device."""

    def pool(self, output: ModelOutput, batch: Any, role: Role) -> torch.Tensor | dict[str, Any]:
        """Per item: one tensor (the primary dense output), or ``{output name: value}`` for several.

        By default the class's ``pooling`` over the real positions.
        """
        return get_pooler(self.pooling)(output.hidden, output.mask)

    def normalize(self, vectors: torch.Tensor) -> torch.Tensor:
        """L2-normalise dense outputs (the default) so cosine, inner product and Milvus COSINE agree."""
        return l2_normalize(vectors) if self.normalize_embeddings else vectors

    def size_of(self, raw: Any) -> int:
        """Cost estimate used to group similar items into batches; 0 keeps the input order.

        With a ``size_budget_per_item`` it is in the budget's unit and never below the item's padded size.
        """
        return 0

    def size_budget(self, batch_size: int) -> int | None:
        """The most padded ``size_of`` units one batch may hold; None for batches of ``batch_size`` items."""
        per_item = self.size_budget_per_item
        return None if per_item is None else batch_size * per_item

    # ---- the shared pipeline ------------------------------------------------------------------
    def _embed(self, raws: list[Any], role: Role) -> list[ItemVectors]:
        batch = self.policy.move(self.preprocess(raws, role))
        if self.batch_observer is not None:
            self.batch_observer(batch)
        with self.policy.inference():
            output = self.forward(batch, role) if self.fast is None else self.fast(batch)
            pooled = self.pool(output, batch, role)
            values = pooled if isinstance(pooled, dict) else {self.outputs[0].name: pooled}
            columns: dict[str, list[Any]] = {}
            for spec in self.outputs:
                if spec.name not in values:
                    raise BackendError(f"{type(self).__name__}.pool gave no {spec.name!r} output")
                value = values[spec.name]
                if spec.kind == "dense" and isinstance(value, torch.Tensor):
                    value = self.normalize(value.float())
                columns[spec.name] = split_rows(spec, value, len(raws))
        return [{name: rows[index] for name, rows in columns.items()} for index in range(len(raws))]

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
        watch: FailureWatch,
        identity: dict[str, Any],
        skip_keys: KeyFilter | None = None,
        keep_raw: bool = False,
    ) -> Embeddings:
        entries = [_Entry(pos, item, loaded) for pos, item, loaded in window if isinstance(loaded, Loaded)]
        errors = [
            ItemError(pos, item.source, loaded) for pos, item, loaded in window if isinstance(loaded, str)
        ]
        entries, skipped = self._drop_known(entries, skip_keys)
        bar.update(len(errors) + len(skipped))
        sizes = [self.size_of(entry.loaded.raw) for entry in entries]
        results: dict[int, ItemVectors] = {}
        keyed: dict[int, _Entry] = {}
        for indices in budget_batches(sizes, batch_size, self.size_budget(batch_size)):
            batch = [entries[index] for index in indices]
            raws = [entry.loaded.raw for entry in batch]
            isolated = embed_isolated(
                lambda part: self._embed(part, role), raws, self.device, watch, _non_finite
            )
            for entry, result in zip(batch, isolated, strict=True):
                if isinstance(result, str):
                    errors.append(ItemError(entry.position, entry.item.source, result))
                else:
                    results[entry.position] = result
                    keyed[entry.position] = entry
            bar.update(len(batch))
        positions = sorted(results)
        return Embeddings(
            outputs={
                spec.name: stack_rows(spec, [results[p][spec.name] for p in positions])
                for spec in self.outputs
            },
            specs=self.outputs,
            ids=[keyed[p].loaded.key for p in positions],
            sources=[keyed[p].item.source for p in positions],
            indices=positions,
            errors=sorted(errors, key=lambda error: error.index),
            skipped=skipped,
            raws=[keyed[p].loaded.raw for p in positions] if keep_raw else [],
            **identity,
        )

    def _identity(self) -> dict[str, Any]:
        return {"modality": self.modality, "model": self.model_id, "config": self.config()}

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
        total: int | None = None,
        stop_on_systemic: bool = True,
    ) -> Iterator[Embeddings]:
        """Encode a stream window by window, so memory stays flat however many items come.

        ``skip_keys`` lets a store leave out items it already holds before the model runs; the
        next window is read only after the caller has handled (e.g. stored) the previous one.
        ``total`` sizes the progress bar when ``inputs`` has no length but the count is known.
        ``stop_on_systemic=False`` reports items failing alike one by one instead of raising
        :class:`~multiembed.failures.SystemicFailure` (for a caller that has checked the model works).
        """
        if role not in ("document", "query"):
            raise ConfigError(f"role must be 'document' or 'query', not {role!r}")
        batch_size = batch_size or self.batch_size
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        if total is None and isinstance(inputs, Sized):
            total = len(inputs)
        window = batch_size * self.sort_window_batches
        watch = FailureWatch(stop=stop_on_systemic)
        identity = self._identity()  # config() once per run, not once per window
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
                yield self._encode_window(chunk, role, batch_size, bar, watch, identity, skip_keys, keep_raw)

    def encode(
        self,
        inputs: Iterable[Any],
        *,
        role: Role = "document",
        batch_size: int | None = None,
        progress: bool | None = None,
        stop_on_systemic: bool = True,
    ) -> Embeddings:
        """Embed everything; failures are collected in ``errors`` instead of raised.

        ``progress=None`` shows a bar on stderr only when it is a terminal.
        """
        parts = list(
            self.iter_encode(
                inputs,
                role=role,
                batch_size=batch_size,
                progress=progress,
                stop_on_systemic=stop_on_systemic,
            )
        )
        return Embeddings.concat(parts, specs=self.outputs, **self._identity())
