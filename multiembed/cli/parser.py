"""The argument parser of the ``multiembed`` command: every subcommand, flag and help text."""

from __future__ import annotations

import argparse

from multiembed.cli.serve import add_serve_command
from multiembed.formats import FORMATS
from multiembed.milvus.client import DEFAULT_URI


def _add_model_options(parser: argparse.ArgumentParser, modality_required: bool = True) -> None:
    parser.add_argument(
        "-m",
        "--modality",
        required=modality_required,
        help="what the inputs are: see `multiembed modalities`",
    )
    parser.add_argument(
        "--model",
        help="model alias, hub id or local directory (default: the modality's default model)",
    )
    parser.add_argument(
        "--device",
        default="auto",
        help="auto (cuda > mps > cpu), cpu, cuda, cuda:N or mps (default: auto)",
    )
    parser.add_argument(
        "--dtype",
        choices=["float32", "bfloat16", "float16", "int8"],
        default=None,
        help="float32 is exact (default); bfloat16/float16 on GPUs (bfloat16 on CPUs with AVX512-BF16/AMX "
        "only); int8 with --backend openvino",
    )
    parser.add_argument(
        "--backend",
        choices=["torch", "openvino", "auto"],
        default=None,
        help="torch (exact, default); openvino runs the model on the CPU, exported once and cached "
        "(fast with --dtype int8 or bfloat16); auto picks the fastest mode that passes the quality gate "
        "on this machine",
    )
    parser.add_argument("--batch-size", type=int, default=None,
                        help="items per forward pass (default: the modality's own)")  # fmt: skip
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="processes that decode files ahead of the model (0 = none; default depends on the device)",
    )
    parser.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="allow models that run code from their own repository (off by default)",
    )
    parser.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a modality's own load() option, repeatable (e.g. --option base_url=http://127.0.0.1:8080 "
        "--option dimensions=256); VALUE is read as JSON when it parses, else as text",
    )


def _add_store_options(
    parser: argparse.ArgumentParser, *, collection_required: bool = False, with_collection: bool = True
) -> None:
    parser.add_argument("--uri", default=DEFAULT_URI,
                        help=f"Milvus Lite file or server URL (default: {DEFAULT_URI})")  # fmt: skip
    if with_collection:
        parser.add_argument(
            "-c",
            "--collection",
            required=collection_required,
            help="collection name" + ("" if collection_required else " (default: the modality's name)"),
        )


def _add_engine_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--engine",
        choices=["local", "ray"],
        default="local",
        help="local: this process (default); ray: a Ray Data job, each actor loading the model once "
        "(needs the ray extra)",
    )
    parser.add_argument(
        "--ray-address",
        metavar="ADDRESS",
        help="the Ray cluster to run on (auto, or ray://host:10001); default: a local one with every "
        "core. Inputs must be at the same path on every node",
    )


def _add_index_param(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--index-param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an index build parameter, repeatable (e.g. --index-param nlist=1024); on a server, "
        "IVF and SCANN get nlist=128, HNSW M=30 efConstruction=360 unless given",
    )


