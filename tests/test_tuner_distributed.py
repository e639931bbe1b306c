"""keras-tuner's distributed mode through ``kerasprune tune``: a chief and two workers on
loopback, each a fresh process running the same command."""
from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time

import pytest

from kerasprune import ConfigError

# the CLI under tfds' mock data (each process generates the same examples)
LAUNCH = r'''
import sys
import kerasprune.cli
import tensorflow_datasets as tfds
with tfds.testing.mock_data(num_examples=40):
    sys.exit(kerasprune.cli.main(sys.argv[1:]))
'''


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launcher(config, tmp_path, port: int):
    """Starts ``kerasprune tune`` as the chief or a worker (output to ``<id>.log``, appended:
    a full pipe would block it)."""
    def start(tuner_id: str) -> subprocess.Popen:
        env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "TF_USE_LEGACY_KERAS": "1",
               "KERASTUNER_TUNER_ID": tuner_id, "KERASTUNER_ORACLE_IP": "127.0.0.1",
               "KERASTUNER_ORACLE_PORT": str(port)}
        return subprocess.Popen([sys.executable, "-c", LAUNCH, "tune", str(config), "--out",
                                 str(tmp_path / "out"), "--data-dir", "/unused"], env=env,
                                stdout=(tmp_path / f"{tuner_id}.log").open("a"), stderr=subprocess.STDOUT)
    return start


def test_a_chief_and_two_workers_share_one_search_and_the_chief_exits_at_its_end(tmp_path):
    from test_experiment import _write_config
    from test_tuner import TUNE

    config = _write_config(tmp_path, "tunetest", TUNE.replace("max_trials: 2", "max_trials: 6"))

    start = _launcher(config, tmp_path, _free_port())
    workers = [start("worker0"), start("worker1")]  # started first: they wait for the chief
    chief = start("chief")
    codes = {name: proc.wait(timeout=900) for name, proc in
             [("chief", chief), ("worker0", workers[0]), ("worker1", workers[1])]}
    logs = {name: (tmp_path / f"{name}.log").read_text() for name in codes}
    assert codes == {"chief": 0, "worker0": 0, "worker1": 0}, {n: l[-3000:] for n, l in logs.items()}
    assert "waiting for the chief's oracle" in logs["worker0"]

    section = json.loads((tmp_path / "experiments" / "results" / "tunetest.tune.json").read_text())
    chief_trials = {t["trial"] for t in section["trials"]}
    assert len(chief_trials) == 6 and not section["failed_trials"]
    shares = {name: set(re.search(r"finished after trials (.*?); the chief", logs[name]).group(1).split(", "))
              for name in ("worker0", "worker1")}
    assert shares["worker0"] | shares["worker1"] == chief_trials
    assert not shares["worker0"] & shares["worker1"]  # no trial ran twice
    assert all(shares.values())  # both workers ran trials
    assert "dense" not in logs["worker0"] + logs["worker1"]  # only the chief trains the baseline


def test_distributed_settings_are_checked_and_a_worker_without_a_chief_stops_with_a_reason(monkeypatch, tmp_path):
    from kerasprune.tuner import distributed

    monkeypatch.setenv("KERASTUNER_TUNER_ID", "worker0")
    monkeypatch.setenv("KERASTUNER_ORACLE_IP", "127.0.0.1")
    with pytest.raises(ConfigError, match="KERASTUNER_ORACLE_PORT not set"):
        distributed.role()
    monkeypatch.setenv("KERASTUNER_ORACLE_PORT", "http")
    with pytest.raises(ConfigError, match="must be a port number"):
        distributed.role()
    monkeypatch.setenv("KERASTUNER_ORACLE_PORT", str(_free_port()))  # nobody listens there
    assert distributed.role() == "worker"
    said = []
    with pytest.raises(ConfigError, match="no chief answered at 127.0.0.1"):
        distributed.wait_for_chief(1.0, said.append, every=0.4)
    assert len(said) >= 2 and "still waiting" in said[-1]
    monkeypatch.setenv("KERASTUNER_TUNER_ID", "chief")
    assert distributed.role() == "chief"


