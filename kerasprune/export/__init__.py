"""What leaves kerasprune: checked TFLite files, and what a flatbuffer holds.

- :mod:`.tflite`: conversion checked against Keras before anything is written, and the
  LiteRT interpreter every kerasprune runtime path uses;
- :mod:`.flatbuffer`: tensors, types, ops, bytes and MACs read from a ``.tflite`` file
  itself (the interpreter reports INT4 as int8; the flatbuffer does not).
"""
from .flatbuffer import GraphStats, WeightedOp, graph_stats, weighted_ops
from .tflite import TFLiteExport, interpreter, run_tflite, saved_model_to_tflite, to_tflite

__all__ = ["GraphStats", "TFLiteExport", "WeightedOp", "graph_stats", "interpreter", "run_tflite",
           "saved_model_to_tflite", "to_tflite", "weighted_ops"]