def _add_bulk_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    export = commands.add_parser(
        "export-bulk",
        help="embed files into parquet files for a Milvus server's bulk import",
        description="Embed every input (each distinct item once) and write the files pymilvus' bulk "
        "writer would write for the collection: DIR/<uuid>/1.parquet, 2.parquet, ... of up to "
        "--chunk-mb each, and DIR/manifest.json with the encoder's identity. Import them with "
        "`multiembed import-bulk DIR --uri http://host:19530 -c NAME`.",
    )
    export.add_argument("inputs", nargs="+", metavar="INPUT", help="file, folder, or - for stdin")
    _add_model_options(export)
    export.add_argument("-o", "--output", required=True, metavar="DIR", help="a new (or empty) folder")
    export.add_argument(
        "--hybrid",
        action="store_true",
        help="text only: for a collection with Milvus' BM25 over the text (Milvus 2.5+)",
    )
    export.add_argument("--chunk-mb", type=int, default=128, help="size of each file, in MB (default: 128)")
    export.add_argument("-q", "--quiet", action="store_true", help="no progress bar")

    load = commands.add_parser(
        "import-bulk",
        help="import an export-bulk folder into a collection on a Milvus server",
        description="Have the Milvus server at --uri read the files of an export-bulk folder into the "
        "collection (made from the recorded identity if it does not exist). The server reads the "
        "files itself: by default at the folder's absolute path (a server on this machine with local "
        "storage); for MinIO/S3, upload the folder and pass its path in the bucket as --server-path. "
        "Files imported before are skipped.",
    )
    load.add_argument("folder", metavar="DIR", help="a folder written by `multiembed export-bulk`")
    load.add_argument("--uri", required=True, help="the Milvus server, e.g. http://127.0.0.1:19530")
    load.add_argument("-c", "--collection", required=True, help="collection name")
    load.add_argument(
        "--server-path", metavar="PATH", help="where the server sees DIR (default: its path here)"
    )
    load.add_argument("--index-type", default="AUTOINDEX", help="for a new collection (default: AUTOINDEX)")
    _add_index_param(load)
    load.add_argument("-v", "--verbose", action="store_true", help="show the Milvus libraries' own logs")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="multiembed",
        description="Turn text, images, audio, video and image-text pairs into embedding vectors "
        "with well-known open models, and store them in Milvus.",
        epilog="Examples:\n"
        "  multiembed modalities\n"
        "  multiembed encode --modality text notes.txt -o notes.parquet\n"
        "  multiembed encode --modality image ./photos -o photos.parquet\n"
        "  multiembed encode --modality image-text --text 'a red bicycle' -o query.npy\n"
        "  cat questions.txt | multiembed encode --modality text - -o q.jsonl\n"
        "  multiembed index ./photos --modality image-text --collection photos\n"
        "  multiembed search 'a red bicycle' --collection photos --limit 5\n\n"
        "Exit codes: 0 all items embedded, 1 some items failed (the rest are written), "
        "2 usage or configuration error.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    encode = commands.add_parser(
        "encode",
        help="embed files, folders or stdin and write the vectors to a file",
        description="Embed every input item and write one row per item (id = sha256 of the item, "
        "source, modality, model, vector). For text, a file or `-` (stdin) holds one text per "
        "line and a folder holds one text per .txt/.md file; for other modalities a folder is "
        "searched recursively for files of that modality. Items that fail are listed with the "
        "reason and skipped; the output is written atomically.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    encode.add_argument("inputs", nargs="*", metavar="INPUT", help="file, folder, or - for stdin")
    _add_model_options(encode)
    encode.add_argument(
        "--text",
        action="append",
        default=[],
        metavar="TEXT",
        help="embed this text as a query instead of INPUTs (repeatable); with image-text it lands "
        "in the image space, with text it gets the model's query instruction",
    )
    encode.add_argument("--texts", metavar="FILE", help="embed each line of FILE as a query (- for stdin)")

    encode.add_argument(
        "-o",
        "--output",
        default="embeddings.parquet",
        help="output file (default: embeddings.parquet)",
    )
    encode.add_argument(
        "--format",
        choices=FORMATS,
        default=None,
        help="output format (default: from the output's suffix)",
    )
    encode.add_argument(
        "--shard-size",
        type=int,
        metavar="N",
        help="write a folder (-o DIR) of shards of N inputs each, part-<first>-<last>.parquet, with a "
        "manifest: a re-run skips finished shards, so a killed run resumes where it stopped",
    )
    encode.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    _add_engine_options(encode)

    index = commands.add_parser(
        "index",
        help="embed files or folders into a Milvus collection (Milvus Lite file by default)",
        description="Embed every input and upsert it into a collection, keyed by the sha256 of its "
        "content: items already stored are skipped before the model runs, so re-running adds only "
        "new files and finishes an interrupted run. The collection records its modality and model; "
        "later runs and searches reuse them.",
    )
    index.add_argument("inputs", nargs="+", metavar="INPUT", help="file, folder, or - for stdin")
    _add_model_options(index, modality_required=False)
    _add_store_options(index)
    index.add_argument("--hybrid", action="store_true",
                       help="text only: also store the text with a BM25 index for hybrid search")  # fmt: skip
    index.add_argument("--index-type", default="AUTOINDEX",
                       help="AUTOINDEX, HNSW, IVF_FLAT, FLAT (servers also DISKANN, ...)")  # fmt: skip
    _add_index_param(index)
    index.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    index.add_argument("-v", "--verbose", action="store_true",
                       help="a line per stored batch, and the Milvus libraries' own logs")  # fmt: skip
    _add_engine_options(index)

    search = commands.add_parser(
        "search",
        help="search a collection with text, an example file, using its recorded model",
        description="Embed the query with the model the collection was built with and print the "
        "nearest items: rank, score (its kind in the header: cosine, ip or l2 for one field, rrf or "
        "weighted for hybrid fusion), source, and the text of text collections.",
    )
    search.add_argument("query", nargs="?", help="query text (text and image-text collections)")
    search.add_argument("--file", help="query by example: a file of the collection's modality")
    _add_store_options(search, collection_required=True)
    search.add_argument("--limit", type=int, default=5, help="number of hits (default: 5)")
    search.add_argument("--filter", help="Milvus boolean expression, e.g. 'source like \"%%.png\"'")
    search.add_argument("--hybrid", action="store_true",
                        help="fuse all the collection's vector fields and its BM25 field (RRF)")  # fmt: skip
    search.add_argument("--output", help="which of the encoder's outputs to search (default: the first)")
    search.add_argument("--json", action="store_true", help="print hits as JSON")
    search.add_argument("--device", default="auto", help="where the query is embedded (default: auto)")
    search.add_argument("--model", help="where the collection's model is now, if its folder moved "
                        "(must be the same weights)")  # fmt: skip
    search.add_argument("--trust-remote-code", action="store_true",
                        help="allow a model that runs its own code (as when indexed)")  # fmt: skip
    search.add_argument("-v", "--verbose", action="store_true", help="show the Milvus libraries' own logs")

    collections = commands.add_parser(
        "collections",
        help="list, show or drop collections",
        description="`collections` lists the collections at --uri with the encoder each was built "
        "with; `collections show NAME` prints its rows, model identity, fields and indexes; "
        "`collections drop NAME --yes` deletes it.",
    )
    collections.add_argument("action", nargs="?", choices=["list", "show", "drop"], default="list")
    collections.add_argument("name", nargs="?", help="the collection (show, drop)")
    collections.add_argument("--yes", action="store_true", help="confirm `drop`")
    _add_store_options(collections, with_collection=False)
    collections.add_argument("-v", "--verbose", action="store_true",
                             help="show the Milvus libraries' own logs")  # fmt: skip

    _add_bulk_commands(commands)
    add_serve_command(commands)

    commands.add_parser(
        "modalities",
        help="list modalities with their models, dimensions and defaults",
        description="List every modality with its models (alias, hub id, dimension) and default.",
    )
    return parser
