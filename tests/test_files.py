"""Writes are atomic: a failed write leaves the old file and no temporary behind."""
from __future__ import annotations

import errno
import json
import os

import pytest

from kerasprune import files
from kerasprune.errors import FileError


def test_write_json_replaces_the_file(tmp_path):
    path = tmp_path / "sub" / "r.json"
    files.write_json(path, {"a": 1})
    files.write_json(path, {"a": 2})
    assert json.loads(path.read_text()) == {"a": 2}
    assert [p.name for p in path.parent.iterdir()] == ["r.json"]


def test_a_failing_writer_leaves_the_old_file_untouched(tmp_path):
    path = tmp_path / "model.keras"
    path.write_text("old")
    with pytest.raises(RuntimeError):
        with files.atomic_path(path) as tmp:
            assert tmp.suffix == ".keras"  # writers pick the format from the suffix
            tmp.write_text("half")
            raise RuntimeError("killed mid-write")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["model.keras"]


def test_a_folder_artifact_replaces_the_old_folder(tmp_path):
    target = tmp_path / "saved_model"
    (target / "stale").mkdir(parents=True)
    with files.atomic_path(target, folder=True) as tmp:
        (tmp / "fresh").mkdir(parents=True)
    assert [p.name for p in target.iterdir()] == ["fresh"]


def test_a_folder_moved_aside_by_a_killed_swap_comes_back(tmp_path):
    """Killed between the two renames, the old folder sits in a hidden sibling: the next
    write, or a reader that recovers first, finds it in place."""
    target = tmp_path / "best"
    (tmp_path / ".best.abcd1234" / ".old").mkdir(parents=True)
    (tmp_path / ".best.abcd1234" / ".old" / "best.json").write_text("{}")
    (tmp_path / ".best.efgh5678").mkdir()  # a write killed before the swap: nothing to keep
    (tmp_path / ".best.backup").mkdir()  # not a temporary of ours: left alone
    assert (files.recover_folder(target) / "best.json").read_text() == "{}"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".best.backup", "best"]
    (tmp_path / ".best.ijkl9012" / ".old").mkdir(parents=True)  # the new one had landed: leftovers go
    with files.atomic_path(target, folder=True) as tmp:
        (tmp / "fresh").mkdir(parents=True)
    assert [p.name for p in target.iterdir()] == ["fresh"]
    # a run started afresh removes the folder with what a killed write left, so nothing returns
    (tmp_path / ".best.mnop3456" / ".old").mkdir(parents=True)
    files.remove_folder(target)
    assert files.recover_folder(target).exists() is False
    assert sorted(p.name for p in tmp_path.iterdir()) == [".best.backup"]


def test_a_file_never_replaces_a_folder(tmp_path):
    folder = tmp_path / "saved_models"
    (folder / "run").mkdir(parents=True)
    (folder / "run" / "model.keras").write_text("hours of training")
    with pytest.raises(FileError, match="saved_models is a folder; give the path of a file"):
        files.write_bytes(folder, b"flatbuffer")
    assert (folder / "run" / "model.keras").read_text() == "hours of training"
    with pytest.raises(FileError, match="is a file, where a folder is to be written"):
        with files.atomic_path(folder / "run" / "model.keras", folder=True):
            pass


def test_an_export_to_a_folder_is_refused_and_the_folder_survives(tmp_path):
    from kerasprune import to_tflite
    from kerasprune.backend import keras

    (tmp_path / "keep.txt").write_text("precious")
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    with pytest.raises(FileError, match="is a folder"):
        to_tflite(model, tmp_path)
    assert (tmp_path / "keep.txt").read_text() == "precious"


def test_a_full_disk_names_the_target_not_the_temporary(tmp_path, monkeypatch):
    path = tmp_path / "model.tflite"
    path.write_bytes(b"old")

    def no_space(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(FileError) as caught:
        files.write_bytes(path, b"new")
    message = str(caught.value)
    assert f"cannot write {path}: No space left on device" in message
    assert ".model.tflite." not in message  # the temporary's name
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["model.tflite"]


def test_an_unwritable_place_is_a_file_error(tmp_path):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("")
    with pytest.raises(FileError, match="cannot write .*not_a_folder/r.json"):
        files.write_json(blocker / "r.json", {})
