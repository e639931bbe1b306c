"""keras-tuner's own distributed mode: one chief serves the oracle, workers run the trials.

keras-tuner reads three variables: ``KERASTUNER_TUNER_ID`` (``chief`` for the chief, any
other name for a worker), ``KERASTUNER_ORACLE_IP`` and ``KERASTUNER_ORACLE_PORT`` (where
the chief listens, over gRPC).  ``BaseTuner`` does the rest: on the chief ``search()``
serves the oracle until every trial is done and every worker has been told to stop; on a
worker it asks the chief for trials.  What this module adds is what keras-tuner leaves
to its user: the variables checked with an error that says which one is wrong, a worker
that waits for its chief (which may still be training the baseline every trial starts
from) instead of failing or blocking in silence, and a chief that can be killed and
restarted while its workers wait.
"""
from __future__ import annotations

import json
import os
import time
from datetime import datetime
from pathlib import Path
from typing import Callable, Literal

from ..errors import ConfigError, TrainingError

ID, IP, PORT = "KERASTUNER_TUNER_ID", "KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT"
#: grpc's reconnect backoff grows to two minutes by default: a worker would notice its
#: chief (started late, or restarted) that late, and other workers could take every trial
RECONNECT = [("grpc.initial_reconnect_backoff_ms", 200), ("grpc.min_reconnect_backoff_ms", 200),
             ("grpc.max_reconnect_backoff_ms", 1000)]
Role = Literal["chief", "worker"]


def role() -> Role | None:
    """This process's part in a distributed search, or None for a search of its own."""
    given = {name: os.environ.get(name) for name in (ID, IP, PORT)}
    if not any(given.values()):
        return None
    missing = [name for name, value in given.items() if not value]
    if missing:
        raise ConfigError(
            f"distributed Keras Tuner: {', '.join(missing)} not set (set are: "
            f"{', '.join(n for n in given if given[n])}). Set all three on the chief and on every "
            f"worker: {ID}=chief or a worker's own name, {IP}=the chief's address, {PORT}=its port; "
            "or unset them all for a search in this process alone.")
    port = given[PORT]
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"distributed Keras Tuner: {PORT} must be a port number (1-65535), got {port!r}.")
    return "chief" if "chief" in given[ID] else "worker"


def address() -> str:
    return f"{os.environ[IP]}:{os.environ[PORT]}"


def wait_for_chief(timeout: float, log: Callable[[str], None] = print, every: float = 60.0) -> None:
    """Block until the chief's oracle answers, saying so every ``every`` seconds."""
    import grpc  # keras-tuner's own transport (grpcio, a dependency of the project)

    start = time.monotonic()
    log(f"tune: worker {os.environ[ID]} waiting for the chief's oracle at {address()}")
    with grpc.insecure_channel(address(), options=RECONNECT) as channel:
        ready = grpc.channel_ready_future(channel)
        while True:
            left = timeout - (time.monotonic() - start)
            if left <= 0:
                raise ConfigError(
                    f"tune: worker {os.environ[ID]}: no chief answered at {address()} within "
                    f"{timeout:g} s. Start the chief (same command with {ID}=chief) or check "
                    f"{IP} and {PORT}.")
            try:
                ready.result(timeout=min(every, left))
                return
            except grpc.FutureTimeoutError:
                log(f"tune: worker {os.environ[ID]} still waiting for {address()} "
                    f"({time.monotonic() - start:.0f} s)")


def outlive_the_chief(oracle) -> None:
    """Let a restarted chief take the end of a trial from the worker that ran it.

    A reloaded chief sends every trial that was running to its retry queue, as if its worker
    had died too; but the worker waited and reports the trial's end.  keras-tuner (1.4.8)
    then fails on the chief (a KeyError: ``Display`` has no start time or number for the
    trial, saved before they were set) and would run the trial again.  With this, the end
    is taken and the trial leaves the retry queue."""
    if not hasattr(oracle, "_retry_queue"):  # a worker's client
        return
    end = oracle.end_trial

    def end_trial(trial):
        if trial.trial_id in oracle._retry_queue:
            oracle._retry_queue.remove(trial.trial_id)
        display, now = oracle._display, datetime.now()
        display.trial_start.setdefault(trial.trial_id, now)
        display.trial_number.setdefault(trial.trial_id, len(oracle.trials))
        display.search_start = display.search_start or now
        return end(trial)

    oracle.end_trial = end_trial


def search_as_worker(tuner, log: Callable[[str], None] = print) -> None:
    """``tuner.search()`` on a worker, which outlives a chief that is killed and restarted.
    keras-tuner's chief stops serving once every worker it knows of has finished, so a
    worker that asks after that finds no chief: not an error when the chief's saved state
    holds all the trials, and a reason to restart otherwise."""
    import grpc

    # keras-tuner's client waits (up to an hour) for a chief that has gone, so a restarted
    # chief, which reloads its oracle, finds its workers still there: its channel gets the
    # short backoff too
    if hasattr(tuner.oracle, "stub"):
        tuner.oracle.stub = type(tuner.oracle.stub)(grpc.insecure_channel(address(), options=RECONNECT))
    try:
        tuner.search()
    except grpc.RpcError as exc:
        if exc.code() != grpc.StatusCode.UNAVAILABLE:
            raise
        state = Path(tuner.project_dir) / "oracle.json"
        ended = len(json.loads(state.read_text()).get("end_order", [])) if state.is_file() else 0
        limit = tuner.oracle.max_trials
        if limit is not None and ended >= limit:
            log(f"tune: worker {tuner.tuner_id}: the chief had closed the search ({ended} trials ended)")
            return
        raise TrainingError(
            f"tune: worker {tuner.tuner_id} lost the chief at {address()} with {ended} of {limit} "
            f"trials ended. Restart the chief (the same command with {ID}=chief; it reloads the "
            f"search from {tuner.project_dir}), then the workers.") from None


__all__ = ["ID", "IP", "PORT", "address", "outlive_the_chief", "role", "search_as_worker", "wait_for_chief"]
