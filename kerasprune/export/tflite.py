"""TFLite export, checked against the Keras model before anything is written.

A converter bug or an unsupported op should fail here, loudly, with the size of the
disagreement, not in a phone app weeks later.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import numpy as np
import tensorflow_model_optimization as tfmot
from tensorflow_model_optimization.python.core.sparsity.keras.pruning_wrapper import (
    PruneLowMagnitude,
)

from .. import files, metrics
from ..metrics.quality import predicted_classes
from ..backend import keras, require_tf_keras_model, tf
from ..checks import choice, flag, number
from ..data import random_inputs
from ..errors import ConfigError, ExportError
from ..models import vocabulary_size
from ..quantization.qat import bake, check_bits
from ..sparsity.prune import strip, wrappers
from .flatbuffer import WeightedOp, has_state, weighted_ops, without_names
from .recipe import COMPUTE, apply_bits, with_lookup_embeddings

log = logging.getLogger("kerasprune")

#: what the weights (and, for int8, the activations) become in the file
MODES = ("fp32", "fp16", "dynamic", "int8", "mixed")
QUANTIZED_CHECK_EXAMPLES = 256  # top-1 agreement needs more examples than a max difference


@dataclass
class TFLiteExport:
    """A converted model: its flatbuffer, where it was written and how closely it agrees."""

    content: bytes = field(repr=False)  # a notebook echoing the result shows the figures, not the file
    path: Path | None
    max_abs_diff: float
    checked_examples: int
    mode: str = "fp32"
    agreement: float | None = None  # top-1 agreement with Keras, for the quantized modes
    named: bytes | None = field(default=None, repr=False)  # the file before its names were stripped

    @property
    def bytes(self) -> int:
        return len(self.content)

    def weights(self) -> list[WeightedOp]:
        """Each weighted op's stored type (int4/int8/float) and bytes, read from the file
        (the layers' names from the converter's file when the written one has none)."""
        return weighted_ops(self.named or self.content)


def interpreter(content: bytes | str | os.PathLike, num_threads: int = 1):
    """A LiteRT interpreter (XNNPACK by default) over a flatbuffer or a ``.tflite`` path.

    For a model with state (a fused LSTM's variable tensors) its ``invoke()`` resets that
    state first, so every call starts from zero, as Keras does, whatever ran before (see
    ``to_tflite``); a stateless model's ``invoke`` is left as it is, with nothing added to
    what the benchmark times.
    """
    return interpreter_and_runtime(content, num_threads)[0]


def interpreter_and_runtime(content: bytes | str | os.PathLike, num_threads: int = 1) -> tuple:
    """:func:`interpreter` and what runs it: ``"XNNPACK"``, or ``"builtin (XNNPACK refused:
    <why>)"`` where the delegate rejects the model and TFLite's builtin kernels run it
    instead, so a benchmark can say which of the two it timed."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    if not isinstance(content, (bytes, bytearray)):
        with open(content, "rb") as f:
            content = f.read()
    runtime = "XNNPACK"
    try:
        interp = Interpreter(model_content=bytes(content), num_threads=num_threads)
        interp.allocate_tensors()
    except (RuntimeError, ValueError) as exc:
        # XNNPACK rejects some models (sparse int8 among them): run the builtin kernels.
        why = str(exc).strip().splitlines()[0]
        log.warning("kerasprune: the default XNNPACK delegate cannot run this model (%s); "
                    "running it on TFLite's builtin kernels instead", why)
        runtime = f"builtin (XNNPACK refused: {why})"
        interp = Interpreter(model_content=bytes(content), num_threads=num_threads,
                             experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        interp.allocate_tensors()
    if not has_state(content):
        return interp, runtime
    invoke = interp.invoke

    def invoke_from_zero_state() -> None:
        interp.reset_all_variables()
        invoke()

    interp.invoke = invoke_from_zero_state
    return interp, runtime


def run_tflite(content: bytes | str | os.PathLike, inputs: np.ndarray) -> np.ndarray:
    """Outputs of a single-input TFLite model for a batch of inputs, one example at a time,
    each from a zero recurrent state (``interpreter``'s ``invoke``)."""
    interp = interpreter(content)
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    results = []
    for x in inputs:
        interp.set_tensor(inp["index"], x[None].astype(inp["dtype"]))
        interp.invoke()
        results.append(interp.get_tensor(out["index"])[0])
    return np.stack(results)


def to_tflite(
    model: keras.Model,
    path: str | os.PathLike | None = None,
    *,
    check_inputs: np.ndarray | None = None,
    atol: float = 1e-3,
    sparse: bool = False,
    mode: str = "fp32",
    bits: Mapping[str, int] | None = None,
    compute: str = "float",
    representative: np.ndarray | None = None,
    min_agreement: float = 0.95,
    names: bool = True,
) -> TFLiteExport:
    """Convert ``model`` to TFLite, compare outputs, then write ``path`` atomically.

    ``check_inputs`` are real examples (``Data.sample_inputs()``); without them random
    inputs of the model's input spec are used.  ``mode`` is what the weights become:

    * ``fp32`` (default): raises ExportError when any output differs by more than
      ``atol`` (trained feed-forward models agree to ~1e-7; a recurrent model may drift
      further on a tenth of the examples if they keep Keras' class, see ``_compare``);
    * ``fp16``, ``dynamic`` (int8 weights, activations quantized at run time) and
      ``int8`` (weights and activations, calibrated on ``representative`` examples);
    * ``mixed``: each layer of ``bits`` (layer name -> 4 or 8) stored as INT4/INT8 by
      ai-edge-quantizer; ``compute="float"`` dequantizes the weights before float ops,
      ``"dynamic"`` runs integer kernels.  A quantization-aware model
      (:func:`kerasprune.quantization.quantize_aware`) is baked onto its grid first.

    A quantized file is refused (ExportError, nothing written) when its top-1 prediction
    agrees with Keras on fewer than ``min_agreement`` of the check examples; the agreement
    and the largest difference are returned.  ``sparse`` stores pruned weights in TFLite's
    sparse format (smaller files; runtimes densify them at load unless they have sparse
    kernels for the op and CPU).

    LSTM layers become TFLite's fused sequence kernels, which keep their state in variable
    tensors from one invocation to the next (no converter option turns that off): the file
    gives Keras' output only when that state is reset before each example.  kerasprune's
    ``interpreter`` (hence ``run_tflite`` and the benchmark) does so in every ``invoke``; a
    deployed app must call ``Interpreter.resetVariableTensors()`` (Java) or
    ``reset_all_variables()`` (Python) before every ``run``/``invoke`` on a new example.
    """
    model = require_tf_keras_model(model, "to_tflite")
    atol = number(atol, "to_tflite(atol=)", low=0.0, finite=False)  # inf: any difference passes
    mode = choice(mode, "to_tflite(mode=)", MODES)
    min_agreement = number(min_agreement, "to_tflite(min_agreement=)", low=0.0, high=1.0)
    flag(names, "to_tflite(names=)")
    if path is not None:
        files.refuse_folder(path)  # before a conversion that can take seconds
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ExportError(
            f"to_tflite: model '{model.name}' has {len(model.inputs)} inputs and "
            f"{len(model.outputs)} outputs; the checked export handles one of each."
        )
    model = bake(_stripped(model))
    _check_mode_args(model, mode, bits, compute, sparse)
    given = _checked_inputs(model, check_inputs) if check_inputs is not None else None
    inputs = (given if given is not None else _random_check_inputs(model))[
        :32 if mode == "fp32" else QUANTIZED_CHECK_EXAMPLES]
    recurrent = _has_recurrent_layers(model)
    if mode == "mixed":
        content = apply_bits(_convert(with_lookup_embeddings(model), recurrent), bits, compute)
    else:
        calibration = None  # only int8 calibrates; the other modes leave representative unread
        if mode == "int8":
            calibration = (given if representative is None
                           else _checked_inputs(model, representative, "representative"))
        content = _convert(model, recurrent, sparse, mode, calibration)
    named, content = (None, content) if names else (content, without_names(content))

    expected = model.predict(inputs, verbose=0, batch_size=len(inputs))
    if mode == "fp32":
        diff = _compare(content, expected, inputs, atol, f"'{model.name}'", "Keras", recurrent)
        agreement = None
    else:
        diff, agreement = _agree(content, expected, inputs, min_agreement, mode, model.name)
    written = files.write_bytes(path, content) if path is not None else None
    return TFLiteExport(content, written, diff, len(inputs), mode, agreement, named)


def _check_mode_args(model: keras.Model, mode: str, bits, compute: str, sparse: bool) -> None:
    if mode == "mixed":
        if not bits:
            raise ConfigError("to_tflite(mode='mixed') needs bits={layer name: 4 or 8}, e.g. from "
                              "kerasprune.quantization.allocate.")
        check_bits(model, bits, "to_tflite(bits=)")
        choice(compute, "to_tflite(compute=)", COMPUTE)
        if sparse:
            raise ConfigError("to_tflite: the sparse format holds float32 or int8 values, not "
                              "INT4; for a mixed 4/8-bit file leave sparse out (its zeros "
                              "compress: see the gzip size).")
    elif bits:
        raise ConfigError(f"to_tflite(bits=) is for mode='mixed'; mode={mode!r} quantizes every "
                          "layer the same way.")


def saved_model_to_tflite(path: str | os.PathLike, signature, inputs: np.ndarray, *,
                          atol: float = 1e-3, sparse: bool = False) -> TFLiteExport:
    """Convert a SavedModel, checked like :func:`to_tflite`: against ``signature`` (its
    loaded serving function, e.g. from :func:`kerasprune.loading.load_saved_model`) on
    ``inputs``, example by example.  Nothing is written; the flatbuffer is returned."""
    converter = tf.lite.TFLiteConverter.from_saved_model(os.fspath(path))
    content = _converted(converter, sparse, str(path))
    (key,) = signature.structured_input_signature[1]
    expected = np.stack([next(iter(signature(**{key: tf.constant(x[None])}).values())).numpy()[0]
                         for x in inputs])
    diff = _compare(content, expected, inputs, atol, str(path), "the SavedModel")
    return TFLiteExport(content, None, diff, len(inputs))


#: the share of examples a recurrent model's file must match within ``atol``; the rest must
#: keep Keras' class and stay within RECURRENT_DRIFT x atol: its state amplifies float
#: rounding on some long sequences
RECURRENT_WITHIN, RECURRENT_DRIFT = 0.75, 50


def _compare(content: bytes, expected: np.ndarray, inputs: np.ndarray, atol: float, what: str,
             reference: str, recurrent: bool = False) -> float:
    """The largest output difference, or an ExportError when it exceeds ``atol`` (or is NaN).

    A recurrent model passes with up to 1 - RECURRENT_WITHIN of the examples further off
    (at most RECURRENT_DRIFT x atol), if those still predict the same class at every
    position: a trained IMDB LSTM's file matched Keras to 6e-8 on 62 of 64 reviews and by
    0.0127 on two (same class; 200 steps of rounding, with TensorFlow's oneDNN kernels on or
    off); tfmot's 50%-sparse one, within atol on 28 of 32 and by up to 0.0108 on four.  A
    wrong conversion is off on most examples, or far, or flips a class."""
    got = run_tflite(content, inputs)
    per_example = np.abs(expected - got).reshape(len(inputs), -1).max(axis=1)
    diff = float(np.max(per_example))
    off = ~(per_example <= atol)
    drift = recurrent and off.any() and np.mean(off) <= 1 - RECURRENT_WITHIN + 1e-9 \
        and diff <= RECURRENT_DRIFT * atol and bool(_same_classes(expected[off], got[off]).all())
    if not (diff <= atol or drift):
        share = f"; {off.sum()} of them by more" if recurrent else ""
        raise ExportError(f"to_tflite: the TFLite model of {what} disagrees with {reference} by up "
                          f"to {diff:.3g} (allowed {atol:g}) on {len(inputs)} examples{share}; "
                          "nothing was written.")
    return diff


def _agree(content: bytes, expected: np.ndarray, inputs: np.ndarray, min_agreement: float,
           mode: str, name: str) -> tuple[float, float]:
    """Largest difference and top-1 agreement of a quantized file with Keras, or an
    ExportError when it agrees on fewer than ``min_agreement`` of the examples."""
    got = run_tflite(content, inputs)
    diff = float(np.max(np.abs(expected - got)))
    agreement = float(np.mean(_same_classes(expected, got)))
    if not (agreement >= min_agreement and np.isfinite(diff)):
        raise ExportError(f"to_tflite: the {mode} TFLite model of '{name}' predicts the same class "
                          f"as Keras for {agreement:.1%} of {len(inputs)} examples (needed "
                          f"{min_agreement:.0%}; largest output difference {diff:.3g}); nothing was "
                          "written. Quantize fewer layers (more 8-bit), fine-tune with "
                          "quantize_aware, or lower min_agreement knowingly.")
    return diff, agreement


def _same_classes(expected: np.ndarray, got: np.ndarray) -> np.ndarray:
    """Per example: the same class as Keras at every position (a sequence's every step),
    a single unit's threshold taken from Keras' outputs."""
    same = predicted_classes(expected) == predicted_classes(got, like=expected)
    return same.reshape(len(same), -1).all(axis=1)


def _has_recurrent_layers(model: keras.Model) -> bool:
    return any(isinstance(metrics.unwrap(layer), (keras.layers.RNN, keras.layers.Bidirectional))
               for layer in metrics.leaf_layers(model))


def _convert(model: keras.Model, recurrent: bool, sparse: bool = False, mode: str = "fp32",
             calibration: np.ndarray | None = None) -> bytes:
    """Convert with a dynamic batch, or with batch 1 where the graph has recurrent layers.

    The converter cannot lower the tensor lists of Keras' RNN loops with a dynamic batch;
    with a static batch it fuses LSTMs into TFLite's sequence kernel and turns GRUs into a
    WHILE loop, so the model runs on builtin ops without the Flex (Select TF ops) delegate.
    """
    try:
        if not recurrent:
            converter = tf.lite.TFLiteConverter.from_keras_model(model)
        else:
            spec = model.inputs[0]

            @tf.autograph.experimental.do_not_convert
            def serve(x):
                return model(x, training=False)

            signature = tf.TensorSpec([1, *spec.shape[1:]], spec.dtype)
            concrete = tf.function(serve).get_concrete_function(signature)
            # The converter saves its trackable: holding just the variables gives the same
            # file as the model in <1 s, where saving a Keras model retraces every layer (~12 s
            # for a BiLSTM).
            holder = tf.Module()
            holder.model_variables = model.variables
            converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], holder)
    except Exception as exc:
        raise _converter_error(exc, f"'{model.name}'") from exc
    _configure(converter, mode, calibration, model.name)
    return _converted(converter, sparse, f"'{model.name}'")


