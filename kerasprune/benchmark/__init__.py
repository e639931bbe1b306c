"""Benchmarks taken the same way for every model: latency, throughput, size, memory, energy.

- :mod:`.timing`: warm-up, calibrated blocks, interleaved rounds, statistics;
- :mod:`.targets`: TensorFlow CPU/GPU and the LiteRT interpreter; :mod:`.android` a phone;
- :mod:`.artifacts`: Keras files, SavedModels, ``.tflite`` files (what a flatbuffer holds
  is :mod:`kerasprune.export.flatbuffer`); :mod:`.energy` energy per inference;
  :mod:`.footprint` bytes on disk and peak memory;
- :mod:`.compare`: several models side by side as ratios; :mod:`.report` Markdown and plot.
"""
from ..export.flatbuffer import GraphStats, graph_stats
from .artifacts import Artifact, load
from .compare import bench, parse_targets
from .report import markdown, write
from .targets import TFLiteTarget, TFTarget
from .timing import Latency

__all__ = ["Artifact", "GraphStats", "Latency", "TFLiteTarget", "TFTarget", "bench",
           "graph_stats", "load", "markdown", "parse_targets", "write"]
