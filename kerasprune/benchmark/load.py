"""The inference-time pruner under load: many threads, changing traffic, every answer checked.

:func:`serve_under_load` sends ``requests`` batches from ``threads`` client threads to an
:class:`~kerasprune.inference.AdaptiveInference`, the traffic moving to the next of
``phases`` every ``phase_every`` requests, so the server prunes, reactivates and swaps
while it answers.  Each answer names the model that computed it; afterwards it is compared
with that model's reference, the never-modified model masked to the same removed
channels: an answer from a half-built model, or from a model that is not the one it
names, is a mismatch; so is a request whose serving or checking raised, or a background
build that failed.  Resident memory is sampled after warm-up and at the end (a model kept
alive by every swap shows as growth; so do the checker's references, one masked model per
removed set seen); latency is per request, p50/p99/max.
"""
from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from ..backend import keras
from ..checks import number
from ..errors import ConfigError
from ..inference import AdaptiveInference
from ..structured import Plan, mask
from .footprint import current_rss_mb


@dataclass
class LoadReport:
    """What a load run saw; ``ok`` when nothing failed and every answer matched."""

    requests: int
    threads: int
    seconds: float
    errors: list[str] = field(default_factory=list)  # requests or checks that raised, builds that failed
    checked: int = 0  # answers compared with their reference
    mismatches: int = 0
    largest_difference: float = 0.0
    versions: int = 0  # serving models that answered
    swaps: int = 0
    prunes: int = 0
    reactivations: int = 0
    latency_ms: dict[str, float] = field(default_factory=dict)
    rss_after_warmup_mb: float = 0.0
    rss_end_mb: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.errors and not self.mismatches and self.checked == self.requests

    @property
    def rss_growth_mb(self) -> float:
        return self.rss_end_mb - self.rss_after_warmup_mb

    def as_dict(self) -> dict:
        return {**self.__dict__, "ok": self.ok, "rss_growth_mb": round(self.rss_growth_mb, 1)}


def serve_under_load(server: AdaptiveInference, phases: list[np.ndarray], *, requests: int = 100_000,
                     threads: int = 8, phase_every: int = 200, atol: float = 1e-5,
                     warmup_share: float = 0.1, progress=None) -> LoadReport:
    """Serve ``requests`` batches (request i is ``phases[(i // phase_every) % len(phases)]``)
    from ``threads`` threads and check every answer; see the module's docstring."""
    requests = number(requests, "serve_under_load(requests=)", low=1, integer=True)
    threads = number(threads, "serve_under_load(threads=)", low=1, integer=True)
    phase_every = number(phase_every, "serve_under_load(phase_every=)", low=1, integer=True)
    warmup_share = number(warmup_share, "serve_under_load(warmup_share=)", low=0.0, high=1.0, high_open=True)
    atol = number(atol, "serve_under_load(atol=)", low=0.0)
    phases = list(phases)
    if not phases:
        raise ConfigError("serve_under_load: phases must hold at least one batch of traffic.")
    counter, lock, building = itertools.count(), threading.Lock(), threading.Lock()
    latencies = np.full(requests, np.nan)
    errors: list[str] = []
    report = LoadReport(requests, threads, 0.0, errors)
    references: dict[tuple, np.ndarray] = {}
    warm_at, versions = min(int(warmup_share * requests), requests - 1), set()

    def reference(phase: int, removed: frozenset[int]) -> np.ndarray:
        """The never-modified model masked to ``removed``, on the phase's batch (kept)."""
        if (phase, removed) in references:
            return references[phase, removed]
        with building:  # a miss builds once; clients with answers already known go on
            if (phase, removed) not in references:
                model = mask(server.model, Plan(set(removed)), server.monitor.graph) if removed else server.model
                references[phase, removed] = model.predict(phases[phase], verbose=0)
            return references[phase, removed]

    def client() -> None:
        while True:
            with lock:
                i = next(counter)
            if i >= requests:
                return
            if i == warm_at:
                report.rss_after_warmup_mb = current_rss_mb()
            if progress and i and i % max(1, requests // 10) == 0:
                progress(f"serve_under_load: {i}/{requests} requests")
            phase = (i // phase_every) % len(phases)
            try:  # serving and checking alike: a client that raised is an error, not a pass
                began = time.perf_counter()
                answer = server.serve(phases[phase])
                latencies[i] = 1e3 * (time.perf_counter() - began)
                expected = reference(phase, answer.removed)
                if np.shape(answer.outputs) != np.shape(expected):
                    raise ValueError(f"outputs of shape {np.shape(answer.outputs)}, expected {np.shape(expected)}")
                difference = float(np.max(np.abs(answer.outputs - expected)))
            except Exception as error:  # noqa: BLE001  (reported: the run is not ok)
                with lock:
                    errors.append(f"request {i}: {type(error).__name__}: {error}")
                continue
            with lock:
                versions.add(answer.version)
                report.checked += 1
                report.largest_difference = max(report.largest_difference, difference)
                report.mismatches += not difference <= atol

    start = time.perf_counter()
    workers = [threading.Thread(target=client, name=f"client-{k}") for k in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    try:
        server.wait()
    except Exception as error:  # noqa: BLE001
        errors.append(f"the last background build: {type(error).__name__}: {error}")
    errors.extend(f"background build: {e['error']}" for e in server.events if e["event"] == "error")
    report.seconds, report.rss_end_mb = time.perf_counter() - start, current_rss_mb()
    served = latencies[np.isfinite(latencies)] if np.isfinite(latencies).any() else np.zeros(1)
    report.latency_ms = {q: round(float(np.percentile(served, p)), 3)
                         for q, p in (("p50", 50), ("p99", 99), ("max", 100))}
    report.versions = len(versions - {None})
    events = [e["event"] for e in server.events]
    report.swaps, report.prunes = events.count("swap"), events.count("prune")
    report.reactivations = events.count("reactivate")
    return report


def scenario(width: int = 256, batch: int = 8, seed: int = 0) -> tuple[keras.Model, list[np.ndarray]]:
    """A model whose hidden units the traffic switches on and off, and two phases of it.

    Hidden unit j is relu(x_j) (an identity kernel), so in the second phase, whose inputs
    are zero past ``width // 2``, half of the units fall silent; the first phase wakes them.
    """
    rng = np.random.default_rng(seed)
    inputs = keras.Input((width,))
    hidden = keras.layers.Dense(width, activation="relu", name="hidden")(inputs)
    outputs = keras.layers.Dense(10, activation="softmax", name="out")(hidden)
    model = keras.Model(inputs, outputs, name="load_net")
    model.get_layer("hidden").set_weights([np.eye(width, dtype="float32"), np.zeros(width, "float32")])
    model.get_layer("out").set_weights([rng.normal(0, 0.1, (width, 10)).astype("float32"),
                                        np.zeros(10, "float32")])
    busy = rng.uniform(0.5, 1.5, (batch, width)).astype("float32")
    narrow = busy.copy()
    narrow[:, width // 2:] = 0.0
    return model, [busy, narrow]
