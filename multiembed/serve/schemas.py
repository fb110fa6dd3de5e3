"""The JSON bodies of the API, as pydantic models: they validate requests and document /docs.

Request models ignore fields they do not know, as OpenAI's API does (its client sends ``user`` and
may send more). Responses are built as plain dicts for speed; these models only describe them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class EmbeddingRequest(BaseModel):
    """OpenAI's embeddings request, plus ``modality`` and ``role``."""

    model_config = ConfigDict(extra="ignore")

    model: str = Field(description="a served model's name, alias or hub id (see GET /v1/models)")
    input: str | list[str] | list[int] | list[list[int]] = Field(
        description="a text or a list of them; for image/audio/video, base64 of the file or a data: URL"
    )
    encoding_format: Literal["float", "base64"] = Field(
        "float", description="base64: each vector as base64 of its little-endian float32 bytes"
    )
    modality: str | None = Field(
        None, description="what the inputs are (text, image, audio, video); default: the model's own"
    )
    dimensions: int | None = Field(None, description="accepted only when equal to the model's dimension")
    role: Literal["document", "query"] | None = Field(
        None, description="text models: query applies the model's query prompt (default: document)"
    )
    user: str | None = None


class EmbeddingItem(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class Usage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[EmbeddingItem]
    model: str
    usage: Usage


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "multiembed"
    modality: str
    dimension: int | None
    status: str


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class Health(BaseModel):
    status: str
    models: dict[str, str]


class CollectionCard(BaseModel):
    name: str
    modality: str | None
    model: str | None
    count: int
    dimension: int | None
    media: str | None
    hybrid: bool = False
    damage: str | None = None


class CollectionList(BaseModel):
    collections: list[CollectionCard]


class SearchRequest(BaseModel):
    """Exactly one of ``text``, ``vector``, ``id`` and ``file``."""

    model_config = ConfigDict(extra="forbid")

    text: str | None = None
    vector: list[float] | None = None
    id: str | None = Field(None, description="an item already in the collection: find ones like it")
    file: str | None = Field(None, description="base64 of a file (or a data: URL) to search by example")
    filter: str | None = Field(None, description='a Milvus boolean expression, e.g. source like "%.png"')
    limit: int = Field(10, ge=1, le=1000)
    hybrid: bool = False


class SearchHit(BaseModel):
    id: str
    score: float
    score_kind: str
    source: str
    kind: str
    text: str | None
    media_url: str | None
    poster_url: str | None
    fields: dict[str, Any]


class SearchResponse(BaseModel):
    hits: list[SearchHit]


class AddRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: list[str] = Field(description="texts, or base64 / data: URLs of files")
    ids: list[str] | None = Field(
        None, description="a name per item, recorded as its source (upload:NAME); ids stay content hashes"
    )


class AddFailure(BaseModel):
    item: int
    reason: str


class AddResponse(BaseModel):
    added: int
    skipped: int
    ids: list[str]
    failed: list[AddFailure]
