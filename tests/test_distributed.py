"""Pruning under tf.distribute: the wrapper and the adaptive callback on two replicas.

Logical devices can only be set before TensorFlow starts, so the run is a fresh process.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

SCRIPT = r'''
import json
import kerasprune
import numpy as np
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from kerasprune import AdaptivePruning, FeedbackSchedule, prune
from kerasprune.backend import keras

strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
rng = np.random.default_rng(0)
x = rng.standard_normal((256, 20)).astype("float32")
data = tf.data.Dataset.from_tensor_slices((x, (x[:, 0] > 0).astype("int32"))).batch(64)
with strategy.scope():
    model = keras.Sequential([keras.Input((20,)), keras.layers.Dense(32, activation="relu", name="fc"),
                              keras.layers.Dense(2, activation="softmax", name="out")])
    pruned = prune(model, track_scores=True)
    pruned.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
callback = AdaptivePruning(FeedbackSchedule(initial=0.3, final=0.6, step=0.3, every=1, recovery_epochs=1),
                           monitor="accuracy")
pruned.fit(data, epochs=3, callbacks=[callback], verbose=0)
masks = {v.name: [t.numpy().tolist() for t in v.values] for v in pruned.variables
         if "mask" in v.name and "previous" not in v.name}
print("RESULT " + json.dumps({"replicas": strategy.num_replicas_in_sync, "masks": masks,
                              "kinds": sorted({type(v).__name__ for v in pruned.variables if "mask" in v.name}),
                              "last": callback.decisions[-1]}))
'''


def test_masks_stay_identical_on_every_replica_of_a_mirrored_strategy():
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=600,
                          env=env)
    lines = [l for l in done.stdout.splitlines() if l.startswith("RESULT ")]
    assert done.returncode == 0 and lines, done.stderr[-2000:]
    result = json.loads(lines[0].removeprefix("RESULT "))
    assert result["replicas"] == 2 and result["kinds"] == ["MirroredVariable"]
    assert result["last"]["sparsity"] == 0.6
    for name, copies in result["masks"].items():
        assert len(copies) == 2 and copies[0] == copies[1], name
    zeros = sum(1 - sum(map(sum, copies[0])) / sum(len(r) for r in copies[0])
                for name, copies in result["masks"].items() if "fc" in name)
    assert zeros > 0.3  # the masks did prune
