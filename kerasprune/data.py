"""Datasets through tensorflow-datasets, as fast tf.data pipelines of ``(x, y)`` batches.

Every split is read with ``download=False`` unless the caller asks for a download, so an
offline machine gets a specific error in well under a second instead of minutes of tfds
retries.  Where a dataset has no validation split one is carved from train: from its end,
or, for SST-2, by whole sentences (:func:`hold_out_sentences`).  SST-2's test labels are
hidden, so its GLUE validation split is the reported test set.
"""
from __future__ import annotations

import dataclasses
import os
import zlib
from dataclasses import dataclass, field
from typing import Callable, Iterator, Literal, Sequence

import numpy as np

from .backend import keras, tf
from .checks import flag, number
from .errors import ConfigError, DataError

AUTOTUNE_OFF = 2  # fixed parallelism: tf.data autotune can stall ~40 s at the end of fit


@dataclass(frozen=True)
class DatasetSpec:
    """How one dataset is read from tfds and turned into model inputs."""

    tfds_name: str
    kind: Literal["image", "text"]
    num_classes: int
    x_key: str
    test_split: str
    val_split: str | None  # None: carve a validation split from train
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    augment: bool = False  # pad-crop and flip for natural images
    seq_len: int = 0  # text defaults, overridable per experiment
    vocab_size: int = 0
    carve: Literal["tail", "sentences"] = "tail"  # no val_split: carve train's end, or sentences


DATASETS: dict[str, DatasetSpec] = {
    "mnist": DatasetSpec("mnist", "image", 10, "image", "test", None, (0.1307,), (0.3081,)),
    "cifar10": DatasetSpec(
        "cifar10", "image", 10, "image", "test", None,
        (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), augment=True,
    ),
    "sst2": DatasetSpec(
        "glue/sst2", "text", 2, "sentence", "validation", None, carve="sentences",
        seq_len=56, vocab_size=20000,
    ),
    "imdb": DatasetSpec(
        "imdb_reviews", "text", 2, "text", "test", None, seq_len=400, vocab_size=20000
    ),
}
PADDINGS = ("post", "pre")
ALIASES = {"glue/sst2": "sst2", "imdb_reviews": "imdb"}


@dataclass
class Data:
    """A dataset ready for ``model.fit``: batched train/val/test pipelines and their shape."""

    name: str
    make_train: Callable[[int], tf.data.Dataset] = field(repr=False)  # batch size -> pipeline
    val: tf.data.Dataset
    test: tf.data.Dataset
    num_classes: int
    input_shape: tuple[int, ...]
    input_dtype: tf.DType
    test_split: str
    train_examples: int
    vocabulary: list[str] | None = field(default=None, repr=False)
    batch_size: int = 128  # of the training pipeline

    def rebatched(self, batch_size: int) -> "Data":
        """The same data with training batches of ``batch_size`` (same shuffles, same order)."""
        check_arguments("Data.rebatched", batch_size=batch_size)
        return dataclasses.replace(self, batch_size=int(batch_size))

    @property
    def train(self) -> tf.data.Dataset:
        """A new training pipeline over the cached split, with the same seeded shuffles.

        Each access starts the same sequence of epoch orders, so every method of an
        experiment sees the same data in the same order, wherever it stands in the list.
        """
        return self.make_train(self.batch_size)

    @property
    def kind(self) -> str:
        return "text" if self.vocabulary is not None else "image"

    def sample_inputs(self, n: int = 64) -> np.ndarray:
        """The first ``n`` test inputs, for conversion checks and calibration."""
        xs = [x.numpy() for x, _ in self.test.unbatch().take(n)]
        return np.stack(xs)


def resolve_data_dir(data_dir: str | os.PathLike | None) -> str | None:
    """``data_dir`` if given, else ``TFDS_DATA_DIR``, else None (tfds' own default)."""
    if data_dir:
        return os.fspath(data_dir)
    return os.environ.get("TFDS_DATA_DIR") or None


def spec(name: str) -> DatasetSpec:
    """The spec of a dataset by kerasprune or tfds name, or a ConfigError listing them."""
    key = ALIASES.get(name, name)
    if key not in DATASETS:
        raise ConfigError(
            f"unknown dataset '{name}'; kerasprune supports {', '.join(sorted(DATASETS))}."
        )
    return DATASETS[key]


