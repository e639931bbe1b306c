"""Importance-based mixed 4/8-bit quantization.

- :mod:`.grid`: which weights can be quantized and the values they take at 4 and 8 bits
  (the grid the TFLite export stores exactly);
- :mod:`.sensitivity`: what each layer costs at 4 bits (measured, or a Fisher estimate);
- :mod:`.allocation`: 8 or 4 bits per layer under a byte budget, a fraction kept at 8
  bits, or a loss tolerance;
- :mod:`.qat`: quantization-aware fine-tuning at those widths through tfmot's wrappers,
  pruned zeros kept, and :func:`.bake` to the plain model the export converts.

The file itself comes from :func:`kerasprune.export.to_tflite` (``mode="mixed"``).
"""
from .allocation import Allocation, allocate
from .grid import Quantizable, quantizable, quantize
from .qat import bake, quantize_aware
from .sensitivity import LayerSensitivity, measure

__all__ = ["Allocation", "LayerSensitivity", "Quantizable", "allocate", "bake", "measure",
           "quantizable", "quantize", "quantize_aware"]
