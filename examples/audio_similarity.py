"""Audio similarity: index a folder of sounds with the Whisper encoder, find the clips closest to one.

    python examples/audio_similarity.py CLIPS_DIR QUERY_CLIP [--model DIR] [--uri audio.db]

--model is a Whisper directory (e.g. openai/whisper-base saved with save_pretrained) or, with a hub,
an alias such as whisper-base. The query clip may be any audio file or the sound of a video.
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
    parser.add_argument("clips", help="folder of audio files (searched recursively)")
    parser.add_argument("query", help="an audio file to find similar clips for")
    parser.add_argument("--model", default="whisper-base", help="Whisper alias, hub id or local directory")
    parser.add_argument("--uri", default="audio.db", help="Milvus Lite file or server URL")
    parser.add_argument("--limit", type=int, default=5)
    args = parser.parse_args()

    quiet_libraries()  # no weight-loading bars or library warnings over our output
    try:
        with MilvusStore(args.uri, "sounds", modality="audio", model=args.model) as store:
            report = store.add(expand("audio", args.clips))
            print(f"indexed: {report.added} new, {report.skipped} already stored, {report.failed} failed")
            for error in report.errors:
                print(f"  skipped {error.source}: {error.reason}")
            for rank, hit in enumerate(store.search(Path(args.query), limit=args.limit), start=1):
                print(f"{rank}. {hit.score:.3f}  {hit.source}")
    except MultiembedError as failure:  # a missing model, an unreadable folder, a Milvus refusal
        print(f"{parser.prog}: error: {' '.join(str(failure).split())}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
