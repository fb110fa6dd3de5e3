"""Cross-modal photo search: index a folder of photos with CLIP, then search them with words.

    python examples/photo_search.py PHOTOS_DIR "a red bicycle" [--model DIR] [--uri photos.db]

--model is a CLIP directory (e.g. openai/clip-vit-base-patch32 saved with save_pretrained, or the
hub id when a hub is reachable). Re-running adds only new photos: the collection keys each photo
by the sha256 of its bytes.
"""

from __future__ import annotations

import argparse
import sys

from multiembed import MilvusStore, MultiembedError
from multiembed.cli.common import quiet_libraries
from multiembed.sources import expand


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("photos", help="folder of images (searched recursively)")
    parser.add_argument("query", help="what to look for, in words")
    parser.add_argument("--model", default="clip", help="CLIP alias, hub id or local directory")
    parser.add_argument("--uri", default="photos.db", help="Milvus Lite file or server URL")
    parser.add_argument("--limit", type=int, default=5)
    args = parser.parse_args()

    quiet_libraries()  # no weight-loading bars or library warnings over our output
    try:
        with MilvusStore(args.uri, "photos", modality="image-text", model=args.model) as store:
            report = store.add(expand("image-text", args.photos))
            print(f"indexed: {report.added} new, {report.skipped} already stored, {report.failed} failed")
            for error in report.errors:
                print(f"  skipped {error.source}: {error.reason}")
            for rank, hit in enumerate(store.search(args.query, limit=args.limit), start=1):
                print(f"{rank}. {hit.score:.3f}  {hit.source}")
    except MultiembedError as failure:  # a missing model, an unreadable folder, a Milvus refusal
        print(f"{parser.prog}: error: {' '.join(str(failure).split())}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
