"""Importing kerasprune binds tf.keras to tf_keras, or says why it cannot."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from kerasprune.backend import keras, require_tf_keras_model, tf
from kerasprune.errors import ModelError


def test_tf_keras_is_bound_after_import():
    assert keras.__name__ == "tf_keras"
    assert tf.keras.__name__.startswith("tf_keras")


def test_import_after_keras3_was_bound_raises_import_error_with_fix():
    script = textwrap.dedent("""
        import os
        os.environ.pop("TF_USE_LEGACY_KERAS", None)
        import tensorflow as tf
        tf.keras.layers  # binds tf.keras to Keras 3
        try:
            import kerasprune
        except ImportError as exc:
            print("IMPORT-ERROR:", exc)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert "IMPORT-ERROR:" in out.stdout, out.stderr[-2000:]
    message = out.stdout.split("IMPORT-ERROR:", 1)[1]
    assert "already bound to Keras 3" in message
    assert "import kerasprune" in message  # says how to fix it


def test_keras3_model_is_rejected_with_a_specific_error():
    import keras as keras3

    model = keras3.Sequential([keras3.Input((3,)), keras3.layers.Dense(2)])
    with pytest.raises(ModelError, match="Keras 3 model.*tf_keras"):
        require_tf_keras_model(model, "prune")


def test_tf_keras_model_passes():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    assert require_tf_keras_model(model, "prune") is model
