"""Scale out with Ray: embed a Ray Dataset with actors that load the model once, write it into Milvus.

>>> import ray, multiembed.ray
>>> photos = ray.data.read_binary_files("/shared/photos", include_paths=True)
>>> vectors = multiembed.ray.embed_dataset(photos, "image", concurrency=4, num_gpus=1)
>>> sink = multiembed.ray.MilvusSink("http://milvus:19530", "photos", modality="image")
>>> vectors.write_datasink(sink, concurrency=sink.write_concurrency)

Needs the ``ray`` extra (``pip install 'multiembed[ray]'``).
"""

from __future__ import annotations

from multiembed.extras import require

require("ray", "ray")

from multiembed.ray.embed import embed_dataset  # noqa: E402
from multiembed.ray.sink import MilvusSink, WriteCounts  # noqa: E402
from multiembed.ray.tables import ERROR_COLUMN, TEXT_COLUMN  # noqa: E402

__all__ = ["ERROR_COLUMN", "TEXT_COLUMN", "MilvusSink", "WriteCounts", "embed_dataset"]