def _configure(converter, mode: str, calibration: np.ndarray | None, name: str) -> None:
    """Set the converter's optimizations for ``mode`` (fp32 and mixed convert as float)."""
    if mode in ("fp32", "mixed"):
        return
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if mode == "fp16":
        converter.target_spec.supported_types = [tf.float16]
    if mode == "int8":
        if calibration is None:
            raise ConfigError(f"to_tflite(mode='int8') of '{name}' calibrates its activations on "
                              "real examples: pass representative= (e.g. Data.sample_inputs(256)).")
        converter.representative_dataset = lambda: ([x[None]] for x in calibration)


def _converted(converter, sparse: bool, what: str) -> bytes:
    if sparse:
        converter.optimizations = [*converter.optimizations, tf.lite.Optimize.EXPERIMENTAL_SPARSITY]
    try:
        return converter.convert()
    except Exception as exc:
        raise _converter_error(exc, what) from exc


def _converter_error(exc: Exception, what: str) -> ExportError:
    """ConverterError carries a long MLIR dump: keep its first line."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return ExportError(f"to_tflite: the TFLite converter failed on {what}: {first}")


def _stripped(model: keras.Model) -> keras.Model:
    """Remove pruning wrappers (kerasprune's or tfmot's) so the converter sees plain kernels."""
    if wrappers(model):
        return strip(model)
    if any(isinstance(layer, PruneLowMagnitude) for layer in model.layers):
        return tfmot.sparsity.keras.strip_pruning(model)
    return model


def _checked_inputs(model: keras.Model, examples: np.ndarray,
                    argument: str = "check_inputs") -> np.ndarray:
    """``examples`` (given as ``argument``) in the model's input dtype,
    or an ExportError saying what does not fit, instead of a traceback from ``predict``, the
    converter or the interpreter."""
    spec = model.inputs[0]
    shape, dtype = tuple(spec.shape[1:]), np.dtype(spec.dtype.as_numpy_dtype)
    batch = ", ".join(["n", *map(str, shape)])
    otherwise = ("leave check_inputs out to check on random inputs" if argument == "check_inputs"
                 else f"leave {argument} out to use check_inputs")
    fix = (f"'{model.name}' takes examples of shape {shape} and dtype {dtype}: pass an array "
           f"of shape ({batch}), e.g. Data.sample_inputs(), or {otherwise}")

    def fits(example_shape: tuple) -> bool:
        return len(example_shape) == len(shape) and all(
            want in (None, got) for want, got in zip(shape, example_shape))

    try:
        inputs = np.asarray(examples)
    except ValueError as exc:  # ragged nested lists
        raise ExportError(f"to_tflite: {argument} is not a rectangular array; {fix}.") from exc
    if inputs.size == 0:
        raise ExportError(f"to_tflite: {argument} (shape {inputs.shape}) has no examples; {fix}.")
    if inputs.ndim == 0 or not fits(inputs.shape[1:]):
        single = " It looks like one example: add a batch axis (x[None])." if fits(inputs.shape) else ""
        raise ExportError(f"to_tflite: {argument} has shape {inputs.shape}, examples of shape "
                          f"{inputs.shape[1:]}; {fix}.{single}")
    if not np.can_cast(inputs.dtype, dtype, casting="same_kind"):
        ids = " (token ids, not embeddings or scaled values)" if dtype.kind in "iu" else ""
        raise ExportError(f"to_tflite: {argument} has dtype {inputs.dtype}, which does not "
                          f"cast to {dtype} without changing values{ids}; {fix}.")
    return inputs.astype(dtype)


def _random_check_inputs(model: keras.Model) -> np.ndarray:
    spec = model.inputs[0]
    return random_inputs(spec.shape[1:], spec.dtype.as_numpy_dtype, 8, vocab=vocabulary_size(model))
