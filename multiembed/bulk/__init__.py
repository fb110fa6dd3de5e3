"""Bulk import files: an encode run written as the parquet files Milvus' bulk import reads, and the import.

A run of millions of items goes faster into a Milvus server as files the server reads itself than as
upserts. :func:`export_bulk` (:mod:`.export`) writes what pymilvus' ``LocalBulkWriter`` writes for
the collection's schema (:func:`multiembed.milvus.schema.schema_for`): ``DIR/<uuid>/1.parquet``,
``2.parquet``, ..., each holding up to ``chunk_bytes`` of rows (128 MB) by the writer's own size
estimate, in row groups of about 32 MB (1,000 to 1,000,000 rows) (:mod:`.layout`). The columns are
the schema's fields in order: ``id``, the vector field(s) (dense as ``list<float32>``, sparse as
``{"dimension": weight}`` JSON text), ``source``, ``modality``, ``model``, ``text`` (text documents),
and the dynamic fields as JSON text in ``$meta``; a field Milvus' BM25 function fills is left to the
server. ``DIR/manifest.json`` lists the files and records the encoder identity, so
:func:`import_bulk` (:mod:`.importer`) can make the collection without loading the model.

Bulk import does not upsert: an id stored twice is two rows. An export holds each content key once,
and :func:`import_bulk` records in the collection which files it imported, so running it again
imports only the files that are not in yet.
"""

from __future__ import annotations

from multiembed.bulk.export import BulkReport, export_bulk
from multiembed.bulk.importer import Export, import_bulk
from multiembed.bulk.layout import CHUNK_BYTES, MANIFEST, MB, file_schema, iter_parquet_rows, row_group_rows

__all__ = [
    "CHUNK_BYTES",
    "MANIFEST",
    "MB",
    "BulkReport",
    "Export",
    "export_bulk",
    "file_schema",
    "import_bulk",
    "iter_parquet_rows",
    "row_group_rows",
]
