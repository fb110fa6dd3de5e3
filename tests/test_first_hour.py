"""What a new user met in their first hour: search output, moved models, wrong query kinds, CLI
wording, collection management, output permissions and progress totals."""

from __future__ import annotations

import json
import os
import shutil
import stat
import time

import pytest

import multiembed
from multiembed.cli import main
from multiembed.sources import count_items
from tests.image_files import photo

DOCS = ["a red bicycle leans against a brick wall", "milvus is a vector database", "the quick brown fox"]


@pytest.fixture
def text_collection(tiny_models, tmp_path):
    """A text collection indexed from a lines file, with the model in a folder we can move."""
    model = shutil.copytree(tiny_models["mean"], tmp_path / "model")
    notes = tmp_path / "notes.txt"
    notes.write_text("\n".join(DOCS) + "\n")
    uri = str(tmp_path / "m.db")
    assert (
        main(["index", str(notes), "-m", "text", "--model", str(model), "--uri", uri, "-c", "notes", "-q"])
        == 0
    )
    return uri, model, notes


def test_search_shows_the_text_found_in_the_table_and_json(text_collection, capsys):
    uri, _, notes = text_collection
    capsys.readouterr()
    assert main(["search", "milvus is a vector database", "-c", "notes", "--uri", uri, "--limit", "1"]) == 0
    header, hit = capsys.readouterr().out.splitlines()
    assert header.split() == ["#", "cosine", "source"]
    assert hit.split()[2] == f"{notes}:2" and hit.endswith("milvus is a vector database")
    assert main(["search", "a red bicycle", "-c", "notes", "--uri", uri, "--limit", "1", "--json"]) == 0
    (found,) = json.loads(capsys.readouterr().out)
    assert found["fields"]["text"] == DOCS[0] and found["score_kind"] == "cosine"


def test_a_moved_model_folder_is_accepted_when_the_weights_match(
    text_collection, tiny_models, tmp_path, capsys
):
    uri, model, notes = text_collection
    moved = model.rename(tmp_path / "moved-model")
    capsys.readouterr()
    assert main(["search", "fox", "-c", "notes", "--uri", uri]) == 2  # the recorded path is gone
    assert "if its folder moved, pass the new place with --model" in capsys.readouterr().err
    assert main(["search", "fox", "-c", "notes", "--uri", uri, "--model", str(moved), "--limit", "1"]) == 0
    assert capsys.readouterr().out.splitlines()[1].endswith("the quick brown fox")
    assert main(["index", str(notes), "-c", "notes", "--uri", uri, "--model", str(moved), "-q"]) == 0
    assert "added 0, skipped 3 already stored" in capsys.readouterr().err
    other = str(tiny_models["cls-prompt"])
    assert main(["search", "fox", "-c", "notes", "--uri", uri, "--model", other]) == 2
    assert "weights: collection has" in capsys.readouterr().err


