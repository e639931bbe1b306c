"""The methods an experiment compares, by name: how each one turns data into a model.

Every method but ``dense`` starts from the trained dense baseline and fine-tunes for the
budget's ``finetune`` phase, so all of them see the same data, epochs and seeds; the
pruning methods can instead prune while training from scratch (``start: scratch``) for
the baseline's own ``train`` phase.  The dynamic sparse methods (``static``, ``set``,
``rigl``) are sparse from their first step, so they always train from scratch for the
``train`` phase.  A method
returns a plain tf_keras model (wrappers stripped), which the runner measures and exports
the same way for all.  Later methods register here with :func:`register_method`.
"""
from __future__ import annotations

import inspect
from typing import Any, Callable

import tensorflow_model_optimization as tfmot

from ..agent import PruningEnvironment, RLPruning, Search
from ..backend import keras
from ..checks import flag, number
from ..errors import ConfigError
from ..importance import lookup
from ..metrics import count_macs, training_flops
from ..sparsity.callbacks import AdaptivePruning
from ..sparsity.dynamic import METHODS as DYNAMIC_METHODS
from ..sparsity.dynamic import DynamicSparsity
from ..sparsity.prune import prune, strip
from ..sparsity.schedules import FeedbackSchedule, higher_is_better
from ..structured import analyze, plan_channels, shrink
from . import training
from .registry import METHODS, Outcome, RunContext, register_method
from .spec import BASELINE, PEER, TrainSpec


def _check_start(p: dict[str, Any]) -> None:
    if p["start"] not in ("baseline", "scratch"):
        raise ConfigError(f"start must be 'baseline' or 'scratch', got {p['start']!r}.")


def _starting_point(ctx: RunContext, p: dict[str, Any]) -> tuple[keras.Model, str]:
    """A pruning run fine-tunes the trained baseline, or prunes while training from scratch.

    From scratch it trains for the ``train`` phase, the dense baseline's own epochs: the
    comparison for a dataset where epochs beyond the baseline's only overfit.
    """
    if p["start"] == "scratch":
        return ctx.build(), "train"
    return ctx.baseline(), "finetune"


def _check_gmp(p: dict[str, Any]) -> None:
    _check_start(p)
    number(p["initial_sparsity"], "initial_sparsity", low=0.0, high=p["sparsity"], high_open=True)
    begin = number(p["begin_fraction"], "begin_fraction", low=0.0, high=1.0, high_open=True)
    end = number(p["end_fraction"], "end_fraction", low=0.0, high=1.0, low_open=True)
    if not begin < end:
        raise ConfigError(f"need begin_fraction < end_fraction, got {begin:g} and {end:g}.")
    number(p["frequency"], "frequency", low=1, integer=True)


@register_method(BASELINE, from_baseline=False)
def dense(ctx: RunContext, params: dict[str, Any]) -> Outcome:
    """The baseline: train the architecture from scratch for the ``train`` phase."""
    model = ctx.build()
    history = ctx.train(model, "train")
    return Outcome(model, history, ctx.budget.train.epochs)


@register_method("dense_finetune")
def dense_finetune(ctx: RunContext, params: dict[str, Any]) -> Outcome:
    """The control: the baseline trained on for the ``finetune`` phase, nothing pruned.

    It separates what pruning costs from what the extra epochs cost (a model that
    overfits loses accuracy from fine-tuning alone).
    """
    model = ctx.baseline()
    history = ctx.train(model, "finetune")
    return Outcome(model, history, ctx.budget.finetune.epochs)


@register_method("quantized", required=("quantize",))
def quantized(ctx: RunContext, params: dict[str, Any]) -> Outcome:
    """The trained baseline as it is, for its ``quantize`` block: quantization alone."""
    return Outcome(ctx.baseline(), {}, 0)


