"""Experiment configs: readable YAML, validated key by key before any training starts.

A config names a dataset, a model, the methods to compare and one section per budget
(``cpu`` runs on a 2-core machine, ``full`` is the plan's scale for a GPU).  List-valued
method parameters expand into one run per value::

    experiment: mnist_lenet5
    dataset: mnist
    model: lenet5
    seed: 0
    methods:
      - method: dense
      - method: tfmot_gmp
        sparsity: [0.8, 0.9]
    budgets:
      cpu:
        data: {batch_size: 128}
        train: {epochs: 12, learning_rate: 0.001}
        finetune: {epochs: 10, learning_rate: 0.0005}
        method_args: {tfmot_gmp: {frequency: 50}}   # per-budget method settings

A method entry may also train its own way (``learning_rate``, ``schedule``, ``batch_size``,
...; never its epochs) under a ``tag`` that names those runs: the peer's own tuning.
``exact_resume: true`` makes a killed run of a model with ``Dropout`` resume bit for bit
(:mod:`kerasprune.random_state`); its dropout draws another stream, so it is off by default
and the results saved without it stay valid.
"""
from __future__ import annotations

import dataclasses
import difflib
import itertools
import os
import re
from dataclasses import fields
from pathlib import Path
from typing import Any

import yaml

from .. import checks, data, models
from ..checks import flag, number
from ..errors import ConfigError
from .registry import METHODS
from . import quantize, traffic
from .spec import BASELINE, RUN_TRAINING_KEYS, Budget, ExperimentConfig, RunSpec, TrainSpec, phase_of


def _name_runs(runs: list[RunSpec]) -> list[RunSpec]:
    """Name each run by its method and tag, its sparsity and what varies between its siblings.

    Siblings are the runs of the same method and tag, so tagging a group of settings keeps
    the names of the untagged runs (and their saved results) as they were.
    """
    named = []
    for run in runs:
        siblings = [r for r in runs if (r.method, r.tag) == (run.method, run.tag)]
        settings = run.settings
        shown = [k for k in sorted(settings)
                 if k == "sparsity" or len({repr(r.settings.get(k)) for r in siblings}) > 1]
        parts = [f"{k}-{settings[k]}" for k in shown]
        head = f"{run.method}-{run.tag}" if run.tag else run.method
        named.append(dataclasses.replace(run, run_id="_".join([head, *parts])))
    return named


_TOP_KEYS = {"experiment", "description", "dataset", "model", "model_args", "seed", "methods", "budgets",
             "traffic", "tune", "exact_resume"}  # tune: read by `kerasprune tune` (kerasprune.tuner.run)
_BUDGET_KEYS = {"model", "model_args", "data", "train", "finetune", "method_args"}
_DATA_KEYS = {"batch_size", "eval_batch_size", "val_fraction", "max_train_examples",
              "seq_len", "vocab_size", "augment", "padding"}
_OPTIMIZERS = {"adam", "adamw", "sgd"}
_SCHEDULES = {"cosine", "constant"}


