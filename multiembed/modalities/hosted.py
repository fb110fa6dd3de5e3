"""Hosted modality: text embeddings from a provider's API, with the same contract as local models.

``multiembed.load("hosted", "openai:text-embedding-3-small")``, ``--modality hosted --model
voyage:voyage-3``, ``MilvusStore(..., modality="hosted", model="tei", base_url=...)``. The model is
``provider:model`` (``provider`` alone means its default model). The provider's address, dims and
request options are the saved identity, so a collection reopens against the same API; the key is
read again from the environment (or ``api_key=``) and never recorded. A request the provider
refuses for one item (HTTP 400/413/422) fails that item only; a refused key, quota or unknown
model stops the run with the provider's message.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from multiembed.device import DevicePolicy
from multiembed.encoder import Encoder, ModelOutput, Role
from multiembed.errors import ConfigError
from multiembed.hosted.http import RequestRejected
from multiembed.hosted.provider import Provider, get_provider, providers
from multiembed.models import ResolvedModel
from multiembed.outputs import OutputSpec
from multiembed.registry import ModalitySpec, ModelInfo, register
from multiembed.sources import Loaded
from multiembed.texts import DEFAULT_TEXT_MAX_BYTES, TextLoader

if TYPE_CHECKING:
    import torch
else:
    from multiembed.lazy import torch

#: statuses that mean "this input", not "this account": the item is reported, the run goes on
ITEM_STATUSES = frozenset({400, 413, 422})


class ItemRejected(Exception):
    """The provider refused a batch because of its content; the base class then isolates the item."""


def resolve_hosted(name: str) -> ResolvedModel:
    """``provider:model`` -> a model id to record; nothing to download or fingerprint."""
    provider_name, _, model = name.partition(":")
    provider = get_provider(provider_name)
    return ResolvedModel(f"{provider.name}:{model or provider.default_model}", "")


class HostedEncoder(Encoder):
    """Dense vectors from a hosted API; batching and retries follow the provider's limits."""

    modality = "hosted"
    accepts_text_queries = True
    documents_are_text = True

    def __init__(
        self,
        provider: Provider,
        *,
        model_id: str,
        policy: DevicePolicy,
        normalize: bool,
        batch_size: int,
        max_bytes: int | None,
    ) -> None:
        self.provider = provider
        super().__init__(model_id=model_id, dim=0, policy=policy, normalize=normalize, batch_size=batch_size)
        self._loader = TextLoader(max_bytes)

    @classmethod
    def from_pretrained(
        cls,
        model: ResolvedModel,
        policy: DevicePolicy,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        dimensions: int | None = None,
        timeout: float = 60.0,
        max_retries: int = 5,
        request_options: Mapping[str, Any] | None = None,
        normalize: bool = False,
        batch_size: int | None = None,
        max_bytes: int | None = DEFAULT_TEXT_MAX_BYTES,
    ) -> HostedEncoder:
        """``normalize`` is off by default: the provider's vectors come back as it sent them."""
        provider_name, _, model_name = model.model_id.partition(":")
        provider = get_provider(provider_name)(
            model_name,
            api_key=api_key,
            base_url=base_url,
            dimensions=dimensions,
            timeout=timeout,
            max_retries=max_retries,
            options=request_options,
        )
        if batch_size is not None and (not isinstance(batch_size, int) or batch_size > provider.max_batch):
            raise ConfigError(
                f"batch_size must be a whole number <= {provider.max_batch} ({provider.title}'s limit per "
                f"request), got {batch_size!r}"
            )
        return cls(
            provider,
            model_id=model.model_id,
            policy=policy,
            normalize=normalize,
            batch_size=batch_size or min(provider.max_batch, 128),
            max_bytes=max_bytes,
        )

    @property
    def outputs(self) -> tuple[OutputSpec, ...]:
        return (OutputSpec("dense", "dense", self.provider.dim, self.metric),)

    def identity_options(self) -> dict[str, Any]:
        described = self.provider.describe()
        return {
            **super().identity_options(),
            "base_url": described.pop("base_url"),
            "dimensions": described.pop("dimensions"),
            "request_options": {k: v for k, v in described.items() if k != "provider"} or None,
        }

    def details(self) -> dict[str, Any]:
        return {"provider": self.provider.name, "input_types": dict(self.provider.input_types)}

    # ---- stages -----------------------------------------------------------------------------
    def loader(self, role: Role) -> Callable[[Any], Loaded]:
        return self._loader

    def size_of(self, raw: str) -> int:
        return len(raw)

    def preprocess(self, raws: list[str], role: Role) -> list[str]:
        return list(raws)

    def forward(self, batch: list[str], role: Role) -> ModelOutput:
        try:
            vectors = self.provider.embed(batch, role)
        except RequestRejected as error:
            if error.status in ITEM_STATUSES:
                raise ItemRejected(str(error)) from None
            raise
        return ModelOutput(hidden=torch.from_numpy(np.stack(vectors)))

    def pool(self, output: ModelOutput, batch: Any, role: Role) -> torch.Tensor:
        return output.hidden


def _provider_models() -> tuple[ModelInfo, ...]:
    """One line per provider in ``multiembed modalities``: its default model and where its key comes from."""
    listed = []
    for name, provider in sorted(providers().items()):
        key = f"key: {' or '.join(provider.key_env)}" if provider.key_required else "no key needed"
        listed.append(
            ModelInfo(
                alias=name,
                hub_id=f"{name}:{provider.default_model or 'default'}",
                dim=provider.dims.get(provider.default_model, 0),
                description=f"{provider.title} ({provider.base_url}); {key}",
                source="api",
            )
        )
    return tuple(listed)


SPEC = register(
    ModalitySpec(
        name="hosted",
        description="text through a hosted embedding API (--model provider:model; keys from the environment)",
        default_model="openai:text-embedding-3-small",
        models=_provider_models(),
        extensions=frozenset({".txt", ".md"}),
        encoder_class=HostedEncoder,
        file_items="lines",
        local_folder="no folder: name a provider and model, e.g. openai:text-embedding-3-small",
        resolve=resolve_hosted,
    )
)

__all__ = ["SPEC", "HostedEncoder", "ItemRejected", "providers"]