@register_method(
    PEER,
    defaults={"sparsity": None, "initial_sparsity": 0.0, "begin_fraction": 0.0, "end_fraction": 0.7,
              "frequency": 100, "start": "baseline"},
    required=("sparsity",), check=_check_gmp,
)
def tfmot_gmp(ctx: RunContext, params: dict[str, Any]) -> Outcome:
    """tfmot's ``prune_low_magnitude`` with ``PolynomialDecay`` (Zhu & Gupta 2017): the peer.

    Sparsity rises from ``initial_sparsity`` to ``sparsity`` between ``begin_fraction``
    and ``end_fraction`` of the run's steps, then the masks stay fixed while it recovers.
    """
    p = {**METHODS[PEER].defaults, **params}
    model, phase = _starting_point(ctx, p)
    spec = getattr(ctx.budget, phase)
    total = training.steps_per_epoch(ctx.data) * spec.epochs
    begin = int(total * p["begin_fraction"])
    schedule = tfmot.sparsity.keras.PolynomialDecay(
        initial_sparsity=float(p["initial_sparsity"]), final_sparsity=float(p["sparsity"]),
        begin_step=begin, end_step=max(begin + 1, int(total * p["end_fraction"])),
        frequency=int(p["frequency"]),
    )
    pruned = tfmot.sparsity.keras.prune_low_magnitude(model, pruning_schedule=schedule)
    history = ctx.train(pruned, phase, callbacks=[tfmot.sparsity.keras.UpdatePruningStep()],
                        sparsity=float(p["sparsity"]))
    return Outcome(tfmot.sparsity.keras.strip_pruning(pruned), history, spec.epochs)


#: the settings an ``adaptive`` run takes, with the defaults of the class that owns them
_SCHEDULE_SETTINGS = ("initial", "step", "every", "tolerance", "recovery_epochs", "mode",
                      "finish_fraction")
_CALLBACK_SETTINGS = ("importance", "scope", "monitor", "monitor_mode", "min_density",
                      "normalize", "frequency", "ramp", "rewire")


def _defaults_of(owner: Callable, names: tuple[str, ...]) -> dict[str, Any]:
    """The default of each setting in ``names``, read from ``owner``'s signature."""
    parameters = inspect.signature(owner).parameters
    return {name: parameters[name].default for name in names}


def _adaptive_parts(p: dict[str, Any]):
    """The schedule and callback an ``adaptive`` run uses (also what validates its settings)."""
    _check_start(p)
    initial = number(p["initial"], "initial", low=0.0, high=1.0, low_open=True, high_open=True)
    schedule = FeedbackSchedule(
        initial=min(initial, p["sparsity"]), final=p["sparsity"], step=p["step"],
        every=p["every"], tolerance=p["tolerance"], recovery_epochs=p["recovery_epochs"],
        mode=p["mode"], finish_fraction=p["finish_fraction"],
        higher_is_better=higher_is_better(p["monitor"], p["monitor_mode"]),
    )
    return AdaptivePruning(schedule, importance=p["importance"], scope=p["scope"],
                           monitor=p["monitor"], min_density=p["min_density"],
                           normalize=p["normalize"], frequency=p["frequency"], ramp=p["ramp"],
                           rewire=p["rewire"])


@register_method(
    "adaptive",
    defaults={"sparsity": None, **_defaults_of(FeedbackSchedule, _SCHEDULE_SETTINGS),
              **_defaults_of(AdaptivePruning.__init__, _CALLBACK_SETTINGS), "start": "baseline"},
    required=("sparsity",), check=_adaptive_parts,
)
def adaptive(ctx: RunContext, params: dict[str, Any]) -> Outcome:
    """kerasprune's feedback-driven pruning: Taylor importance, stepped sparsity, rollback."""
    p = {**METHODS["adaptive"].defaults, **params}
    callback = _adaptive_parts(p)
    model, phase = _starting_point(ctx, p)
    pruned = prune(model, track_scores=p["importance"] == "taylor")
    history = ctx.train(pruned, phase, callbacks=[callback], sparsity=float(p["sparsity"]))
    return Outcome(strip(pruned), history, getattr(ctx.budget, phase).epochs,
                   extra={"decisions": callback.decisions})