def check_arguments(where: str = "data.load", **args) -> None:
    """ConfigError for a loading argument of the wrong type or range (``load``'s keywords)."""
    for key, value in args.items():
        here = f"{where}: {key}"
        if key == "val_fraction":
            number(value, here, low=0.0, high=0.5, low_open=True, high_open=True)
        elif key == "augment":
            if value is not None:  # None: the dataset's own default
                flag(value, here)
        elif key == "seed":
            number(value, here, integer=True)
        elif key == "padding":
            if value not in PADDINGS:
                raise ConfigError(f"{here} must be one of {', '.join(map(repr, PADDINGS))}, got {value!r}.")
        elif value is not None or key in ("batch_size", "eval_batch_size"):
            number(value, here, low=1, integer=True)


def check_padding(name: str, padding: str, where: str = "data.load") -> None:
    """ConfigError for a padding setting on a dataset of images (it is for text)."""
    if padding != "post" and spec(name).kind == "image":
        raise ConfigError(f"{where}: padding={padding!r} is for text, and '{name}' is images; "
                          "drop the padding setting.")


def load(
    name: str,
    *,
    data_dir: str | os.PathLike | None = None,
    batch_size: int = 128,
    eval_batch_size: int = 512,
    val_fraction: float = 0.1,
    max_train_examples: int | None = None,
    seq_len: int | None = None,
    vocab_size: int | None = None,
    augment: bool | None = None,
    padding: str = "post",
    seed: int = 0,
    download: bool = False,
) -> Data:
    """Load ``name`` into train/val/test pipelines of ``(inputs, int labels)`` batches.

    Images are scaled to [0, 1] and standardized per channel; text is mapped to int32
    token ids by a ``TextVectorization`` adapted on the training split only.
    ``max_train_examples`` caps the training split (after the validation carve) for
    small budgets; validation and test are never cut, so reported figures stay comparable.
    ``padding="pre"`` puts a short text's padding before its tokens (Keras'
    ``pad_sequences`` default), so a recurrent layer's last state follows the last word
    instead of up to ``seq_len`` zeros; long texts keep their first ``seq_len`` tokens.
    """
    ds_spec = spec(name)
    key = ALIASES.get(name, name)
    check_arguments(batch_size=batch_size, eval_batch_size=eval_batch_size,
                    val_fraction=val_fraction, max_train_examples=max_train_examples,
                    seq_len=seq_len, vocab_size=vocab_size, augment=augment, padding=padding,
                    seed=seed)
    check_padding(name, padding)
    data_dir = resolve_data_dir(data_dir)
    cut = round(100 * (1 - val_fraction))
    tail = ds_spec.val_split is None and ds_spec.carve == "tail"
    if tail and (abs(100 * val_fraction - (100 - cut)) > 1e-6 or cut >= 100):
        raise ConfigError(f"data.load: val_fraction {val_fraction:g}: '{name}''s validation split is "
                          "carved from the end of train in whole percents; give one of 0.01, "
                          "0.02, ..., 0.49.")
    splits = {
        "train": f"train[:{cut}%]" if tail else "train",
        "val": f"train[{cut}%:]" if tail else ds_spec.val_split,
        "test": ds_spec.test_split,
    }
    raw = {part: _read(ds_spec, split, data_dir, download) for part, split in splits.items() if split}
    if ds_spec.val_split is None and not tail:
        raw["train"], raw["val"] = _split_by_sentences(raw["train"], val_fraction)
    if max_train_examples:
        raw["train"] = raw["train"].take(max_train_examples)
    train_examples = _count(raw["train"])

    if ds_spec.kind == "image":
        prepare, vocabulary = _image_transform(ds_spec), None
        input_shape = tuple(raw["test"].element_spec[0].shape)
        augment_fn = _augment_images if (ds_spec.augment if augment is None else augment) else None
    else:
        length = seq_len or ds_spec.seq_len
        vectorizer = _adapt_vectorizer(raw["train"], vocab_size or ds_spec.vocab_size, length)
        vocabulary = [str(token) for token in vectorizer.get_vocabulary()]
        prepare, input_shape, augment_fn = _text_transform(vectorizer, padding), (length,), None

    options = tf.data.Options()
    options.autotune.enabled = False
    options.deterministic = True

    def cached(ds: tf.data.Dataset, n: int | None = None) -> tf.data.Dataset:
        # Text is vectorized once before caching; images are cached as uint8 (4x smaller).
        if ds_spec.kind == "text":
            n = _count(ds) if n is None else n
            ds = ds.batch(1024).map(prepare, num_parallel_calls=AUTOTUNE_OFF).unbatch()
            ds = ds.apply(tf.data.experimental.assert_cardinality(n))  # unbatch() forgets it
        ds = ds.cache()
        # Fill the cache now: in TF 2.21 a first pass that stops early (take(), a partial
        # epoch) leaves a truncated cache behind, which would silently shrink the split.
        ds.reduce(np.int64(0), lambda count, _: count + 1)
        return ds

    def batches(ds: tf.data.Dataset, training: bool, size: int = batch_size) -> tf.data.Dataset:
        if training:
            ds = ds.shuffle(min(train_examples, 20000), seed=seed, reshuffle_each_iteration=True)
            if augment_fn is not None:
                # Stateless ops fed by a seeded random stream: new crops every epoch, and the
                # same sequence of crops for every pipeline built with this seed.
                seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
                ds = tf.data.Dataset.zip((seeds, ds)).map(augment_fn, num_parallel_calls=AUTOTUNE_OFF)
        ds = ds.batch(size if training else eval_batch_size)
        if ds_spec.kind == "image":
            ds = ds.map(prepare, num_parallel_calls=AUTOTUNE_OFF)
        return ds.prefetch(2).with_options(options)

    train = cached(raw["train"], train_examples)
    return Data(
        name=key,
        make_train=lambda size: batches(train, training=True, size=size),
        val=batches(cached(raw["val"]), training=False),
        test=batches(cached(raw["test"]), training=False),
        num_classes=ds_spec.num_classes,
        input_shape=input_shape,
        input_dtype=tf.float32 if ds_spec.kind == "image" else tf.int32,
        test_split=ds_spec.test_split,
        train_examples=train_examples,
        vocabulary=vocabulary,
        batch_size=batch_size,
    )


