"""Shared test setup: no test may download anything (offline, tfds retries for minutes)."""
from __future__ import annotations

import pytest

import kerasprune  # noqa: F401  (binds tf_keras before any test imports TensorFlow)


@pytest.fixture(autouse=True)
def _no_downloads(monkeypatch):
    from tensorflow_datasets.core.download import download_manager

    def refuse(*args, **kwargs):
        raise AssertionError("a test tried to download data; use tfds.testing.mock_data")

    for name in ("download", "download_and_extract", "download_kaggle_data"):
        if hasattr(download_manager.DownloadManager, name):
            monkeypatch.setattr(download_manager.DownloadManager, name, refuse)


@pytest.fixture
def mock_tfds():
    """tfds.load returns generated examples (40 per split) for any registered dataset."""
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=40):
        yield