def test_a_text_query_on_an_image_collection_says_which_models_take_text(image_models, tmp_path, capsys):
    uri = str(tmp_path / "img.db")
    photos = tmp_path / "photos"
    photos.mkdir()
    photo(3).save(photos / "a.jpg")
    hf = str(image_models["hf"])
    assert (
        main(["index", str(photos), "-m", "image", "--model", hf, "--uri", uri, "-q", "--workers", "0"]) == 0
    )
    capsys.readouterr()
    assert main(["search", "a red bicycle", "-c", "image", "--uri", uri]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err
    assert (
        "whose model takes no text queries" in err and "image-text (CLIP), video with the clip model" in err
    )
    assert main(["search", "--file", str(photos / "a.jpg"), "-c", "image", "--uri", uri, "--limit", "1"]) == 0


def test_a_missing_collection_is_explained_in_flags(text_collection, capsys):
    uri, _, _ = text_collection
    capsys.readouterr()
    assert main(["search", "fox", "-c", "photos", "--uri", uri]) == 2
    err = capsys.readouterr().err
    assert "no collection 'photos'" in err and "(collections there: notes)" in err
    assert (
        "multiembed index INPUT --modality MODALITY --collection photos" in err
        and "=" not in err.split(";")[1]
    )
    for command in (["collections", "show", "photos"], ["index", "-", "-c", "photos"]):  # every command
        assert main([*command, "--uri", uri]) == 2
        assert capsys.readouterr().err == err  # the same flags-only hint, not the Python API's words


def test_hybrid_scores_are_labelled_as_fusion_scores(tiny_models, tmp_path, capsys):
    notes = tmp_path / "notes.txt"
    notes.write_text("\n".join(DOCS) + "\n")
    uri = str(tmp_path / "h.db")
    argv = [
        "index",
        str(notes),
        "-m",
        "text",
        "--model",
        str(tiny_models["mean"]),
        "--uri",
        uri,
        "--hybrid",
        "-q",
    ]
    assert main(argv) == 0
    capsys.readouterr()
    assert main(["search", "bicycle", "-c", "text", "--uri", uri, "--hybrid", "--limit", "2"]) == 0
    assert capsys.readouterr().out.splitlines()[0].split() == ["#", "rrf", "source"]


def test_collections_show_and_drop(text_collection, capsys):
    uri, model, _ = text_collection
    capsys.readouterr()
    assert main(["collections", "list", "--uri", uri]) == 0
    assert f"{model}  dense 32-d COSINE" in capsys.readouterr().out  # the output's name, once
    assert main(["collections", "show", "notes", "--uri", uri]) == 0
    out = capsys.readouterr().out
    assert f"collection notes in {uri}: 3 rows" in out and f"model     {model}" in out
    assert "field     vector" in out and "dim=32" in out and "index     vector" in out and "COSINE" in out
    assert "option    max_seq_length = 64" in out
    assert main(["collections", "drop", "notes", "--uri", uri]) == 2
    assert "add --yes to confirm" in capsys.readouterr().err
    assert main(["collections", "drop", "notes", "--uri", uri, "--yes"]) == 0
    assert "dropped collection 'notes' (3 rows)" in capsys.readouterr().err
    assert main(["collections", "show", "notes", "--uri", uri]) == 2
    assert "no collection 'notes'" in capsys.readouterr().err


def test_output_files_get_the_permissions_of_a_normal_file(tiny_models, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("hello\n")
    previous = os.umask(0o022)
    try:
        for name in ("o.parquet", "o.npy", "o.jsonl"):
            out = tmp_path / name
            argv = ["encode", "-m", "text", str(notes), "--model", str(tiny_models["mean"]), "-o", str(out)]
            assert main([*argv, "-q"]) == 0
            assert stat.S_IMODE(out.stat().st_mode) == 0o644, name
    finally:
        os.umask(previous)


def test_the_progress_bar_knows_the_total_for_files_and_folders(tiny_models, tmp_path, capsys):
    folder = tmp_path / "docs"
    folder.mkdir()
    for index, text in enumerate(DOCS):
        (folder / f"{index}.txt").write_text(text)
    (tmp_path / "lines.txt").write_text("one\n\ntwo\n")
    assert count_items("text", [str(folder), str(tmp_path / "lines.txt")]) == 5
    assert count_items("text", ["-"]) is None
    encoder = multiembed.load("text", str(tiny_models["mean"]), device="cpu")

    def slowly():  # no len(): the total comes from the caller; slow enough for the bar to show
        for text in DOCS:
            time.sleep(0.3)
            yield text

    list(encoder.iter_encode(slowly(), progress=True, total=3, batch_size=1))
    assert "3/3" in capsys.readouterr().err


def test_indexing_nothing_leaves_no_empty_collection(tiny_models, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    uri = str(tmp_path / "e.db")
    argv = ["index", str(empty), "-m", "text", "--model", str(tiny_models["mean"]), "--uri", uri, "-q"]
    assert main(argv) == 2
    assert "nothing to embed" in capsys.readouterr().err
    assert main(["collections", "--uri", uri]) == 0
    assert "no collections" in capsys.readouterr().err


def test_a_missing_model_leaves_no_empty_database(tmp_path, capsys):
    (tmp_path / "a.txt").write_text("one line\n")
    uri = tmp_path / "new.db"
    argv = ["index", str(tmp_path / "a.txt"), "-m", "text", "--model", str(tmp_path / "no-model"), "--uri"]
    assert main([*argv, str(uri)]) == 2
    assert "no such file or directory" in capsys.readouterr().err
    assert not uri.exists()
