"""Keras Tuner over compression: tf_keras trials under keras-tuner's own oracles, next to
a user's Keras 3 in the same process."""
from __future__ import annotations

import numpy as np
import pytest

from kerasprune import ConfigError, data, models
from kerasprune.backend import keras as tf_keras
from kerasprune.experiment.spec import TrainSpec


@pytest.fixture
def mnist(mock_tfds):
    return data.load("mnist", batch_size=8, max_train_examples=32)


def test_a_random_search_compresses_exports_and_times_every_trial(tmp_path, mnist):
    from kerasprune.tuner import SCORE, CompressionTuner

    model = models.build_for(mnist, "lenet_300_100", width=0.2)
    model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    model.fit(mnist.train, epochs=1, verbose=0)
    tuner = CompressionTuner(model, mnist, finetune=TrainSpec(epochs=1), search="random",
                             max_trials=3, max_bytes=20_000, directory=tmp_path, seed=1,
                             min_agreement=0)  # an untrained model has near ties
    tuner.search()
    trials = tuner.trials()
    assert len(trials) == 3
    for trial in trials:
        assert 0 <= trial["val_accuracy"] <= 1 and trial["tflite_bytes"] > 0 and trial["latency_ms"] > 0
        assert 0 <= trial["sparsity"] <= trial["hyperparameters"]["sparsity"] + 0.02  # reached, measured
        over = trial["tflite_bytes"] > 20_000
        assert trial[SCORE] == pytest.approx(trial["val_accuracy"] - (1 + trial["tflite_bytes"] / 20_000 - 1
                                                                        if over else 0))
    front = tuner.pareto()
    assert front and all(not (o["val_accuracy"] > f["val_accuracy"] and o["tflite_bytes"] < f["tflite_bytes"])
                         for f in front for o in trials)
    best = tuner.get_best_models(1)[0]
    assert isinstance(best, tf_keras.Model)


def test_the_report_shows_the_sparsity_a_trial_fell_short_of():
    from kerasprune.tuner.report import _sparsity

    assert _sparsity({"sparsity": 0.8}, {"sparsity": 0.795}) == "0.8"
    assert _sparsity({"sparsity": 0.8}, {"sparsity": 0.0}) == "0.8 (reached 0.00)"  # one epoch: no step
    assert _sparsity({"sparsity": 0.5}, {}) == "0.5"  # a search saved before it was measured


def test_keras_3_works_beside_the_tuner_in_one_process(tmp_path, mnist):
    import keras  # the user's own Keras 3

    import kerasprune.tuner  # noqa: F401  (imports keras-tuner, which imports Keras 3)

    assert keras.__version__.startswith("3.")
    user = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    assert user.predict(np.ones((1, 4), "float32"), verbose=0).shape == (1, 2)
    assert not isinstance(user, tf_keras.Model)
    assert tf_keras.__name__.startswith("tf_keras")


def test_bad_search_settings_are_refused(tmp_path, mnist):
    from kerasprune.tuner import CompressionTuner, compression_space

    model = models.build_for(mnist, "lenet_300_100", width=0.2)
    with pytest.raises(ConfigError, match="search must be one of"):
        CompressionTuner(model, mnist, finetune=TrainSpec(epochs=1), search="grid", directory=tmp_path)
    import keras_tuner as kt

    with pytest.raises(ConfigError, match="precisions must be some of"):
        compression_space(kt.HyperParameters(), precisions=("int3",))
    with pytest.raises(ConfigError, match=r"ratio\[1\]"):
        compression_space(kt.HyperParameters(), ratio=(0.5, 0.2))
    with pytest.raises(ConfigError, match="data must be the Data of kerasprune.data.load.*module kerasprune.data"):
        CompressionTuner(model, data, finetune=TrainSpec(epochs=1), directory=tmp_path)


def test_pinned_values_are_recorded_and_hyperband_keeps_to_max_trials(tmp_path, mnist):
    import keras_tuner as kt

    from kerasprune.tuner import CompressionTuner, compression_space

    hp = kt.HyperParameters()
    choice = compression_space(hp, ratio=(0.3, 0.3), precisions=("mixed",), eight_bit_fraction=(0.5, 0.5))
    assert (choice.ratio, choice.eight_bit_fraction) == (0.3, 0.5)
    assert hp.values["ratio"] == 0.3 and hp.values["eight_bit_fraction"] == 0.5  # the trial's record
    model = models.build_for(mnist, "lenet_300_100", width=0.2)
    tuner = CompressionTuner(model, mnist, finetune=TrainSpec(epochs=9), search="hyperband", max_trials=4,
                             directory=tmp_path)
    # its first bracket alone would start more trials: the fifth is refused
    assert [tuner.oracle.create_trial(f"w{i}").status for i in range(5)] == ["RUNNING"] * 4 + ["STOPPED"]


TUNE = """
experiment: tunetest
dataset: mnist
model: lenet_300_100
model_args: {width: 0.1}
methods:
  - method: dense
  - {method: tfmot_gmp, tag: int8, sparsity: 0.5, frequency: 1, quantize: {mode: int8, min_agreement: 0}}
tune:
  search: random
  max_trials: 2
  min_agreement: 0
  size: gzip
  space: {ratio: [0.0, 0.3], sparsity: [0.0, 0.5], precisions: [fp32, dynamic]}
budgets:
  cpu:
    data: {batch_size: 8, max_train_examples: 32}
    train: {epochs: 1}
    finetune: {epochs: 1}
"""


def test_kerasprune_tune_runs_the_peers_searches_and_reports_the_front(tmp_path, mock_tfds):
    from test_experiment import _write_config

    from kerasprune.tuner.run import run_tune

    config = _write_config(tmp_path, "tunetest", TUNE)
    section = run_tune(config, out_dir=tmp_path / "out", data_dir="/unused", log=lambda m: None)
    assert len(section["trials"]) == 2 and {r["run"] for r in section["runs"]} == {
        "dense", "tfmot_gmp-int8_sparsity-0.5"}
    front = [t for t in section["trials"] if t["pareto"]]
    assert front and all("test_accuracy" in t for t in front)
    report = (tmp_path / "experiments" / "results" / "tunetest.tune.md").read_text()
    assert "Pareto trials that dominate it" in report and "`tfmot_gmp-int8_sparsity-0.5`" in report
    assert (tmp_path / "experiments" / "results" / "tunetest.tune" / "pareto.png").is_file()
    from kerasprune import cli  # `kerasprune report` rebuilds a search's report, as a search's

    (tmp_path / "experiments" / "results" / "tunetest.tune.md").unlink()
    assert cli.main(["report", str(tmp_path / "experiments" / "results" / "tunetest.tune.json")]) == 0
    assert "Pareto trials that dominate it" in (tmp_path / "experiments" / "results" / "tunetest.tune.md").read_text()


@pytest.mark.parametrize("edit, message", [
    (("search: random", "search: grid"), "search must be one of"),
    (("max_trials: 2", "trials: 2"), "unknown key"),
    (("precisions: [fp32, dynamic]", "precisions: [int2]"), "precisions must be some of"),
    (("size: gzip", "size: zip"), "size must be raw or gzip"),
])
def test_bad_tune_blocks_are_refused_before_anything_trains(tmp_path, edit, message):
    from test_experiment import _write_config

    from kerasprune.tuner.run import run_tune

    config = _write_config(tmp_path, "tunetest", TUNE.replace(*edit))
    with pytest.raises(ConfigError, match=message):
        run_tune(config, out_dir=tmp_path / "out", data_dir="/unused", log=lambda m: None)
    assert not (tmp_path / "out").exists()