def load_config(path: str | os.PathLike, budget: str = "cpu") -> ExperimentConfig:
    """Read and validate ``path``, selecting ``budget``; errors name the file and the key."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"experiment config '{path}' does not exist (expected a YAML file).")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys such as 'experiment'.")
    where = str(path)
    _check_keys(raw, _TOP_KEYS, where)
    for key in ("experiment", "dataset", "model", "methods", "budgets"):
        if key not in raw:
            raise ConfigError(f"{where}: missing required key '{key}'.")

    budgets = _mapping(raw["budgets"], f"{where}: budgets")
    if budget not in budgets:
        raise ConfigError(
            f"{where}: no budget '{budget}'; this config defines {', '.join(sorted(budgets))}."
        )
    section = _mapping(budgets[budget] or {}, f"{where}: budgets.{budget}")
    _check_keys(section, _BUDGET_KEYS, f"{where}: budgets.{budget}")
    data_args = _mapping(section.get("data", {}), f"{where}: budgets.{budget}.data")
    _check_keys(data_args, _DATA_KEYS, f"{where}: budgets.{budget}.data")
    model_args = {**_mapping(raw.get("model_args", {}), f"{where}: model_args"),
                  **_mapping(section.get("model_args", {}), f"{where}: budgets.{budget}.model_args")}
    phases = f"{where}: budgets.{budget}"
    spec = Budget(
        name=budget,
        model=str(section.get("model", raw["model"])),
        model_args=model_args,
        data=data_args,
        train=_teacherless(_train_spec(section.get("train", {}), f"{phases}.train"), f"{phases}.train"),
        finetune=_train_spec(section.get("finetune", {}), f"{phases}.finetune"),
    )
    _check_model(spec, f"{where}: budgets.{budget}")
    _check_data(str(raw["dataset"]), data_args, f"{where}: budgets.{budget}.data")
    if "traffic" in raw:
        traffic.check(raw["traffic"], where)
    seed = checks.seed(raw.get("seed", 0), f"{where}: seed")
    return ExperimentConfig(
        name=str(raw["experiment"]),
        dataset=str(raw["dataset"]),
        seed=seed,
        budget=spec,
        runs=_expand_methods(raw["methods"], where,
                             _mapping(section.get("method_args", {}), f"{where}: budgets.{budget}.method_args"),
                             spec),
        path=path,
        description=str(raw.get("description", "")).strip(),
        raw=raw,
        exact_resume=flag(raw.get("exact_resume", False), f"{where}: exact_resume"),
    )


def _allowed(name: str) -> set[str]:
    """The keys a method's entry may set: its parameters, and for a method that starts from
    the baseline, its own training settings and a ``quantize`` block."""
    method = METHODS[name]
    own = {*RUN_TRAINING_KEYS, "quantize"} if method.from_baseline else set()
    return set(method.defaults) | own


def _expand_methods(methods: Any, where: str, budget_args: dict, budget: Budget) -> list[RunSpec]:
    """One run per method entry and value combination; a budget's ``method_args`` override."""

    if not isinstance(methods, list) or not methods:
        raise ConfigError(f"{where}: 'methods' must be a non-empty list of {{method: NAME, ...}}.")
    for name, args in budget_args.items():
        if name not in METHODS:
            raise ConfigError(f"{where}: method_args names unknown method {name!r}.")
        _check_entry(_mapping(args, f"{where}: method_args.{name}"), name, f"{where}: method_args.{name}")
    runs: list[RunSpec] = []
    for i, entry in enumerate(methods):
        here = f"{where}: methods[{i}]"
        entry = _mapping(entry, here)
        name = entry.get("method")
        if not isinstance(name, str) or name not in METHODS:
            raise ConfigError(f"{here}: unknown method {name!r}; known: {', '.join(sorted(METHODS))}.")
        method = METHODS[name]
        tag = _tag(entry.get("tag", ""), name, f"{here} ({name})")
        params = {k: v for k, v in entry.items() if k not in ("method", "tag")}
        _check_entry(params, name, f"{here} ({name})")
        both = sorted(set(params) & set(budget_args.get(name, {})))
        if both:  # one of the two would silently lose
            raise ConfigError(f"{here} ({name}) and the budget's method_args.{name} both set "
                              f"{', '.join(both)}; keep it in one place.")
        params.update(budget_args.get(name, {}))
        grid = {k: v if isinstance(v, list) else [v] for k, v in params.items()}
        empty = sorted(k for k, v in grid.items() if not v)
        if empty:  # the product would have no runs: the method would silently vanish
            raise ConfigError(f"{here} ({name}): {', '.join(empty)} lists no value; give at least one.")
        for values in itertools.product(*grid.values()):
            chosen = dict(zip(grid, values))
            phase = getattr(budget, phase_of(name, chosen))
            training = _run_training({k: chosen.pop(k) for k in RUN_TRAINING_KEYS if k in chosen},
                                     phase, f"{here} ({name})")
            if "quantize" in chosen:
                chosen["quantize"] = quantize.check(chosen["quantize"], f"{here} ({name})")
            method.validate(chosen, here, phase)
            runs.append(RunSpec(name, chosen, training=training, tag=tag))
    runs = _name_runs(runs)
    ids = [r.run_id for r in runs]
    duplicated = sorted({i for i in ids if ids.count(i) > 1})
    if duplicated:
        raise ConfigError(f"{where}: runs listed twice: {', '.join(duplicated)}.")
    # The dense baseline is what every other method starts from: it runs first, always.
    if BASELINE not in {r.method for r in runs}:
        runs.insert(0, RunSpec(BASELINE, {}, BASELINE))
    return sorted(runs, key=lambda r: r.method != BASELINE)


def _check_entry(entry: dict, name: str, where: str) -> None:
    if "epochs" in entry or "keep_best" in entry:
        raise ConfigError(f"{where}: a run cannot set its own epochs or keep_best: every method "
                          "trains for the budget's epochs by the same rule, so that they compare. "
                          "Change them in the budget's train/finetune section.")
    if name == BASELINE and set(entry) & set(RUN_TRAINING_KEYS):
        raise ConfigError(f"{where}: the baseline trains with the budget's train phase; set "
                          f"{', '.join(sorted(set(entry) & set(RUN_TRAINING_KEYS)))} there.")
    _check_keys(entry, _allowed(name), where)


