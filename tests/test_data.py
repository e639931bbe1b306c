"""Datasets load through tfds into (inputs, int labels) pipelines; offline failures are fast."""
from __future__ import annotations

import time

import numpy as np
import pytest

from kerasprune import data
from kerasprune.backend import tf
from kerasprune.errors import ConfigError, DataError


@pytest.mark.parametrize("name, shape", [("mnist", (28, 28, 1)), ("cifar10", (32, 32, 3))])
def test_images_are_standardized_float_batches(mock_tfds, name, shape):
    d = data.load(name, batch_size=8, data_dir="/unused")
    x, y = next(iter(d.train))
    assert x.shape[1:] == shape and x.dtype == tf.float32 and y.dtype == tf.int32
    assert d.input_shape == shape and d.num_classes == 10 and d.kind == "image"
    # uint8 0..255 standardized with the dataset's mean/std: values well outside [0, 1]
    assert float(tf.reduce_min(x)) < 0 < float(tf.reduce_max(x))


def test_cifar_training_batches_are_augmented_but_evaluation_is_not(mock_tfds):
    d = data.load("cifar10", batch_size=40, data_dir="/unused", augment=True)
    train = d.train
    epoch1, epoch2 = next(iter(train))[0].numpy(), next(iter(train))[0].numpy()
    assert not np.allclose(np.sort(epoch1.ravel()), np.sort(epoch2.ravel()))  # new crops each epoch
    test_a, test_b = next(iter(d.test))[0].numpy(), next(iter(d.test))[0].numpy()
    np.testing.assert_array_equal(test_a, test_b)


def test_every_training_pipeline_replays_the_same_seeded_order(mock_tfds):
    d = data.load("cifar10", batch_size=8, data_dir="/unused", augment=True, seed=3)
    first = [y.numpy().tolist() for _, y in d.train]
    again = [y.numpy().tolist() for _, y in d.train]  # e.g. the next method of an experiment
    assert first == again
    np.testing.assert_array_equal(next(iter(d.train))[0].numpy(), next(iter(d.train))[0].numpy())


@pytest.mark.parametrize("name, split", [("sst2", "validation"), ("imdb", "test"),
                                         ("glue/sst2", "validation")])
