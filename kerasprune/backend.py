"""The one place that binds kerasprune to tf_keras (Keras 2).

tfmot refuses Keras 3 models, and TensorFlow resolves ``tf.keras`` lazily from the
``TF_USE_LEGACY_KERAS`` variable at first use.  The package's ``__init__`` sets the
variable (importing this module runs it first); this module imports TensorFlow and fails
loudly if the process already bound ``tf.keras`` to Keras 3.  Every other module imports
``tf`` and ``keras`` from here.
"""
from __future__ import annotations

import tensorflow as tf  # the package's __init__ has set TF_USE_LEGACY_KERAS

from .errors import ModelError

try:
    import tf_keras as keras
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise ImportError(
        "kerasprune needs the tf-keras package (Keras 2), which tfmot requires: "
        "pip install 'tf-keras==2.21.0'"
    ) from exc


_FIX = (
    "Import kerasprune (or set TF_USE_LEGACY_KERAS=1) before anything that touches "
    "tf.keras, e.g. put `import kerasprune` first in your script or notebook, and "
    "restart the Python process."
)


def _tf_keras_is_bound() -> bool:
    """Resolve ``tf.keras`` (forcing TensorFlow's lazy loader) and say if it is tf_keras."""
    return getattr(tf.keras, "__name__", "").startswith("tf_keras")


if not _tf_keras_is_bound():
    raise ImportError(
        "tf.keras in this process is already bound to Keras "
        f"{getattr(tf.keras, 'version', lambda: '3')()} (TensorFlow was imported and "
        "tf.keras used before TF_USE_LEGACY_KERAS=1 was set); kerasprune and tfmot need "
        f"tf_keras (Keras 2). {_FIX}"
    )


def require_tf_keras_model(model: object, where: str) -> "keras.Model":
    """Return ``model`` if it is a tf_keras model, else raise a ModelError saying why.

    A Keras 3 model (``import keras``) looks the same to a user but tfmot cannot wrap it.
    """
    if isinstance(model, keras.Model):
        return model
    module = type(model).__module__
    if module.startswith("keras"):
        raise ModelError(
            f"{where}: got a Keras 3 model ({type(model).__name__} from '{module}'); "
            "kerasprune works on tf_keras models. Build it with `from kerasprune.backend "
            "import keras` (or `import tf_keras as keras`) instead of `import keras`."
        )
    raise ModelError(f"{where}: expected a tf_keras Model, got {type(model).__name__}.")


def require_graph_model(model: object, where: str, needs: str) -> "keras.Model":
    """``model`` if it is a functional or Sequential tf_keras model, else a ModelError.

    Pruning, surgery and MAC counting read the layers and their connections, which a
    subclassed model does not expose; ``needs`` says what the caller wanted them for.
    """
    model = require_tf_keras_model(model, where)
    if not getattr(model, "_is_graph_network", False) and not isinstance(model, keras.Sequential):
        raise ModelError(f"{where}: model '{model.name}' is subclassed; {needs} needs a functional "
                         "or Sequential model whose layers and connections are known.")
    return model


__all__ = ["tf", "keras", "require_graph_model", "require_tf_keras_model"]
