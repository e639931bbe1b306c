"""Bytes on disk, raw and gzip, and the peak memory of a block of work."""
from __future__ import annotations

import numpy as np

from kerasprune.benchmark import footprint


def test_gzip_shrinks_zeros(tmp_path):
    path = tmp_path / "zeros.bin"
    path.write_bytes(bytes(100_000))
    assert footprint.file_bytes(path) == 100_000
    assert footprint.gzip_bytes(path) < 1_000
    assert footprint.file_bytes(tmp_path) == 100_000  # a folder counts its files


def test_peak_memory_sees_an_allocation_inside_the_block():
    with footprint.PeakMemory() as before:
        pass
    with footprint.PeakMemory() as during:
        block = np.ones(50_000_000, dtype=np.float32)  # 200 MB
        block.sum()
    del block
    assert during.mb - before.mb > 150


def test_a_folder_gzips_file_by_file_like_an_app_bundle(tmp_path):
    (tmp_path / "a.bin").write_bytes(bytes(1000))
    (tmp_path / "b.bin").write_bytes(bytes(1000))
    assert footprint.gzip_bytes(tmp_path) == 2 * footprint.gzip_size(bytes(1000))
