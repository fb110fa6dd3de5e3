"""A searchable video collection: index clips with CLIP frame pooling, search them with words.

    python examples/video_collection.py VIDEOS_DIR "a person riding a bicycle" [--model DIR]

--model is a CLIP directory (frame pooling, which shares CLIP's text space, so words find clips)
or a multimodal Perceiver directory (then search by example with --like VIDEO instead of words).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from multiembed import MilvusStore, MultiembedError
from multiembed.cli.common import quiet_libraries
from multiembed.sources import expand


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("videos", help="folder of videos (mp4, mkv, webm, mov, avi; recursive)")
    parser.add_argument("query", nargs="?", help="what to look for, in words (CLIP models)")
    parser.add_argument("--like", help="a video to find similar ones for (any video model)")
    parser.add_argument("--model", default="clip", help="CLIP or Perceiver alias, hub id or directory")
    parser.add_argument("--uri", default="videos.db", help="Milvus Lite file or server URL")
    parser.add_argument("--limit", type=int, default=5)
    args = parser.parse_args()
    if (args.query is None) == (args.like is None):
        parser.error("give a query in words or --like VIDEO")

    quiet_libraries()  # no weight-loading bars or library warnings over our output
    try:
        with MilvusStore(args.uri, "videos", modality="video", model=args.model) as store:
            report = store.add(expand("video", args.videos))
            print(f"indexed: {report.added} new, {report.skipped} already stored, {report.failed} failed")
            for error in report.errors:
                print(f"  skipped {error.source}: {error.reason}")
            query = Path(args.like) if args.like else args.query
            for rank, hit in enumerate(store.search(query, limit=args.limit), start=1):
                print(f"{rank}. {hit.score:.3f}  {hit.source}")
    except MultiembedError as failure:  # a missing model, an unreadable folder, a Milvus refusal
        print(f"{parser.prog}: error: {' '.join(str(failure).split())}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