def _check_structured(p: dict[str, Any]) -> None:

    ratios = p["ratio"].values() if isinstance(p["ratio"], dict) else [p["ratio"]]
    if any(not 0 <= float(r) < 1 for r in ratios):
        raise ConfigError(f"ratio must be in [0, 1) (or a dict of such by layer), got {p['ratio']}.")
    if p["macs"] is not None:
        number(p["macs"], "macs", low=0.0, high=1.0, low_open=True)
        if isinstance(p["ratio"], dict):
            raise ConfigError("macs sets one ratio for the budget; give it without a dict of ratios.")
    lookup(p["importance"], "channel")
    if p["scope"] not in ("layer", "global") or int(p["round_to"]) < 1 or int(p["batches"]) < 1:
        raise ConfigError("scope must be layer or global, round_to >= 1 and batches >= 1.")


@register_method(
    "structured",
    defaults={"ratio": 0.3, "importance": "l1", "scope": "layer", "round_to": 1,
              "head_ratio": None, "batches": 16, "macs": None},
    check=_check_structured,
)
def structured(ctx: RunContext, params: dict[str, Any]) -> Outcome:
    """Remove ``ratio`` of the channels, neurons and heads, then fine-tune the smaller model.

    With ``macs`` (a fraction of the dense MACs) the ratio is the least that meets it:
    the same ratio for every layer (``scope: layer``, uniform) or one global ranking.
    """
    p = {**METHODS["structured"].defaults, **params}
    model = ctx.baseline()
    graph = analyze(model)
    plan = plan_channels(model, p["ratio"], importance=p["importance"], data=ctx.data.train,
                         scope=p["scope"], round_to=int(p["round_to"]), head_ratio=p["head_ratio"],
                         graph=graph, batches=int(p["batches"]), macs=p["macs"])
    small = shrink(model, plan, graph)
    history = ctx.train(small, "finetune")
    return Outcome(small, history, ctx.budget.finetune.epochs,
                   extra={"widths": plan.summary(graph), "left_intact": graph.frozen})


#: the settings a dynamic sparse run takes from DynamicSparsity (its sparsity is the run's)
_DYNAMIC_SETTINGS = ("distribution", "drop_fraction", "update_every", "end_fraction", "min_density",
                     "max_density", "sparse_init", "gradient_batches", "per_row")


def _dynamic_parts(p: dict[str, Any], method: str, seed: int = 0) -> DynamicSparsity:
    """The callback a static/set/rigl run uses (also what validates its settings)."""
    number(p["epochs_factor"], "epochs_factor", low=1, integer=True)
    return DynamicSparsity(p["sparsity"], method=method, seed=seed, verbose=0,
                           **{k: p[k] for k in _DYNAMIC_SETTINGS})


def _register_dynamic(method: str) -> None:
    defaults = {"sparsity": None, **_defaults_of(DynamicSparsity.__init__, _DYNAMIC_SETTINGS),
                "epochs_factor": 1}

    def run(ctx: RunContext, params: dict[str, Any]) -> Outcome:
        p = {**defaults, **params}
        callback = _dynamic_parts(p, method, ctx.seed)
        pruned = prune(ctx.build(), track_scores=False, track_gradients=method == "rigl")
        epochs = ctx.budget.train.epochs * int(p["epochs_factor"])
        history = ctx.train(pruned, "train", callbacks=[callback], sparsity=float(p["sparsity"]),
                            epochs=epochs)
        model = strip(pruned)
        macs = count_macs(model)
        # every update of the run, those before a kill and resume included
        rigl_examples = (int(callback.state.updates) * callback.gradient_batches * ctx.data.batch_size
                         if method == "rigl" else 0)
        sparsity = history.get("sparsity", [])
        flops = training_flops(macs.dense, macs.effective, ctx.data.train_examples, sparsity,
                               start_sparsity=(sparsity or [0.0])[-1], dense_gradient_examples=rigl_examples)
        return Outcome(model, history, epochs, extra={"dst_updates": callback.updates, "train_flops": flops})

    run.__doc__ = (f"Dynamic sparse training, {method}: sparse from the first step at the run's "
                   "sparsity for the ``train`` phase (times ``epochs_factor``); see DynamicSparsity.")
    register_method(method, defaults=defaults, required=("sparsity",), from_baseline=False,
                    check=lambda p: _dynamic_parts(p, method))(run)


