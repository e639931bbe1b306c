"""Traffic scenarios for the inference-time pruner: all traffic, narrowed, all again.

A config's ``traffic:`` block serves the trained dense baseline through
:class:`kerasprune.inference.AdaptiveInference` (one server per entry of ``servers``) on
the same seeded sequence of test batches: ``phases.all`` batches of every class, then
``phases.narrowed`` from the slice ``narrow`` picks (some labels, or a band of review
lengths), then ``phases.restored`` of all again.  Recorded per batch: accuracy, wall
time, active units, serving version; per phase: accuracy and F1 of what was served and
of the dense model on the same batches, CPU use, params.  The compacted model at the end
of the narrowed phase, the static baseline (structured pruning to the same widths, scored
by ``static`` on the narrowed traffic) and the dense model are then timed side by side
by :mod:`kerasprune.benchmark` on TF-CPU and LiteRT at batch 1, and the monitor's own
cost is timed against plain dense inference.
"""
from __future__ import annotations

import inspect
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .. import benchmark, checks, export, files, loading
from ..backend import keras, tf
from ..benchmark.artifacts import Artifact
from ..benchmark.timing import interleaved, loop
from ..checks import number
from ..data import Data, arrays
from ..errors import ConfigError
from ..importance import lookup
from ..inference import AdaptiveInference, UsageMonitor, compiled
from ..metrics import classification_scores, figures
from ..structured import plan_channels, shrink

from .spec import TRAFFIC_PHASES as PHASES
_KEYS = {"narrow", "batch_size", "phases", "servers", "static", "eval_examples", "bench_rounds"}
_SERVER_KEYS = set(inspect.signature(AdaptiveInference.__init__).parameters) - {"self", "model",
                                                                                 "background"}
_TOLERANCE = 0.005  # "recovered": within half a point of dense on all traffic


def check(block: Any, where: str) -> dict[str, Any]:
    """The ``traffic`` block with defaults, or a ConfigError naming the bad key."""
    where = f"{where}: traffic"
    checks.block(block, where, _KEYS, "{narrow: {labels: [0, 1]}, phases: {...}, servers: [...]}")
    spec = {"batch_size": 32, "static": "apoz", "eval_examples": 2000, "bench_rounds": 7, **block}
    narrow = spec.get("narrow")
    if not isinstance(narrow, dict) or len(narrow) != 1 or not set(narrow) <= {"labels", "length"}:
        raise ConfigError(f"{where}: narrow must be {{labels: [..]}} or {{length: [min, max]}} "
                          f"(tokens), got {narrow!r}.")
    value = next(iter(narrow.values()))
    if not isinstance(value, list) or not value or ("length" in narrow and len(value) != 2):
        raise ConfigError(f"{where}: narrow.{next(iter(narrow))} must be a non-empty list "
                          "(length: [min, max]).")
    if "length" in narrow:
        low, high = (number(v, f"{where}: narrow.length[{i}] (tokens)", low=0, integer=True)
                     for i, v in enumerate(value))
        if low > high:
            raise ConfigError(f"{where}: narrow.length must be [min, max] with min <= max, got "
                              f"{value}; swap them.")
    phases = spec.get("phases")
    if not isinstance(phases, dict) or set(phases) != set(PHASES):
        raise ConfigError(f"{where}: phases must give the batches of each of {', '.join(PHASES)}.")
    for name in PHASES:
        number(phases[name], f"{where}: phases.{name}", low=1, integer=True)
    for key in ("batch_size", "eval_examples"):
        number(spec[key], f"{where}: {key}", low=1, integer=True)
    number(spec["bench_rounds"], f"{where}: bench_rounds", low=2, integer=True)
    lookup(spec["static"], "channel", f"{where}: static")
    servers = spec.get("servers")
    if not isinstance(servers, list) or not servers:
        raise ConfigError(f"{where}: servers must list AdaptiveInference settings, each with a tag.")
    tags = [s.get("tag") if isinstance(s, dict) else None for s in servers]
    if any(not isinstance(t, str) or not t for t in tags) or len(set(tags)) != len(tags):
        raise ConfigError(f"{where}: every server needs its own tag, got {tags}.")
    for server in servers:
        bad = sorted(set(server) - _SERVER_KEYS - {"tag"})
        if bad:
            raise ConfigError(f"{where}: server '{server['tag']}': unknown setting(s) "
                              f"{', '.join(bad)}; AdaptiveInference takes {', '.join(sorted(_SERVER_KEYS))}.")
        try:
            AdaptiveInference.check_settings(**server)
        except ConfigError as exc:
            raise ConfigError(f"{where}: server '{server['tag']}': {exc}") from None
    return spec


