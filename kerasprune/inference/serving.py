"""Serve a model that drops the units its traffic leaves quiet and takes them back.

:class:`AdaptiveInference` answers ``predict(batch)`` with the current serving model.
One batch in ``probe_every`` (the first, and every ``probe_every``-th after it) is a
probe: the full model answers it with the :class:`UsageMonitor`'s statistics from the
same call, so the monitor costs its overhead on that share of the batches only.  Once
some units score below ``prune_below`` (activity over their group's mean) they are
removed: the serving model becomes the original sliced by
:func:`kerasprune.structured.shrink` (or, with ``compact=False``, masked by
:func:`kerasprune.structured.mask`), built off the serving path and swapped in whole
between batches.  The probes keep the removed units' averages fresh too; a removed unit
that scores above ``reactivate_above`` comes back (the gap between the thresholds is the
hysteresis that keeps a unit on the edge from flapping).  The original model is never changed, so a unit
that returns has its exact weights, and with every unit back the serving model is the
original itself.
"""
from __future__ import annotations

import inspect
import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import files
from ..backend import keras, tf
from ..checks import number
from ..errors import ConfigError, FileError
from ..structured import Plan, mask, shrink
from .monitor import UsageMonitor, are_counts

EVENTS = ("prune", "reactivate", "swap", "error")  # error: a background build that raised
STATE_FORMAT = "kerasprune.inference/1"


@dataclass(frozen=True)
class Serving:
    """One immutable serving model: the removed channels it was built for, and its call."""

    version: int
    removed: frozenset[int]
    model: keras.Model
    call: Callable
    built_at_batch: int


@dataclass(frozen=True)
class Answer:
    """One batch's outputs and the model that computed them (``version`` None: a probe,
    answered by the full model)."""

    outputs: np.ndarray
    version: int | None
    removed: frozenset[int]


def compiled(model: keras.Model) -> Callable:
    """``model``'s inference as one graph function for any batch size (traced once)."""
    spec = tf.TensorSpec((None, *model.input_shape[1:]), model.input.dtype)

    def infer(x):
        return model(x, training=False)

    return tf.function(infer, input_signature=[spec])