def _read(ds_spec: DatasetSpec, split: str, data_dir: str | None, download: bool):
    import tensorflow_datasets as tfds  # here: seconds of import that only reading a split needs

    try:
        ds = tfds.load(
            ds_spec.tfds_name, split=split, data_dir=data_dir, download=download,
            shuffle_files=False,
        )
    except AssertionError as exc:  # tfds' way of saying "not prepared in data_dir"
        where = data_dir or "tfds' default (~/tensorflow_datasets)"
        raise DataError(
            f"dataset '{ds_spec.tfds_name}' is not prepared in data dir '{where}', and "
            "kerasprune does not download unless asked. Point --data-dir (or TFDS_DATA_DIR) "
            "at a folder that holds a prepared copy, or pass --download (download=True) on a "
            "machine with internet access."
        ) from exc
    return ds.map(lambda ex: (ex[ds_spec.x_key], ex["label"]))


def hold_out_sentences(texts: Sequence[str], fraction: float) -> tuple[list[int], list[int]]:
    """Indices ``(train, val)`` that split a corpus of labelled phrases by whole sentences.

    SST-2's train split holds the labelled sub-phrases of its sentences as well as the
    sentences, so a validation carved from its end is mostly phrases whose longer versions
    are trained on: 0.93 validation accuracy for 0.80 on the GLUE validation sentences,
    useless for pruning feedback.  Here a sentence is a phrase that is no span of another;
    ``fraction`` of them, picked by a hash of their text (the same whatever the order or
    seed), are validation (once each), and every phrase inside one of them leaves train.
    """
    tokens = [tuple(text.split()) for text in texts]
    phrases = set(tokens)
    inside = {span for phrase in phrases for span in _spans(phrase, proper=True) if span in phrases}
    limit = fraction * 2 ** 32
    held = {p for p in phrases - inside if zlib.crc32(" ".join(p).encode()) < limit}
    dropped = {span for sentence in held for span in _spans(sentence, proper=False)}
    val, seen = [], set()
    for i, t in enumerate(tokens):
        if t in held and t not in seen:
            val.append(i)
            seen.add(t)
    return [i for i, t in enumerate(tokens) if t not in dropped], val


def _spans(tokens: tuple[str, ...], proper: bool) -> Iterator[tuple[str, ...]]:
    """Every contiguous run of ``tokens``; without the whole sequence if ``proper``."""
    n = len(tokens)
    for i in range(n):
        for j in range(i + 1, n + 1):
            if not (proper and i == 0 and j == n):
                yield tokens[i:j]