def _tag(tag: Any, method: str, where: str) -> str:
    if tag and method == BASELINE:
        raise ConfigError(f"{where}: the baseline cannot be tagged: there is one, '{BASELINE}', "
                          "which every other run starts from. Drop the tag.")
    if not isinstance(tag, str) or (tag and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9.]*", tag)):
        raise ConfigError(f"{where}: tag must be letters, digits and dots (it names the runs' "
                          f"folders), got {tag!r}.")
    return tag


def _run_training(training: dict, phase: TrainSpec, where: str) -> dict:
    """A run's own training settings, checked to make a valid ``phase`` (the one the run
    trains in) and read as numbers where YAML left a string."""
    if "batch_size" in training:
        data.check_arguments(where, batch_size=training["batch_size"])
        training = {**training, "batch_size": int(training["batch_size"])}
    own = {k: v for k, v in training.items() if k != "batch_size"}
    spec = _train_spec({**dataclasses.asdict(phase), **own}, where)
    return {**training, **{k: getattr(spec, k) for k in own}}


def _check_model(budget: Budget, where: str) -> None:
    """The model exists and takes these arguments (before any data is loaded)."""
    try:
        models.check_arguments(budget.model, budget.model_args)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _check_data(dataset: str, args: dict, where: str) -> None:
    """The dataset is known and the loading arguments are of the right kind (before loading)."""
    try:
        data.spec(dataset)
        data.check_arguments(where, **args)
        data.check_padding(dataset, args.get("padding", "post"), where)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}" if not str(exc).startswith(where) else str(exc)) from None


def _teacherless(spec: TrainSpec, where: str) -> TrainSpec:
    """The budget's ``train`` phase trains the dense baseline, the teacher itself."""
    if spec.distill:
        raise ConfigError(f"{where}: distill learns from the trained dense baseline, which this phase "
                          "trains; set it under finetune (or on a run that starts from scratch).")
    return spec


def _train_spec(section: Any, where: str) -> TrainSpec:
    section = _mapping(section, where)
    allowed = {f.name for f in fields(TrainSpec)}
    _check_keys(section, allowed, where)
    for key in ("learning_rate", "weight_decay", "momentum", "clipnorm", "distill", "temperature"):
        if isinstance(section.get(key), str):  # YAML 1.1 reads 1e-3 as a string
            try:
                section = {**section, key: float(section[key])}
            except ValueError:
                raise ConfigError(f"{where}: {key} must be a number, got {section[key]!r}.") from None
    spec = TrainSpec(**section)
    if not isinstance(spec.epochs, int) or isinstance(spec.epochs, bool) or spec.epochs < 0:
        raise ConfigError(f"{where}: epochs must be a non-negative integer, got {spec.epochs!r}.")
    if not isinstance(spec.optimizer, str) or spec.optimizer not in _OPTIMIZERS:
        raise ConfigError(f"{where}: optimizer {spec.optimizer!r} is not one of {sorted(_OPTIMIZERS)}.")
    flag(spec.keep_best, f"{where}: keep_best")
    if not isinstance(spec.schedule, str) or spec.schedule not in _SCHEDULES:
        raise ConfigError(f"{where}: schedule {spec.schedule!r} is not one of {sorted(_SCHEDULES)}.")
    number(spec.learning_rate, f"{where}: learning_rate", low=0.0, low_open=True)
    number(spec.weight_decay, f"{where}: weight_decay", low=0.0)
    number(spec.momentum, f"{where}: momentum", low=0.0, high=1.0, high_open=True)
    number(spec.clipnorm, f"{where}: clipnorm", low=0.0)
    number(spec.distill, f"{where}: distill", low=0.0, high=1.0)
    number(spec.temperature, f"{where}: temperature", low=0.0, low_open=True)
    if spec.optimizer == "adam" and spec.weight_decay:
        raise ConfigError(f"{where}: adam does not use weight_decay; use optimizer: adamw (or sgd).")
    return spec


def _mapping(value: Any, where: str) -> dict:
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__} {value!r}.")
    return value


def _check_keys(section: dict, allowed: set[str], where: str) -> None:
    for key in section:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), sorted(allowed), n=1)
            hint = f" Did you mean '{close[0]}'?" if close else f" Allowed: {', '.join(sorted(allowed))}."
            raise ConfigError(f"{where}: unknown key '{key}'.{hint}")