for _method in DYNAMIC_METHODS:
    _register_dynamic(_method)


#: the settings an ``rl`` run takes from RLPruning and its environment (its budget is ``macs``)
_RL_SETTINGS = ("intervals", "every", "episodes", "eval_batches")
_RL_CALLBACK = (*_RL_SETTINGS, "revise")
_RL_ENV = ("max_ratio", "macs_weight", "importance", "confirm_batches")  # actions: by max_ratio
_RL_SEARCH = ("start_rankings",)
_RL_DEFAULTS = {"macs": None, **_defaults_of(RLPruning.__init__, _RL_CALLBACK),
                **_defaults_of(PruningEnvironment.__init__, _RL_ENV),
                **_defaults_of(Search.__init__, _RL_SEARCH)}


def _check_rl(p: dict[str, Any], phase: TrainSpec | None = None) -> None:
    number(p["macs"], "macs", low=0.0, high=1.0, low_open=True)
    if phase is not None and phase.keep_best:
        raise ConfigError("rl cuts channels during the finetune phase, so keep_best could hand back "
                          "an epoch before the last cut; set keep_best: false for this budget's finetune.")
    if phase is not None and p["intervals"] * p["every"] > phase.epochs:
        raise ConfigError(f"rl acts at {p['intervals']} intervals of {p['every']} epochs, more than the "
                          f"finetune phase's {phase.epochs}; lower intervals or every.")
    for key in _RL_SETTINGS:
        number(p[key], key, low=1, integer=True)
    flag(p["revise"], "revise")
    flag(p["start_rankings"], "start_rankings")
    number(p["max_ratio"], "max_ratio", low=0.0, high=1.0, low_open=True, high_open=True)
    number(p["macs_weight"], "macs_weight", low=0.0)
    number(p["confirm_batches"], "confirm_batches", low=0, integer=True)
    lookup(p["importance"], "channel")


# revision 2: the DQN's target takes the next state's best action among those open there
# (a group may not go below what it already lost), not among all of them
@register_method("rl", defaults=_RL_DEFAULTS, required=("macs",), check=_check_rl, revision=2)
def rl(ctx: RunContext, params: dict[str, Any]) -> Outcome:
    """The RL agent (DQN) sets each group's ratio at intervals of the ``finetune`` phase,
    stepping to ``macs`` of the dense MACs (with ``revise``, at ``macs`` from the first
    interval, later ones revising the plan); the channels it cut are removed at the end."""
    p = {**_RL_DEFAULTS, **params}
    callback = RLPruning(ctx.data.val, budget=p["macs"], seed=ctx.seed, verbose=0,
                         state_path=ctx.run_dir / "backup" / "rl_agent.npz",
                         **{k: p[k] for k in (*_RL_CALLBACK, *_RL_ENV, *_RL_SEARCH)})
    pruned = prune(ctx.baseline(), track_scores=False)
    history = ctx.train(pruned, "finetune", callbacks=[callback])
    seconds = callback.fit_seconds  # over every process, if the run was resumed
    small = callback.shrink()
    return Outcome(small, history, ctx.budget.finetune.epochs, extra={
        "widths": callback.plan.summary(callback.search.env.graph), "rl_plans": callback.plans,
        "rl_episodes": callback.episode_log, "agent_seconds": round(callback.search_seconds, 2),
        "agent_share": round(callback.search_seconds / seconds, 4) if seconds else None})