def _narrowed(x: np.ndarray, y: np.ndarray, narrow: dict, batch_size: int, where: str) -> np.ndarray:
    if "labels" in narrow:
        keep = np.isin(y, narrow["labels"])
    else:
        if x.ndim != 2 or not np.issubdtype(x.dtype, np.integer):
            raise ConfigError(f"{where}: narrow.length needs token ids; use narrow.labels for images.")
        lengths = (x != 0).sum(axis=1)
        keep = (lengths >= narrow["length"][0]) & (lengths <= narrow["length"][1])
    if keep.sum() < batch_size:
        raise ConfigError(f"{where}: narrow {narrow} leaves {int(keep.sum())} test examples, fewer "
                          f"than a batch ({batch_size}); widen it.")
    return np.flatnonzero(keep)


def _rounded(y, predicted, classes=None) -> dict[str, float]:
    return {k: round(v, 4) for k, v in classification_scores(y, predicted, classes).items()}


def _scores(model: keras.Model, x: np.ndarray, y: np.ndarray, classes=None) -> dict[str, float]:
    return _rounded(y, model.predict(x, batch_size=512, verbose=0).argmax(-1), classes)


def run(results: dict, config, data: Data, baseline: Path, root: Path, log: Callable) -> dict:
    """Serve the scenario and time its models; the ``traffic`` section of the results."""
    spec = check(config.raw["traffic"], str(config.path))
    model = loading.load_model(baseline)
    x, y = arrays(data.test)
    narrow = _narrowed(x, y, spec["narrow"], spec["batch_size"], f"{config.path}: traffic")
    rng = np.random.default_rng(config.seed)
    pools = {"all": np.arange(len(y)), "narrowed": narrow, "restored": np.arange(len(y))}
    sequence = [(phase, rng.choice(pools[phase], spec["batch_size"]))
                for phase in PHASES for _ in range(spec["phases"][phase])]
    evals = {"narrowed": narrow[:spec["eval_examples"]],
             "all": rng.permutation(len(y))[:spec["eval_examples"]]}
    # F1 of narrowed traffic is over its own labels: a stray absent class is an error
    classes = {"narrowed": spec["narrow"].get("labels"), "all": None, "restored": None}
    dense_scores = {k: _scores(model, x[i], y[i], classes[k]) for k, i in evals.items()}
    dense_call = compiled(model)
    dense_answers = [dense_call(x[i]).numpy().argmax(-1) for _, i in sequence]
    section: dict[str, Any] = {"narrow": spec["narrow"], "phases": spec["phases"],
                               "batch_size": spec["batch_size"], "static": spec["static"],
                               "eval_examples": spec["eval_examples"],
                               "dense": {"scores": dense_scores, **figures(model)}, "servers": []}
    variants = {"dense": model}
    for setting in spec["servers"]:
        tag = setting["tag"]
        log(f"traffic: server '{tag}': {len(sequence)} batches of {spec['batch_size']}")
        record, compact = _serve(model, setting, sequence, x, y, dense_answers, evals, dense_scores,
                                 classes)
        static = _static(model, compact, x[narrow], y[narrow], spec["static"], spec["batch_size"])
        record["static_scores"] = {k: _scores(static, x[i], y[i], classes[k]) for k, i in evals.items()}
        record["static"] = figures(static)
        variants[f"compact-{tag}"], variants[f"static-{tag}"] = compact, static
        section["servers"].append(record)
    section["benchmark"] = _bench(variants, root, x[narrow[:32]], spec["bench_rounds"], log)
    section["monitor_overhead"] = _monitor_cost(model, x[narrow[:spec["batch_size"]]], spec)
    results["traffic"] = section
    return section


def _serve(model, setting, sequence, x, y, dense_answers, evals, dense_scores, classes):
    """One server through the whole sequence: the per-batch timeline and per-phase figures."""
    server = AdaptiveInference(model, **{k: v for k, v in setting.items() if k != "tag"})
    swaps = []
    builds = []
    server.on("swap", lambda info: (swaps.append((info["batch"], server.serving)),
                                    builds.append(info["build_ms"])))
    channels = len(server.monitor.channel_ids)
    timeline, phases, compact = [], {}, model
    for phase in PHASES:
        rows = [(i, idx) for i, (p, idx) in enumerate(sequence) if p == phase]
        wall, cpu = time.perf_counter(), time.process_time()
        served, truth = [], []
        for i, idx in rows:
            start = time.perf_counter()
            answer = server.predict(x[idx]).argmax(-1)
            timeline.append({"batch": i + 1, "phase": phase, "ms": round((time.perf_counter() - start) * 1e3, 3),
                             "accuracy": float(np.mean(answer == y[idx])),
                             "dense_accuracy": float(np.mean(dense_answers[i] == y[idx])),
                             "active": 1 - len(server.removed) / channels,
                             "version": server.serving.version})
            served.append(answer)
            truth.append(y[idx])
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        dense = np.concatenate([dense_answers[i] for i, _ in rows])
        phases[phase] = {
            "served": _rounded(np.concatenate(truth), np.concatenate(served), classes[phase]),
            "dense": _rounded(np.concatenate(truth), dense, classes[phase]),
            "ms_per_batch": round(float(np.median([t["ms"] for t in timeline[-len(rows):]])), 3),
            "cpu_cores_busy": round(cpu / wall, 2),
            "params_at_end": int(server.serving.model.count_params()),
            "active_at_end": server.summary()["active"],
        }
        if phase == "narrowed":
            compact = server.serving.model
    restart = next(i for i, (p, _) in enumerate(sequence) if p == "restored")
    record = {"tag": setting["tag"], "settings": setting, "probe_every": server.probe_every,
              "phases": phases, "timeline": timeline,
              "swaps": len(swaps), "events": len(server.events),
              "build_ms": round(float(np.mean(builds)), 1) if builds else None,
              "compact_scores": {k: _scores(compact, x[i], y[i], classes[k]) for k, i in evals.items()},
              "compact": figures(compact),
              "recovery": _recovery(swaps, restart, compact, x, y, evals["all"], dense_scores["all"])}
    return record, compact


