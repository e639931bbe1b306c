"""kerasprune: pruning and quantization for tf_keras models, on top of tfmot."""
from . import backend  # noqa: F401  (binds tf_keras before anything else touches TensorFlow)
