"""What a server is started with: the store, the models it holds, its limits and its key.

Plain data with no FastAPI in it, so the command line can check a bad ``--model`` before any web
library (or model) is imported.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

from multiembed.errors import ConfigError
from multiembed.milvus.client import DEFAULT_URI

#: the environment variable the key is read from when ``--api-key`` is not given
API_KEY_ENV = "MULTIEMBED_API_KEY"
DEFAULT_MAX_REQUEST_BYTES = 32 * 1024 * 1024
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class ModelSpec:
    """One ``--model [NAME=]MODALITY[:MODEL]``: the name requests use, and what ``load()`` gets."""

    name: str
    modality: str
    model: str | None = None

    @classmethod
    def parse(cls, text: str) -> ModelSpec:
        """Read ``[NAME=]MODALITY[:MODEL]``; the name defaults to MODEL, else to the modality.

        A ``=`` counts as the name's end only before the first ``:``, so paths holding ``=`` still work.
        """
        text = text.strip()
        name: str | None = None
        before, equals, after = text.partition("=")
        if equals and ":" not in before and _NAME.match(before):
            name, text = before, after
        modality, colon, model = text.partition(":")
        modality, model = modality.strip(), model.strip()
        if not modality or (colon and not model):
            raise ConfigError(f"--model needs [NAME=]MODALITY[:MODEL], got {text!r}")
        return cls(name or model or modality, modality, model or None)


@dataclass
class ServeSettings:
    """Everything ``create_app`` needs; the CLI fills it from its flags."""

    uri: str = DEFAULT_URI
    #: ``[NAME=]MODALITY[:MODEL]`` specs of the models served for /v1/embeddings
    models: list[str] = field(default_factory=lambda: ["text"])
    #: when set, every route needs ``Authorization: Bearer <api_key>``
    api_key: str | None = None
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    #: the most items one merged forward pass takes (a single larger request still runs, alone)
    max_batch: int = 64
    #: how long the first request of a batch waits for others to join it
    max_wait_ms: float = 5.0
    #: False: every request runs alone (the baseline the benchmark compares with)
    batching: bool = True
    device: str = "auto"
    #: the most inputs one /v1/embeddings request may carry (OpenAI's own limit)
    max_inputs: int = 2048
    #: whether the default text model may be skipped when it cannot be found (only when no
    #: --model was given: an explicit one that cannot be found is an error)
    default_models: bool = False
    #: the folder relative recorded sources (``multiembed index photos`` records ``photos/a.jpg``)
    #: are found under: by default the one the server is started in, which is right when it is
    #: started where the collections were indexed. Absolute sources are used as they are.
    media_root: str = field(default_factory=os.getcwd)
    #: the most items waiting for one model; more get 503 + Retry-After instead of piling up
    max_queue: int = 1024
    #: the most connections uvicorn serves at once; more get 503 (bounds memory under a flood)
    limit_concurrency: int = 256
    #: the longest uploaded audio clip embedded (by its header), in seconds; None: no limit
    max_audio_seconds: float | None = 3600.0

    def __post_init__(self) -> None:
        self.media_root = os.path.abspath(self.media_root)  # fixed now, whatever the cwd becomes

    def model_specs(self) -> list[ModelSpec]:
        specs = [ModelSpec.parse(text) for text in self.models]
        names = [spec.name for spec in specs]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ConfigError(
                f"two --model options are named {', '.join(repeated)}; give each its own NAME= prefix"
            )
        return specs

    def check(self) -> None:
        """Refuse limits that would make the server useless or unbounded, before it starts."""
        if self.max_request_bytes < 1024:
            raise ConfigError(f"the request size limit must be at least 1 KiB, got {self.max_request_bytes}")
        if self.max_batch < 1:
            raise ConfigError(f"max_batch must be >= 1, got {self.max_batch}")
        if not 0 <= self.max_wait_ms <= 1000:
            raise ConfigError(f"max_wait_ms must be between 0 and 1000, got {self.max_wait_ms}")
        if self.max_inputs < 1:
            raise ConfigError(f"max_inputs must be >= 1, got {self.max_inputs}")
        if self.max_queue < 1:
            raise ConfigError(f"max_queue must be >= 1, got {self.max_queue}")
        if self.limit_concurrency < 1:
            raise ConfigError(f"limit_concurrency must be >= 1, got {self.limit_concurrency}")
        if not os.path.isdir(self.media_root):
            raise ConfigError(f"the media root {self.media_root} is not a folder")
        if self.api_key is not None and not self.api_key.strip():
            raise ConfigError("the API key is empty")
        self.model_specs()