def _split_by_sentences(train: tf.data.Dataset, fraction: float):
    texts, labels = next(iter(train.batch(_count(train))))
    keep, val = hold_out_sentences([t.decode() for t in texts.numpy()], fraction)
    if not val:
        raise DataError(f"no whole sentence of the training split fell in a {fraction:.0%} "
                        "validation carve; raise val_fraction.")

    def subset(index: list[int]) -> tf.data.Dataset:
        return tf.data.Dataset.from_tensor_slices((tf.gather(texts, index), tf.gather(labels, index)))

    return subset(keep), subset(val)


def _count(ds: tf.data.Dataset) -> int:
    n = int(ds.cardinality())
    if n >= 0:
        return n
    return int(ds.reduce(np.int64(0), lambda c, _: c + 1))


def _image_transform(ds_spec: DatasetSpec):
    mean = tf.constant(ds_spec.mean, tf.float32)
    std = tf.constant(ds_spec.std, tf.float32)

    def prepare(x, y):
        return (tf.cast(x, tf.float32) / 255.0 - mean) / std, tf.cast(y, tf.int32)

    return prepare


def _augment_images(seed_pair, example):
    """Pad by 4 pixels, crop back at random and flip left-right (the CIFAR recipe)."""
    x, y = example
    shape = tf.shape(x)
    x = tf.image.pad_to_bounding_box(x, 4, 4, shape[0] + 8, shape[1] + 8)
    x = tf.image.stateless_random_crop(x, shape, seed=seed_pair)
    return tf.image.stateless_random_flip_left_right(x, seed=seed_pair[::-1]), y


def _standardize(text: tf.Tensor) -> tf.Tensor:
    """Lower-case, drop HTML line breaks (IMDB) and split punctuation into tokens."""
    text = tf.strings.lower(text)
    text = tf.strings.regex_replace(text, r"<br\s*/?>", " ")
    return tf.strings.regex_replace(text, r"([!?.,;:()\"])", r" \1 ")


def _adapt_vectorizer(train: tf.data.Dataset, vocab_size: int, seq_len: int):
    if vocab_size < 3 or seq_len < 1:
        raise ConfigError(f"text needs vocab_size >= 3 and seq_len >= 1, got {vocab_size}/{seq_len}.")
    vectorizer = keras.layers.TextVectorization(
        max_tokens=vocab_size, output_sequence_length=seq_len, standardize=_standardize
    )
    vectorizer.adapt(train.map(lambda x, y: x).batch(2048))
    return vectorizer


def _text_transform(vectorizer, padding: str):
    def prepare(x, y):
        tokens = tf.cast(vectorizer(x), tf.int32)
        if padding == "pre":  # padding is 0 and only trails the tokens: rotate it to the front
            length = tokens.shape[1]
            shift = tf.reduce_sum(tf.cast(tokens == 0, tf.int32), axis=1, keepdims=True)
            tokens = tf.gather(tokens, (tf.range(length)[None] - shift) % length, batch_dims=1)
        return tokens, tf.cast(y, tf.int32)

    return prepare


def arrays(dataset: tf.data.Dataset) -> tuple[np.ndarray, np.ndarray]:
    """All of a batched ``(inputs, labels)`` pipeline as two arrays, in order."""
    inputs, labels = zip(*((x.numpy(), y.numpy()) for x, y in dataset))
    return np.concatenate(inputs), np.concatenate(labels)


#: what a free (None) dimension is set to in a made-up batch: a size the usual kernels fit
FREE_SIZE = 32


def example_batch(model: keras.Model, n: int = 2) -> list[np.ndarray]:
    """``n`` made-up examples per input of a tf_keras or Keras 3 ``model`` (free dimensions at
    :data:`FREE_SIZE`): no global random state or dataset iterator moves."""
    return [random_inputs([d or FREE_SIZE for d in spec.shape[1:]],
                          np.dtype(getattr(spec.dtype, "name", spec.dtype)), n)
            for spec in model.inputs]


def random_inputs(shape: Sequence[int], dtype, n: int, *, vocab: int | None = None,
                  seed: int = 0) -> np.ndarray:
    """``n`` deterministic random examples of per-example ``shape``, when no data is at hand.

    Integer inputs are token ids below ``vocab`` (an embedding's ``input_dim``; ids past it
    would fail the lookup), others standard normal: for export checks and timing alike.
    """
    rng = np.random.default_rng(seed)
    size = (n, *(int(d) for d in shape))
    if np.issubdtype(np.dtype(dtype), np.integer):
        return rng.integers(0, vocab or 2, size=size).astype(dtype)
    return rng.standard_normal(size).astype(dtype)

