"""The things ``kerasprune bench`` measures: Keras files, SavedModels and ``.tflite`` files.

Every artifact is reduced to what the targets need: a callable TensorFlow model (Keras
or a SavedModel signature) and/or a TFLite flatbuffer, plus the input spec to feed them.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from .. import export, loading, metrics
from ..backend import keras, tf
from ..data import random_inputs
from ..errors import ConfigError, ExportError, ModelError
from ..export.flatbuffer import GraphStats, graph_stats, input_vocabulary
from ..models import vocabulary_size
from . import footprint


#: what :meth:`Artifact.footprint` reads from the TFLite graph when there is no Keras model
GRAPH_FIGURES = ("sparsity", "params", "nonzero_params", "macs", "macs_effective")


@dataclass
class Artifact:
    """One model to benchmark, loaded lazily in the forms the targets ask for."""

    name: str
    path: Path
    kind: str  # keras | savedmodel | tflite
    safe_mode: bool = True  # refuse files with serialized Python code (see kerasprune.loading)
    _cache: dict = field(default_factory=dict, repr=False)

    @cached_property
    def run_record(self) -> dict | None:
        """The experiment's ``result.json`` beside the file, when it describes this file.

        An experiment writes a run's model files and then its result, so the accuracy
        there is this model's; a file written after the result, or a ``.tflite`` whose
        size differs from the recorded one, was replaced since and gets nothing (a
        retrained LeNet-5 has the same size, so size alone cannot tell).
        """
        path = self.path.parent / "result.json"
        if self.path.stem != "model" or not path.is_file():
            return None
        if self.path.stat().st_mtime > path.stat().st_mtime:
            return None
        record = json.loads(path.read_text())
        if self.kind == "tflite" and record.get("tflite_bytes") != self.path.stat().st_size:
            return None
        return record

    @cached_property
    def keras_model(self) -> keras.Model | None:
        if self.kind != "keras":
            return None
        return loading.load_model(self.path, safe_mode=self.safe_mode)

    @cached_property
    def _saved_signature(self):
        loaded = loading.load_saved_model(self.path, safe_mode=self.safe_mode)
        self._cache["loaded"] = loaded  # keep the object alive with its signature
        return self._serving(loaded)

    def _serving(self, loaded):
        """A loaded SavedModel's serving signature (``serving_default``, else its first)."""
        signatures = dict(loaded.signatures)
        if not signatures:
            raise ConfigError(f"bench: SavedModel {self.path} has no signatures; export it with "
                              "a serving signature (model.export(path) or tf.saved_model.save).")
        return signatures.get("serving_default") or next(iter(signatures.values()))

    def tf_function(self):
        """A callable on one input tensor, for the TensorFlow targets (None for .tflite).

        The model is loaded afresh, not taken from this artifact's cache (loaded earlier to
        read its input spec), so a target measuring memory sees it load.
        """
        if self.kind == "keras":
            model = loading.load_model(self.path, safe_mode=self.safe_mode)
            return tf.function(lambda x: model(x, training=False), reduce_retracing=True)
        if self.kind == "savedmodel":
            loaded = loading.load_saved_model(self.path, safe_mode=self.safe_mode)
            signature = self._serving(loaded)
            (key,) = signature.structured_input_signature[1]
            # bound as a default: the signature alone would let ``loaded``'s variables go
            return lambda x, loaded=loaded: signature(**{key: x})
        return None

    def input_spec(self) -> tuple[tuple[int, ...], np.dtype]:
        """Per-example input shape and dtype (one input, every dimension known)."""
        if self.kind == "keras":
            specs = self.keras_model.inputs
            shape, dtype = (specs[0].shape[1:], specs[0].dtype.as_numpy_dtype) if specs else ((), None)
        elif self.kind == "savedmodel":
            specs = list(self._saved_signature.structured_input_signature[1].values())
            shape, dtype = (specs[0].shape[1:], specs[0].dtype.as_numpy_dtype) if specs else ((), None)
        else:
            specs = self._interpreter().get_input_details()
            shape, dtype = specs[0]["shape"][1:], specs[0]["dtype"]
        if len(specs) != 1:
            raise ConfigError(f"bench: {self.path} has {len(specs)} inputs; the benchmark feeds "
                              "models with exactly one input.")
        if any(d is None for d in shape):
            raise ConfigError(f"bench: {self.path} has an input of unknown size {tuple(shape)}; "
                              "export it with a fixed input shape (e.g. Input(shape=(128,))).")
        return tuple(int(d) for d in shape), dtype

    def _interpreter(self):
        """The LiteRT interpreter of the flatbuffer.

        It verifies the whole flatbuffer, so a truncated or corrupt ``.tflite`` is named
        here, when the benchmark first reads it, rather than deep in a target.
        """
        try:
            return export.interpreter(self.tflite())
        except (ValueError, RuntimeError) as exc:
            said = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            what = ("is a truncated or corrupt TFLite flatbuffer (it does not verify)"
                    if "not a valid Flatbuffer" in said else f"cannot be loaded by LiteRT ({said})")
            raise ModelError(f"{self.path} {what}; convert the model again (kerasprune.to_tflite) "
                             "or copy the whole file.") from exc

    def tflite(self, sparse: bool = False) -> bytes:
        """The flatbuffer: the file itself, or the checked conversion of a TF model;
        ExportError when it does not convert (:meth:`unconvertible` asks without raising)."""
        if (reason := self.unconvertible(sparse)) is not None:
            raise ExportError(reason)
        return self._cache[("tflite", sparse)]

    def unconvertible(self, sparse: bool = False) -> str | None:
        """Why the model has no TFLite flatbuffer; None when it has one.

        The conversion is tried once, a failure included (it can take seconds, and every
        TFLite target and the run record ask): the first call converts, so a caller that
        measures memory asks before it measures.
        """
        key = ("tflite", sparse)
        if key not in self._cache and ("unconvertible", sparse) not in self._cache:
            try:
                self._cache[key] = self._flatbuffer(sparse)
            except ExportError as exc:
                self._cache["unconvertible", sparse] = str(exc)
        return self._cache.get(("unconvertible", sparse))

    def _flatbuffer(self, sparse: bool) -> bytes:
        if self.kind == "tflite":
            return loading.read_tflite(self.path)
        if self.kind == "keras":
            return export.to_tflite(self.keras_model, sparse=sparse).content
        # checked on ids 0 and 1 (any table has those): its vocabulary is read from the result
        return export.saved_model_to_tflite(self.path, self._saved_signature,
                                            random_inputs(*self.input_spec(), 8), sparse=sparse).content

    @cached_property
    def vocabulary(self) -> int | None:
        """How many token ids an integer input takes: its smallest embedding's rows, read from
        the Keras model or else from the TFLite graph, so a ``.tflite`` file or SavedModel is
        fed what its ``.keras`` twin is; None where no table is found."""
        if self.keras_model is not None:
            return vocabulary_size(self.keras_model)
        return None if self.unconvertible() else input_vocabulary(self.tflite())

    def example(self, batch: int, seed: int = 0) -> np.ndarray:
        """A deterministic random input batch (token ids the model's embeddings take)."""
        shape, dtype = self.input_spec()
        vocab = self.vocabulary if np.issubdtype(dtype, np.integer) else None
        return random_inputs(shape, dtype, batch, vocab=vocab, seed=seed)

    def inputs(self) -> str:
        """What :meth:`example` feeds it, in words: for the record beside its figures."""
        shape, dtype = self.input_spec()
        if not np.issubdtype(dtype, np.integer):
            return f"random standard normal {np.dtype(dtype).name} of shape {shape}"
        if self.vocabulary is None:
            return (f"random ids 0 and 1 of shape {shape}: no embedding table that its input "
                    "indexes was found to bound them, so a twin with one may see other ids")
        return f"random token ids below {self.vocabulary} (its embedding's rows) of shape {shape}"

    @cached_property
    def graph(self) -> GraphStats | None:
        """What the flatbuffer holds; None when there is none (:meth:`unconvertible`)."""
        return None if self.unconvertible() else graph_stats(self.tflite())

    def footprint(self) -> dict:
        """Bytes on disk (raw and gzip), sparsity, params, nonzeros and MACs dense and effective.

        Keras models are counted by :mod:`kerasprune.metrics` (as the experiments count
        them); SavedModels and ``.tflite`` files from the TFLite graph (None without one).
        """
        files = sorted(p for p in self.path.rglob("*") if p.is_file()) if self.path.is_dir() \
            else [self.path]
        raw = sum(p.stat().st_size for p in files)
        packed = sum(footprint.gzip_size(p.read_bytes()) for p in files)
        out = {"bytes": raw, "gzip_bytes": packed}
        if self.keras_model is not None:
            out.update(metrics.figures(self.keras_model))
        elif (g := self.graph) is not None:
            out.update(sparsity=g.sparsity, params=g.params, nonzero_params=g.nonzero_params,
                       macs=g.macs, macs_effective=g.macs_effective)
        else:
            out.update(dict.fromkeys(GRAPH_FIGURES))
        return out


def artifact(spec: str | os.PathLike, name: str | None = None, *, safe_mode: bool = True) -> Artifact:
    """An artifact from ``PATH`` or ``NAME=PATH``; named after its run folder by default.

    ``saved_models/<exp>/<budget>/<run>/model.tflite`` is named ``<run>``, so the
    experiments' files compare under their run ids.  A Keras file or SavedModel is checked
    at once (:func:`kerasprune.loading.check_file`): a Keras 3, corrupt or, with
    ``safe_mode``, code-carrying one is refused before anything is deserialized or timed.
    """
    text = os.fspath(spec)
    if name is None and "=" in text and not Path(text).exists():
        name, text = text.split("=", 1)
    path = Path(text)
    fmt = loading.check_file(path, safe_mode=safe_mode)
    kind = "keras" if fmt in ("keras", "h5") else fmt
    if name is None:
        name = path.parent.name if path.stem == "model" and path.parent.name else path.stem
    return Artifact(name, path, kind, safe_mode)
