"""Benchmarks taken the same way for every model: latency, throughput, size, memory, energy.

- :mod:`.timing`: warm-up, calibrated blocks, interleaved rounds, statistics;
- :mod:`.targets`: TensorFlow CPU/GPU and the LiteRT interpreter; :mod:`.android` a phone;
- :mod:`.artifacts`: Keras files, SavedModels, ``.tflite`` files (what a flatbuffer holds
  is :mod:`kerasprune.export.flatbuffer`); :mod:`.energy` energy per inference;
  :mod:`.footprint` bytes on disk and peak memory;
- :mod:`.compare`: several models side by side as ratios; :mod:`.summary` its Markdown table and plot.
"""
from ..export.flatbuffer import GraphStats, graph_stats
from .artifacts import Artifact, artifact
from .compare import bench, parse_targets
from .summary import markdown, write
from .targets import TFLiteTarget, TFTarget
from .timing import Latency

__all__ = ["Artifact", "GraphStats", "Latency", "TFLiteTarget", "TFTarget", "artifact", "bench",
           "graph_stats", "markdown", "parse_targets", "write"]
