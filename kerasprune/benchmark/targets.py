"""Where a model runs: TensorFlow on CPU or GPU, and the LiteRT interpreter (the mobile proxy).

A target turns an artifact into a timed block, or says in one line why it cannot run it
(no GPU, a ``.tflite`` file on a TensorFlow target, ...): unavailable is a result, not an
error.  :func:`~kerasprune.benchmark.compare.parse_targets` reads the names the CLI accepts.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

from .. import export
from ..backend import tf
from ..export.tflite import interpreter_and_runtime
from .artifacts import Artifact
from .timing import Block, loop

DEFAULT_THREADS = (1, 2, 4)


class Target(ABC):
    name: str

    def unavailable(self, artifact: Artifact, batch: int) -> str | None:
        """Why this target cannot run ``artifact`` at ``batch``; None when it can.

        Asked before the target's memory is measured: what is not loading the model (a
        TFLite conversion, to know whether there is a model to load) happens here.
        """
        return None

    @abstractmethod
    def block(self, artifact: Artifact, batch: int) -> Block:
        """Load ``artifact`` and return its timed block (one input batch, fixed)."""

    def runtime(self, artifact: Artifact) -> str | None:
        """What ran ``artifact``'s last block, where the target's name does not say it all."""
        return None


@dataclass
class TFTarget(Target):
    """TensorFlow eager runtime, the model traced once as a ``tf.function``."""

    device: str = "CPU"

    @property
    def name(self) -> str:
        return f"tf-{self.device.lower()}"

    def unavailable(self, artifact: Artifact, batch: int) -> str | None:
        if self.device == "GPU" and not tf.config.list_physical_devices("GPU"):
            return "TensorFlow sees no GPU on this machine"
        if artifact.kind == "tflite":
            return "a .tflite file runs on the tflite targets only"
        return None

    def block(self, artifact: Artifact, batch: int) -> Block:
        fn = artifact.tf_function()
        with tf.device(f"/{self.device}:0"):
            x = tf.constant(artifact.example(batch))

        def invoke():
            with tf.device(f"/{self.device}:0"):
                # .numpy() waits for the device, so asynchronous GPU work is counted
                return tf.nest.flatten(fn(x))[0].numpy()

        return loop(invoke)


@dataclass
class TFLiteTarget(Target):
    """The LiteRT interpreter at ``threads`` threads, with its default XNNPACK delegate, or
    TFLite's builtin kernels where XNNPACK refuses the model (:meth:`runtime` says which).

    ``sparse`` converts Keras and SavedModel inputs with the sparse-weight optimization
    (a ``.tflite`` file runs as it is).
    """

    threads: int = 1
    sparse: bool = False
    _runtimes: dict[str, str] = field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def name(self) -> str:
        return f"tflite{'-sparse' if self.sparse else ''}@{self.threads}"

    def unavailable(self, artifact: Artifact, batch: int) -> str | None:
        if self.sparse and artifact.kind == "tflite":  # its rows would time the same file again
            return ("a .tflite file runs as it was converted (the tflite rows time it); "
                    "tflite-sparse converts Keras and SavedModel inputs")
        if (reason := artifact.unconvertible(self.sparse)) is not None:
            return reason
        if batch > 1 and _static_batch(artifact.tflite(self.sparse)):
            return "the TFLite model has a fixed batch of 1 (recurrent models convert so)"
        return None

    def block(self, artifact: Artifact, batch: int) -> Block:
        interp, self._runtimes[artifact.name] = interpreter_and_runtime(
            artifact.tflite(self.sparse), num_threads=self.threads)
        detail = interp.get_input_details()[0]
        if int(detail["shape"][0]) != batch:
            interp.resize_tensor_input(detail["index"], [batch, *detail["shape"][1:]])
            interp.allocate_tensors()
        interp.set_tensor(detail["index"], artifact.example(batch).astype(detail["dtype"]))
        return loop(interp.invoke)

    def runtime(self, artifact: Artifact) -> str | None:
        return self._runtimes.get(artifact.name)


def _static_batch(content: bytes) -> bool:
    detail = export.interpreter(content).get_input_details()[0]
    signature = detail.get("shape_signature")
    return signature is None or len(signature) == 0 or int(signature[0]) != -1