def _recovery(swaps, restart: int, compact, x, y, pool, dense: dict) -> dict:
    """Batches after the shift back until the serving model is within half a point of dense."""
    candidates = [(restart, compact)] + [(b, s.model) for b, s in swaps if b > restart]
    for batch, served in candidates:
        accuracy = _scores(served, x[pool], y[pool])["accuracy"]
        if accuracy >= dense["accuracy"] - _TOLERANCE:
            return {"batches": batch - restart, "accuracy": accuracy}
    return {"batches": None, "accuracy": accuracy,
            "reason": f"no model served after the shift came within {_TOLERANCE * 100:g} points"}


def _width(layer) -> int | None:
    """Output channels of a Dense, recurrent, Bidirectional, convolution or Embedding layer."""
    if isinstance(layer, keras.layers.Bidirectional):
        return layer.forward_layer.units + layer.backward_layer.units
    return (getattr(layer, "units", None) or getattr(layer, "filters", None)
            or getattr(layer, "output_dim", None))


def _static(model, compact, x, y, importance: str, batch_size: int) -> keras.Model:
    """Structured pruning to ``compact``'s widths, scored once on the narrowed traffic."""
    ratio = {}
    for layer, small in zip(model.layers, compact.layers):
        units, small_units = _width(layer), _width(small)
        if units and small_units and small_units < units:
            ratio[layer.name] = (units - small_units + 0.5) / units
    if not ratio:
        return model
    narrowed = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size)
    plan = plan_channels(model, ratio, importance=importance, data=narrowed,
                         batches=max(1, len(y) // batch_size))
    return shrink(model, plan)


def _bench(variants: dict, root: Path, inputs: np.ndarray, rounds: int, log) -> dict:
    """Dense, compacted and static models at batch 1, TF-CPU and LiteRT, each target in one
    interleaved run with dense as the baseline of its ratios."""
    keras_files, tflite_files = [], []
    for name, m in variants.items():
        with files.atomic_path(root / "traffic" / f"{name}.keras") as tmp:
            m.save(tmp)
        tflite = export.to_tflite(m, root / "traffic" / f"{name}.tflite", check_inputs=inputs)
        keras_files.append(Artifact(name, root / "traffic" / f"{name}.keras", "keras"))
        tflite_files.append(Artifact(name, tflite.path, "tflite"))
    out: dict[str, dict] = {}
    for target, artifacts in (("tf-cpu", keras_files), ("tflite@1", tflite_files)):
        timed = benchmark.bench(artifacts, [target], throughput_batch=None, rounds=rounds,
                                progress=log, name="traffic")
        for row in timed["results"]:
            if row.get("latency"):
                out.setdefault(row["model"], {})[target] = {
                    "median_ms": round(row["latency"]["median_ms"], 4), "ratio": row.get("ratio")}
    return out


def _monitor_cost(model, batch: np.ndarray, spec: dict) -> dict:
    """Dense inference with the monitor's statistics against without, at the serving batch."""
    monitor = UsageMonitor(model)
    dense_call = compiled(model)
    tensor = tf.constant(batch)
    stats, medians = interleaved({"dense": loop(lambda: dense_call(tensor).numpy()),
                                  "monitored": loop(lambda: monitor(tensor))},
                                 rounds=spec["bench_rounds"])
    ratios = np.array(medians["monitored"]) / np.array(medians["dense"])
    return {"batch": len(batch), "dense_ms": round(stats["dense"].median_ms, 4),
            "monitored_ms": round(stats["monitored"].median_ms, 4),
            "overhead": round(float(np.median(ratios)) - 1, 4)}
