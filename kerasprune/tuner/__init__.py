"""Keras Tuner searches over compression (issue 16): :mod:`.space` (the hyperparameters),
:mod:`.search` (:class:`CompressionTuner`, keras-tuner's ``BaseTuner`` with tf_keras trials
that compress, fine-tune, export and time, and the Pareto front), :mod:`.distributed`
(keras-tuner's chief/worker mode: its settings checked, workers that wait for the chief),
:mod:`.run` (``kerasprune tune``).

It sits with the harness: a trial uses the methods, the export and the benchmark.
Importing it imports keras-tuner, which imports Keras 3; ``tf.keras`` stays tf_keras.
"""
from .search import SCORE, SEARCHES, CompressionTuner
from .space import PRECISIONS, Compression, compression_space

__all__ = ["PRECISIONS", "SCORE", "SEARCHES", "Compression", "CompressionTuner", "compression_space"]
