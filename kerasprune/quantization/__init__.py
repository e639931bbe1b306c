"""Importance-based mixed 4/8-bit quantization and the prune + quantize pipeline (issue 14).

Empty until that issue lands: per-layer sensitivity, bit allocation, tfmot QAT at the
allocated widths, and INT4/INT8 TFLite checked with :mod:`kerasprune.export.flatbuffer`.
"""
