"""Bad input to the public API gets a kerasprune error that names it, never a bare traceback.

One row per input tried when the API was swept (README, "Bad input, and what it gets");
the config, file, export, loading and CLI cases live beside their modules' tests.
"""
from __future__ import annotations

import pytest

import kerasprune
from kerasprune import AdaptivePruning, FeedbackSchedule, KeepBest, metrics, prune, set_sparsity
from kerasprune import benchmark, data, models, structured, to_tflite
from kerasprune.backend import keras
from kerasprune.errors import ConfigError, ModelError


def _mlp():
    return keras.Sequential([keras.Input((8,)), keras.layers.Dense(4, activation="relu"),
                             keras.layers.Dense(2)])


CASES = [
    (lambda: prune(_mlp(), layers=5), ConfigError, r"layers= takes layer names or a predicate"),
    (lambda: prune(_mlp(), track_scores="x"), ConfigError, r"track_scores=\) must be true or false"),
    (lambda: set_sparsity(prune(_mlp()), "0.5"), ConfigError, r"sparsity must be a number in \[0, 1\), got '0.5'"),
    (lambda: set_sparsity(prune(_mlp()), float("nan")), ConfigError, r"sparsity must be a number"),
    (lambda: set_sparsity(prune(_mlp()), 0.5, min_density="x"), ConfigError, r"min_density must be a number"),
    (lambda: KeepBest("best", min_sparsity="a"), ConfigError, r"KeepBest\(min_sparsity=\) must be a number"),
    (lambda: KeepBest(None), ConfigError, r"KeepBest\(folder=\) must be a file or folder path"),
    (lambda: FeedbackSchedule(every=2.5), ConfigError, r"every=\) must be a whole number >= 1, got 2.5"),
    (lambda: FeedbackSchedule(initial=0.9, final=0.5), ConfigError, r"final=\) must be a number in \[0.9, 1\)"),
    (lambda: AdaptivePruning(tolerance="x"), ConfigError, r"tolerance=\) must be a number >= 0"),
    (lambda: AdaptivePruning(bogus=1), ConfigError, r"unknown argument\(s\) bogus"),
    (lambda: to_tflite(_mlp(), atol="x"), ConfigError, r"atol=\) must be a number"),
    (lambda: metrics.evaluate(_mlp(), [1, 2]), ConfigError, r"expected a tf.data.Dataset of \(inputs, labels\)"),
    (lambda: metrics.global_sparsity(None), ModelError, r"expected a tf_keras Model, got NoneType"),
    (lambda: metrics.count_params(None), ModelError, r"expected a tf_keras Model"),
    (lambda: data.load("mnist", batch_size="x", data_dir="/unused"), ConfigError, r"batch_size must be a whole number"),
    (lambda: data.load("mnist", max_train_examples=-1, data_dir="/unused"), ConfigError, r"max_train_examples must be"),
    (lambda: models.build("lenet5", input_shape=(28, 28, 1), num_classes=10, width="x"), ConfigError,
     r"width must be a number > 0"),
    (lambda: structured.plan_channels(_mlp(), "x"), ConfigError, r"plan: ratio must be a number"),
    (lambda: structured.plan_channels(_mlp(), 0.3, round_to="x"), ConfigError, r"round_to must be a whole number"),
    (lambda: structured.plan_channels(_mlp(), 0.3, importance="apoz", data=[1]), ConfigError,
     r"needs data: pass a tf.data.Dataset"),
    (lambda: structured.shrink(_mlp(), None), ConfigError, r"expected the Plan"),
    (lambda: benchmark.bench(["m.tflite"], rounds="x"), ConfigError, r"bench: rounds must be a whole number >= 2"),
    (lambda: kerasprune.load_model(None), ConfigError, r"path must be a file or folder path"),
]


@pytest.mark.parametrize("call, error, message", CASES, ids=[c[2][:40] for c in CASES])
def test_bad_input_gets_a_named_kerasprune_error(call, error, message):
    with pytest.raises(error, match=message):
        call()
