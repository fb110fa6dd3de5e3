"""The examples run as written, offline, with a local model directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.image_files import bad_images, good_images

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_example(name: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, str(EXAMPLES / name), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300, check=False)  # fmt: skip


def test_photo_search(image_models, tmp_path):
    photos = tmp_path / "photos"
    good = good_images(photos)
    bad_images(photos)
    done = run_example("photo_search.py", str(photos), "a red bicycle", "--model", str(image_models["clip"]),
                       "--uri", str(tmp_path / "p.db"), "--limit", "3", cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"indexed: {len(good)} new, 0 already stored, 6 failed" in done.stdout
    assert done.stdout.count(". ") >= 3 and "1. " in done.stdout
    again = run_example("photo_search.py", str(photos), "a brick wall", "--model", str(image_models["clip"]),
                        "--uri", str(tmp_path / "p.db"), cwd=tmp_path)  # fmt: skip
    assert f"indexed: 0 new, {len(good)} already stored" in again.stdout
