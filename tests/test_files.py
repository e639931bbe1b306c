"""Writes are atomic: a failed write leaves the old file and no temporary behind."""
from __future__ import annotations

import json

import pytest

from kerasprune import files


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
    with files.atomic_path(target) as tmp:
        (tmp / "fresh").mkdir(parents=True)
    assert [p.name for p in target.iterdir()] == ["fresh"]