class AdaptiveInference:
    """``model`` served with its quiet units removed while the traffic leaves them quiet.

    ``warmup`` batches are observed before the first decision, and then the thresholds are
    applied every ``decide_every`` observed batches (each change costs a rebuild).
    ``min_units`` units of each group always stay.  ``background=True`` builds new serving models on a worker thread
    (the current one keeps serving until the new one is ready); otherwise the batch that
    triggers a change waits for the build.  Hooks (:meth:`on`) receive a dict describing
    each prune, reactivate and swap event.
    """

    def __init__(self, model: keras.Model, *, prune_below: float = 0.05,
                 reactivate_above: float = 0.10, statistic: str = "mean", decay: float = 0.8,
                 probe_every: int = 8, decide_every: int = 4, warmup: int = 4, min_units: int = 1,
                 compact: bool = True, background: bool = False) -> None:
        settings = self.check_settings(
            prune_below=prune_below, reactivate_above=reactivate_above, statistic=statistic,
            decay=decay, probe_every=probe_every, decide_every=decide_every, warmup=warmup,
            min_units=min_units)
        self.prune_below, self.reactivate_above = settings["prune_below"], settings["reactivate_above"]
        self.probe_every, self.decide_every = settings["probe_every"], settings["decide_every"]
        self.warmup, self.min_units = settings["warmup"], settings["min_units"]
        self.compact = bool(compact)
        self.model = UsageMonitor.check_model(model, "AdaptiveInference")
        self.monitor = UsageMonitor(model, statistic=statistic, decay=decay)
        self._lock = threading.RLock()
        self._hooks: dict[str, list[Callable[[dict], None]]] = {e: [] for e in EVENTS}
        self._removed: frozenset[int] = frozenset()
        self._serving = Serving(0, frozenset(), model, compiled(model), 0)
        self._executor = ThreadPoolExecutor(1, "kerasprune-compact") if background else None
        self._building: Future | None = None
        self.batches = 0
        self.probes = 0
        self.events: list[dict] = []

    @classmethod
    def check_settings(cls, **settings) -> dict:
        """The settings (defaults filled in) checked without a model, so a config's servers
        are checked when it is read."""
        given = {name: p.default for name, p in inspect.signature(cls.__init__).parameters.items()
                 if p.default is not p.empty}
        given.update(settings)
        prune_below, reactivate_above = given["prune_below"], given["reactivate_above"]
        statistic, decay = given["statistic"], given["decay"]
        probe_every, decide_every = given["probe_every"], given["decide_every"]
        warmup, min_units = given["warmup"], given["min_units"]
        where = "AdaptiveInference"
        UsageMonitor.check_settings(statistic, decay, where)
        out = {"prune_below": number(prune_below, f"{where}: prune_below", low=0.0),
               "reactivate_above": number(reactivate_above, f"{where}: reactivate_above", low=0.0)}
        if not out["prune_below"] < out["reactivate_above"]:
            raise ConfigError(f"{where}: reactivate_above ({reactivate_above:g}) must be above "
                              f"prune_below ({prune_below:g}), or units on the edge would be "
                              "removed and restored on alternate batches.")
        for name, value in (("probe_every", probe_every), ("decide_every", decide_every),
                            ("warmup", warmup), ("min_units", min_units)):
            out[name] = number(value, f"{where}: {name}", low=1, integer=True)
        return out

    # -- serving ------------------------------------------------------------------------
    def predict(self, x) -> np.ndarray:
        """The model's outputs for one batch; safe to call from several threads."""
        return self.serve(x).outputs

    def serve(self, x) -> Answer:
        """:meth:`predict`, saying which model answered: the serving model (its version and
        removed channels) or, on a probe batch, the full model the monitor watches."""
        x = self._batch(x)
        with self._lock:
            self.batches += 1
            batch, serving = self.batches, self._serving
        if (batch - 1) % self.probe_every:  # not a probe: the serving model alone
            return Answer(serving.call(x).numpy(), serving.version, serving.removed)
        y, observed = self.monitor.probe(x)
        with self._lock:
            self.probes += 1
        self._decide(batch, observed)
        return Answer(y, None, frozenset())

    def _batch(self, x) -> tf.Tensor:
        expected = tuple(self.model.input_shape[1:])
        shape = tuple(np.shape(x))[1:]
        if len(shape) != len(expected) or any(e not in (None, s) for e, s in zip(expected, shape)):
            raise ConfigError(f"AdaptiveInference.predict: a batch of shape {tuple(np.shape(x))} "
                              f"does not fit model '{self.model.name}', which takes "
                              f"(batch, {', '.join(str(e) for e in expected)}); add the batch axis "
                              "for a single example.")
        return tf.cast(x, self.model.input.dtype)  # float64 arrays and tensors alike

    @property
    def serving(self) -> Serving:
        """The model answering requests now (replaced whole, never changed in place)."""
        return self._serving

    @property
    def removed(self) -> frozenset[int]:
        """The channel ids currently pruned (the serving model may still be catching up)."""
        return self._removed

    def on(self, event: str, hook: Callable[[dict], None]) -> Callable[[dict], None]:
        """Call ``hook(info)`` at every ``event`` (prune, reactivate, swap)."""
        if event not in EVENTS:
            raise ConfigError(f"AdaptiveInference.on: event must be one of {', '.join(EVENTS)}, "
                              f"got {event!r}.")
        self._hooks[event].append(hook)
        return hook

    def wait(self) -> None:
        """Block until a serving model being built in the background is swapped in."""
        while (future := self._building) is not None and not future.done():
            future.result()

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    def __enter__(self) -> "AdaptiveInference":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- decisions ----------------------------------------------------------------------
    def _decide(self, batch: int, observed: int) -> None:
        """Apply the thresholds if a decision is due at ``observed``, this probe's count (the
        monitor's may already include later probes of other threads)."""
        with self._lock:
            if observed < self.warmup or (observed - self.warmup) % self.decide_every:
                return
            scores = self.monitor.scores()
            removed = {i for i, s in scores.items() if s < self.prune_below and i not in self._removed}
            removed |= {i for i in self._removed if scores[i] <= self.reactivate_above}
            for ids in self.monitor.groups().values():
                short = self.min_units - sum(i not in removed for i in ids)
                if short > 0:  # the group's strongest removed units stay
                    removed -= set(sorted((i for i in ids if i in removed), key=lambda i: -scores[i])[:short])
            pruned, back = removed - self._removed, self._removed - removed
            if not pruned and not back:
                return
            self._removed = frozenset(removed)
        for event, ids in (("prune", pruned), ("reactivate", back)):
            if ids:
                self._fire(event, {"batch": batch, "units": self._by_group(ids),
                                   "removed": len(removed)})
        self._rebuild()

    def _by_group(self, ids) -> dict[str, int]:
        return {"+".join(key): n for key, members in self.monitor.groups().items()
                if (n := len(set(members) & set(ids)))}

    def _fire(self, event: str, info: dict) -> None:
        info = {"event": event, **info}
        with self._lock:
            self.events.append(info)
        for hook in list(self._hooks[event]):
            hook(info)

    def _rebuild(self) -> None:
        if self._executor is None:
            self._build()
        else:
            self._building = self._executor.submit(self._build)
            self._building.add_done_callback(self._failed)

    def _failed(self, build: Future) -> None:
        """A background build that raised is an event (the old model keeps serving)."""
        if not build.cancelled() and (error := build.exception()) is not None:
            self._fire("error", {"batch": self.batches, "error": f"{type(error).__name__}: {error}"})

    def _build(self) -> None:
        """Build and trace the model for the current removed set, then swap it in whole."""
        started = time.perf_counter()
        with self._lock:
            removed, batch = self._removed, self.batches
        if removed == self._serving.removed:
            return
        try:
            model = self.model
            if removed:
                cut = shrink if self.compact else mask
                model = cut(self.model, Plan(set(removed)), self.monitor.graph)
            call = compiled(model)
            call.get_concrete_function()  # traced here, off the serving path
        except Exception:
            with self._lock:  # what serves is what is reported; the next decision tries again
                if self._removed == removed:
                    self._removed = self._serving.removed
            raise
        with self._lock:
            if removed != self._removed:  # decided again meanwhile: the newer build swaps
                return
            self._serving = Serving(self._serving.version + 1, removed, model, call, batch)
            serving = self._serving
        self._fire("swap", {"batch": batch, "version": serving.version,
                            "params": int(model.count_params()), "removed": len(removed),
                            "build_ms": round(1e3 * (time.perf_counter() - started), 1)})

    # -- what is active -----------------------------------------------------------------
    def summary(self) -> dict:
        """Active units per group, the serving model's size and version, and counters."""
        serving, removed = self._serving, self._removed
        return {
            "batches": self.batches, "probes": self.probes, "version": serving.version,
            "params": int(serving.model.count_params()), "dense_params": int(self.model.count_params()),
            "active": {"+".join(key): f"{sum(i not in removed for i in ids)}/{len(ids)}"
                       for key, ids in self.monitor.groups().items()},
            "swap_pending": serving.removed != removed,
        }

    # -- state --------------------------------------------------------------------------
    def state(self) -> dict:
        with self._lock:
            return {"format": STATE_FORMAT, "model": self.model.name, "batches": self.batches,
                    "probes": self.probes, "removed": sorted(self._removed),
                    "monitor": self.monitor.state()}

    def save(self, path: str | Path) -> Path:
        """Write the masks and statistics (not the model) as JSON, atomically."""
        return files.write_json(path, self.state())

    def restore(self, path: str | Path) -> None:
        """Take the masks and statistics :meth:`save` wrote, and serve accordingly; a state
        that does not fit this model changes nothing."""
        where = f"AdaptiveInference.restore('{path}')"
        state = _read_state(path, where)
        removed = state["removed"]
        if state["model"] != self.model.name:
            raise ConfigError(f"{where}: saved for model '{state['model']}', this one is "
                              f"'{self.model.name}'.")
        unknown = set(removed) - set(self.monitor.channel_ids.tolist())
        if unknown:
            raise ConfigError(f"{where}: removed channels {sorted(unknown)[:5]} are not this "
                              "model's.")
        with self._lock:  # the monitor checks its part before taking it: all or nothing
            self.monitor.restore(state["monitor"], where)
            self._removed = frozenset(removed)
            self.batches, self.probes = state["batches"], state["probes"]
        self._build()


def _read_state(path: str | Path, where: str) -> dict:
    """The state :meth:`AdaptiveInference.save` wrote, with its counters and removed ids
    whole numbers, or a FileError saying what it is not."""
    try:
        state = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise FileError(f"{where}: no such file; save() writes it.") from None
    except (OSError, ValueError) as exc:
        raise FileError(f"{where}: not a saved state ({exc}).") from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise FileError(f"{where}: not a kerasprune inference state (format {STATE_FORMAT}).")
    missing = [key for key in ("model", "batches", "probes", "removed", "monitor") if key not in state]
    if missing:
        raise FileError(f"{where}: not a saved state (no {', '.join(missing)}).")
    removed = state["removed"]
    if not (are_counts(state["batches"], state["probes"]) and isinstance(removed, list)
            and are_counts(*removed)):
        raise FileError(f"{where}: not a saved state (batches, probes and the removed ids "
                        "must be whole numbers >= 0).")
    return state
