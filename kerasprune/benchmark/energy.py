"""Energy per inference: estimated from MACs and memory traffic, measured where possible.

The estimate uses the per-operation energies of Horowitz, "Computing's energy problem
(and what we can do about it)", ISSCC 2014 (45 nm, 0.9 V), as tabulated by Han et al.,
"Learning both Weights and Connections for Efficient Neural Networks", NeurIPS 2015:

=====================  ========
operation              energy
=====================  ========
32-bit float multiply  3.7 pJ
32-bit float add       0.9 pJ
16-bit float multiply  1.1 pJ
16-bit float add       0.4 pJ
8-bit int multiply     0.2 pJ
8-bit int add          0.03 pJ
32-bit SRAM read       5 pJ
32-bit DRAM read       640 pJ
=====================  ========

Model: every effective MAC is one multiply and one add in the precision the kernels
compute in (for a ``.tflite`` file, :func:`estimate_tflite_uj`: float32 where a DEQUANTIZE
turns the stored weights to float before the op, as in fp16 files and ``mixed`` ones with
``compute="float"``; the weights' own type where integer kernels read them); every weight
byte the runtime reads is read once from DRAM (batch 1: weights are not reused across
examples), dense where it densifies sparse weights at load and float32 where it
dequantizes them at load (TFLite keeps a constant's DEQUANTIZE output); every activation byte read
or written goes through SRAM.  It is an order of magnitude for comparing models on the
same hardware, not a measurement: it ignores caches holding small models, instruction
overhead and idle power.  The table has no 4-bit entry: int4 weights that integer kernels
read (``compute="dynamic"``) are charged the int8 MAC, the width TFLite's kernels unpack
them to, and their stored bytes.

Measured power: RAPL package energy (``/sys/class/powercap/intel-rapl:*``) on Linux CPUs
that expose it, ``nvidia-smi`` power draw on NVIDIA GPUs.
"""
from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

from ..export.flatbuffer import GraphStats, WeightedOp, densified_bytes, weighted_ops

SOURCE = ("Horowitz, ISSCC 2014, 45 nm (as tabulated in Han et al., NeurIPS 2015): "
          "fp32 mult 3.7 pJ + add 0.9 pJ; fp16 mult 1.1 pJ + add 0.4 pJ; int8 mult 0.2 pJ + add 0.03 pJ; "
          "SRAM 5 pJ / 32 bit; DRAM 640 pJ / 32 bit")
PJ_PER_MAC = {"float32": 3.7 + 0.9, "float16": 1.1 + 0.4, "int8": 0.2 + 0.03, "int4": 0.2 + 0.03}
PJ_PER_SRAM_BYTE = 5.0 / 4
PJ_PER_DRAM_BYTE = 640.0 / 4


def estimate_uj(macs_effective: int, weight_bytes: int, activation_bytes: int,
                precision: str = "float32") -> dict:
    """Estimated microjoules per inference, split into compute and memory."""
    compute = macs_effective * PJ_PER_MAC[precision]
    dram = weight_bytes * PJ_PER_DRAM_BYTE
    sram = activation_bytes * PJ_PER_SRAM_BYTE
    return {"estimated_uj": round((compute + dram + sram) / 1e6, 3),
            "compute_uj": round(compute / 1e6, 3), "dram_uj": round(dram / 1e6, 3),
            "sram_uj": round(sram / 1e6, 3)}


def estimate_tflite_uj(content: bytes, graph: GraphStats) -> dict:
    """:func:`estimate_uj` of a flatbuffer as its runtime runs it (see the module's model):
    a weight DENSIFYed or DEQUANTIZEd at load is read at every inference as the runtime
    keeps it (dense; float32), not as the file stores it."""
    ops = weighted_ops(content)
    dequantized = {op.weight: 4 * op.params - op.bytes for op in ops if op.dequantized}  # each weight once
    return estimate_uj(graph.macs_effective,
                       graph.weight_bytes + densified_bytes(content) + sum(dequantized.values()),
                       graph.activation_bytes, compute_precision(ops))


def compute_precision(ops: list[WeightedOp]) -> str:
    """The precision the kernels holding most weights multiply in: a DEQUANTIZEd weight's op
    computes in float32, whatever the weight is stored as."""
    by_type: dict[str, int] = {}
    for op in ops:
        kind = "float32" if op.dequantized else op.type
        by_type[kind] = by_type.get(kind, 0) + op.params
    return max(by_type, key=by_type.get) if by_type else "float32"


class PowerMeter:
    """Energy used while a ``with`` block runs, from RAPL or nvidia-smi.

    ``joules`` stays None, and ``unavailable`` says why, where the machine exposes
    neither (containers and VMs usually hide RAPL).
    """

    RAPL = Path("/sys/class/powercap")

    def __init__(self, device: str = "cpu") -> None:
        self.device = device
        self.joules: float | None = None
        self.unavailable: str | None = None
        self._start = 0.0
        self._rapl: list[Path] = []
        self._before: list[int] = []

    def __enter__(self) -> PowerMeter:
        self._start = time.perf_counter()
        if self.device == "gpu":
            if shutil.which("nvidia-smi") is None:
                self.unavailable = "nvidia-smi is not on PATH"
            else:
                self._watts = [self._gpu_watts()]
            return self
        # packages only (intel-rapl:0), not their subzones (intel-rapl:0:0), counted inside them
        self._rapl = sorted(p for p in self.RAPL.glob("intel-rapl:*/energy_uj")
                            if p.parent.name.count(":") == 1)
        try:
            self._before = [int(p.read_text()) for p in self._rapl]
        except OSError as exc:
            self.unavailable = f"RAPL counters are not readable ({exc.strerror})"
            return self
        if not self._rapl:
            self.unavailable = "this machine exposes no RAPL counters (/sys/class/powercap)"
        return self

    def __exit__(self, *exc) -> None:
        if self.unavailable:
            return
        seconds = time.perf_counter() - self._start
        if self.device == "gpu":
            self._watts.append(self._gpu_watts())
            self.joules = sum(self._watts) / len(self._watts) * seconds
            return
        after = [int(p.read_text()) for p in self._rapl]
        self.joules = sum(max(0, a - b) for a, b in zip(after, self._before)) / 1e6

    @staticmethod
    def _gpu_watts() -> float:
        out = subprocess.run(["nvidia-smi", "--query-gpu=power.draw", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=10, check=False).stdout
        return sum(float(v) for v in out.split() if v.replace(".", "", 1).isdigit())
