"""Multi-worker training from ``TF_CONFIG``, checked before TensorFlow reads it.

TensorFlow answers a malformed ``TF_CONFIG`` with a bare JSON traceback, a ``KeyError``
deep in its cluster resolver, or, for a task index past the cluster, a worker that waits
for peers that never come.  :func:`cluster_spec` says which part is wrong and how it
should look; :func:`multi_worker_strategy` builds the strategy from a checked one.
"""
from __future__ import annotations

import json
import os

from .backend import tf
from .errors import ConfigError

_EXAMPLE = ('{"cluster": {"worker": ["host1:port", "host2:port"]}, '
            '"task": {"type": "worker", "index": 0}}')


def cluster_spec(text: str | None = None) -> dict | None:
    """The parsed ``TF_CONFIG`` (``text``, else the environment's), or None when unset."""
    text = os.environ.get("TF_CONFIG") if text is None else text
    if text is None or not text.strip():
        return None

    def wrong(why: str) -> ConfigError:
        return ConfigError(f"TF_CONFIG: {why}; it should look like {_EXAMPLE}.")

    try:
        config = json.loads(text)
    except json.JSONDecodeError as error:
        raise wrong(f"not JSON ({error.msg} at character {error.pos})") from None
    if not isinstance(config, dict) or not isinstance(config.get("cluster"), dict) or not config["cluster"]:
        raise wrong("needs a 'cluster' object naming each job's addresses")
    for job, addresses in config["cluster"].items():
        if not isinstance(addresses, list) or not addresses:
            raise wrong(f"cluster.{job} must be a non-empty list of 'host:port' addresses, "
                        f"got {addresses!r}")
        for address in addresses:
            host, _, port = str(address).rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise wrong(f"cluster.{job}: {address!r} is not a 'host:port' address")
        if len(set(addresses)) != len(addresses):
            raise wrong(f"cluster.{job} lists an address twice")
    task = config.get("task")
    if not isinstance(task, dict) or "type" not in task or "index" not in task:
        raise wrong("needs a 'task' object with this process's 'type' and 'index'")
    if not isinstance(task["type"], str) or task["type"] not in config["cluster"]:
        raise wrong(f"task.type {task['type']!r} is not a job of the cluster "
                    f"({', '.join(config['cluster'])})")
    index, size = task["index"], len(config["cluster"][task["type"]])
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < size:
        raise wrong(f"task.index must be a whole number from 0 to {size - 1} (the cluster has "
                    f"{size} {task['type']} address(es)), got {index!r}")
    return config


def multi_worker_strategy(**options) -> tf.distribute.MultiWorkerMirroredStrategy:
    """``tf.distribute.MultiWorkerMirroredStrategy`` over the checked ``TF_CONFIG``."""
    if cluster_spec() is None:
        raise ConfigError("multi_worker_strategy: TF_CONFIG is not set; set it on every worker, "
                          f"e.g. TF_CONFIG='{_EXAMPLE}', or use tf.distribute.MirroredStrategy "
                          "on one machine.")
    return tf.distribute.MultiWorkerMirroredStrategy(**options)
