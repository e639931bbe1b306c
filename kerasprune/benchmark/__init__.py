"""Benchmarks taken the same way for every model: latency, throughput, size, memory, energy.

- :mod:`.timing`: warm-up, calibrated blocks, interleaved rounds, statistics;
- :mod:`.targets`: TensorFlow CPU/GPU and the LiteRT interpreter; :mod:`.android` a phone;
- :mod:`.artifacts`: Keras files, SavedModels, ``.tflite`` files; :mod:`.graph` what a
  flatbuffer holds; :mod:`.energy` energy per inference;
- :mod:`.compare`: several models side by side as ratios; :mod:`.report` Markdown and plot.
"""
from .artifacts import Artifact, load
from .compare import bench
from .graph import GraphStats, graph_stats
from .report import markdown, write
from .targets import TFLiteTarget, TFTarget, parse_targets
from .timing import Latency

__all__ = ["Artifact", "GraphStats", "Latency", "TFLiteTarget", "TFTarget", "bench",
           "graph_stats", "load", "markdown", "parse_targets", "write"]