def test_a_worker_that_finds_its_chief_gone_is_told_whether_the_search_had_ended(monkeypatch, tmp_path):
    import grpc

    from kerasprune import TrainingError
    from kerasprune.tuner import distributed

    for name, value in [("KERASTUNER_TUNER_ID", "worker1"), ("KERASTUNER_ORACLE_IP", "127.0.0.1"),
                        ("KERASTUNER_ORACLE_PORT", "8000")]:
        monkeypatch.setenv(name, value)

    class Gone(grpc.RpcError):
        def code(self):
            return grpc.StatusCode.UNAVAILABLE

    class LateWorker:  # what keras-tuner's worker meets when the chief has stopped serving
        tuner_id, project_dir = "worker1", str(tmp_path)
        oracle = type("Client", (), {"max_trials": 4})()

        def search(self):
            raise Gone()

    (tmp_path / "oracle.json").write_text(json.dumps({"end_order": ["0", "1"]}))
    with pytest.raises(TrainingError, match="lost the chief at 127.0.0.1:8000 with 2 of 4 trials ended"):
        distributed.search_as_worker(LateWorker(), print)
    (tmp_path / "oracle.json").write_text(json.dumps({"end_order": ["0", "1", "2", "3"]}))
    said = []
    distributed.search_as_worker(LateWorker(), said.append)
    assert said == ["tune: worker worker1: the chief had closed the search (4 trials ended)"]


def test_a_search_whose_chief_is_killed_resumes_when_it_restarts_and_keeps_the_trials_it_had(tmp_path):
    """keras-tuner issue 976 (fixed in 1.4.7): a restarted chief reloads its oracle; its
    worker waits for it, and the search ends with the trials of before the kill kept."""
    from test_experiment import _write_config
    from test_tuner import TUNE

    config = _write_config(tmp_path, "tunetest", TUNE.replace("max_trials: 2", "max_trials: 5"))
    start = _launcher(config, tmp_path, _free_port())
    state = tmp_path / "out" / "tunetest" / "cpu" / "tune" / "oracle.json"

    def ended() -> list[str]:
        try:
            return json.loads(state.read_text()).get("end_order", [])
        except (OSError, ValueError):  # not written yet
            return []

    worker, chief = start("worker0"), start("chief")
    deadline = time.monotonic() + 600
    while len(ended()) < 2:
        assert time.monotonic() < deadline and chief.poll() is None, (tmp_path / "chief.log").read_text()[-3000:]
        time.sleep(0.2)
    chief.kill()  # SIGKILL: no handler runs
    chief.wait()
    before = {t: json.loads((state.parent / f"trial_{t}" / "trial.json").read_text()) for t in ended()}
    time.sleep(3)
    assert worker.poll() is None  # the worker waits for its chief ...

    chief = start("chief")  # ... which reloads the search
    assert chief.wait(timeout=900) == 0 and worker.wait(timeout=300) == 0, \
        {n: (tmp_path / f"{n}.log").read_text()[-3000:] for n in ("chief", "worker0")}
    section = json.loads((tmp_path / "experiments" / "results" / "tunetest.tune.json").read_text())
    trials = {t["trial"]: t for t in section["trials"]}
    assert len(trials) == 5 and not section["failed_trials"]
    for trial_id, saved in before.items():  # the trials ended before the kill are kept, not run again
        assert trials[trial_id]["score"] == saved["score"]
    ran = re.search(r"finished after trials (.*?); the chief", (tmp_path / "worker0.log").read_text())
    assert sorted(ran.group(1).split(", ")) == sorted(trials)  # one worker ran each trial once
    assert "Reloading" in (tmp_path / "chief.log").read_text()