def test_text_becomes_fixed_length_token_ids(mock_tfds, name, split):
    d = data.load(name, batch_size=8, seq_len=12, vocab_size=50, data_dir="/unused")
    x, y = next(iter(d.train))
    assert x.shape[1:] == (12,) and x.dtype == tf.int32 and y.dtype == tf.int32
    assert d.kind == "text" and d.test_split == split and d.num_classes == 2
    assert 3 <= len(d.vocabulary) <= 50 and int(tf.reduce_max(x)) < len(d.vocabulary)
    # known, so Keras knows the epoch length
    assert int(d.train.cardinality()) == -(-d.train_examples // 8) > 0


def test_pre_padding_moves_a_short_texts_padding_before_its_tokens(mock_tfds):
    after = data.arrays(data.load("imdb", seq_len=400, vocab_size=50, data_dir="/unused").test)[0]
    before = data.arrays(data.load("imdb", seq_len=400, vocab_size=50, data_dir="/unused",
                                   padding="pre").test)[0]
    short = (after == 0).any(axis=1)
    assert short.any()  # some texts are shorter than seq_len
    for a, b in zip(after, before):
        np.testing.assert_array_equal(b[b != 0], a[a != 0])  # the same tokens, in order
        assert (np.diff((b != 0).astype(int)) >= 0).all()  # all the padding in front
    assert (before[short, -1] != 0).all()  # a short text now ends on its last token


def test_a_sentence_carve_keeps_every_span_of_a_held_out_sentence_out_of_training():
    sentences = [f"sentence {i} is about film {i % 7} and more" for i in range(200)]
    phrases = [p for s in sentences for p in (s, " ".join(s.split()[:3]), " ".join(s.split()[2:5]))]
    phrases += [sentences[5], "film"]  # a duplicate sentence, a phrase inside many sentences
    train, val = data.hold_out_sentences(phrases, 0.2)
    held = {phrases[i] for i in val}
    assert 20 <= len(val) <= 60 and len(held) == len(val)  # about a fifth, each once
    assert held <= set(sentences)  # whole sentences only, never a sub-phrase
    assert not set(train) & set(val)
    for i in train:
        assert not any(f" {phrases[i]} " in f" {s} " for s in held), phrases[i]
    kept_sentences = {phrases[i] for i in train} & set(sentences)
    assert kept_sentences == set(sentences) - held  # nothing else leaves training
    # chosen by the text, not its position: the same sentences whatever the order
    _, again_val = data.hold_out_sentences(phrases[::-1], 0.2)
    assert {phrases[::-1][i] for i in again_val} == held


def test_sst2_validation_is_whole_training_sentences(mock_tfds):
    d = data.load("sst2", batch_size=8, seq_len=12, vocab_size=50, data_dir="/unused", val_fraction=0.3)
    val = sum(int(y.shape[0]) for _, y in d.val)
    assert val > 0 and d.train_examples + val <= 40


def test_vocabulary_is_adapted_on_the_training_split_only(mock_tfds):
    import tensorflow_datasets as tfds

    d = data.load("imdb", batch_size=8, seq_len=20, vocab_size=10_000, data_dir="/unused")
    train_tokens = set()
    for ex in tfds.load("imdb_reviews", split="train[:90%]", data_dir="/unused"):
        text = data._standardize(ex["text"]).numpy().decode()
        train_tokens.update(text.split())
    assert set(d.vocabulary[2:]) <= train_tokens  # past the padding and OOV entries


def test_text_standardization_drops_html_breaks_and_splits_punctuation():
    out = data._standardize(tf.constant("Great<br /><br />MOVIE!")).numpy().decode()
    assert out.split() == ["great", "movie", "!"]


def test_max_train_examples_caps_training_but_not_evaluation(mock_tfds):
    d = data.load("mnist", batch_size=4, max_train_examples=10, data_dir="/unused")
    assert d.train_examples == 10
    assert sum(int(y.shape[0]) for _, y in d.train) == 10
    assert sum(int(y.shape[0]) for _, y in d.test) == 40


def test_a_partial_first_pass_does_not_shrink_a_split(mock_tfds):
    d = data.load("mnist", batch_size=4, data_dir="/unused")
    d.sample_inputs(3)  # stops early; must not truncate the cached test split
    assert sum(int(y.shape[0]) for _, y in d.test) == 40


def test_unknown_dataset_lists_the_supported_ones():
    with pytest.raises(ConfigError, match="unknown dataset 'fashion'.*mnist"):
        data.load("fashion")


def test_missing_dataset_fails_fast_naming_dataset_and_data_dir(tmp_path):
    import tensorflow_datasets  # noqa: F401  (import time is not part of the check)

    start = time.perf_counter()
    with pytest.raises(DataError) as info:
        data.load("cifar10", data_dir=tmp_path)
    assert time.perf_counter() - start < 5  # never minutes of download retries
    message = str(info.value)
    assert "cifar10" in message and str(tmp_path) in message and "--data-dir" in message


def test_data_dir_comes_from_the_argument_then_the_environment(monkeypatch):
    monkeypatch.setenv("TFDS_DATA_DIR", "/from/env")
    assert data.resolve_data_dir("/explicit") == "/explicit"
    assert data.resolve_data_dir(None) == "/from/env"
    monkeypatch.delenv("TFDS_DATA_DIR")
    assert data.resolve_data_dir(None) is None


def test_rebatched_data_keeps_the_seeded_order_in_batches_of_another_size(mock_tfds):
    d = data.load("mnist", batch_size=8, data_dir="/unused", seed=3)
    small = d.rebatched(4)
    first = next(iter(d.train))[1].numpy().tolist()
    halves = [y.numpy().tolist() for _, y in small.train.take(2)]
    assert halves[0] + halves[1] == first and d.batch_size == 8  # the original is unchanged
    with pytest.raises(ConfigError, match="batch_size must be a whole number >= 1"):
        d.rebatched(0)


@pytest.mark.parametrize("fraction", [0.004, 0.125])
def test_a_validation_share_tfds_cannot_carve_is_refused_not_rounded(mock_tfds, fraction):
    """MNIST's validation split is the end of train in whole percents: 0.004 would be empty,
    0.125 silently 12%."""
    with pytest.raises(ConfigError, match=f"val_fraction {fraction:g}.*whole percents"):
        data.load("mnist", batch_size=8, data_dir="/unused", val_fraction=fraction)
