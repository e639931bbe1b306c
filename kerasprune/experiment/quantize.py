"""A run's ``quantize`` block: what its model's weights become after the method has run.

Any method that starts from the baseline may end with one, so pruning and quantization
compose (structured 30% -> mixed 4/8 -> fine-tune; tfmot's GMP -> int8) and each result
is exported and measured like every other run::

    quantize: {mode: int8}                       # post-training, calibrated on train
    quantize: {mode: mixed, file_fraction: 0.1, epochs: 2}
    quantize: {mode: mixed, bits: 4}             # every layer at 4 bits
    quantize: {mode: tfmot_qat, epochs: 2}       # tfmot's prune-preserving 8-bit QAT
    quantize: {mode: mixed, bits: 4, names: false}  # the file without tensor names

``mixed`` measures each layer's 4-bit sensitivity on validation batches, allocates 4 or
8 bits per layer (by ``bits``, ``byte_budget``, ``file_fraction`` of the dense float file,
``eight_bit_fraction`` or ``tolerance``), fine-tunes ``epochs`` epochs quantization-aware
(0: post-training only) and exports INT4/INT8 weights.  The file must predict the class
Keras predicts on ``min_agreement`` of the check examples (0.95), or nothing is written.
"""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any

from .. import checks, export, files, loading, quantization
from ..checks import choice, flag, number
from ..errors import ConfigError, ModelError
from .registry import Outcome, RunContext

MODES = ("fp16", "dynamic", "int8", "mixed", "tfmot_qat")
_MIXED_CRITERIA = ("bits", "byte_budget", "file_fraction", "eight_bit_fraction", "tolerance")
_KEYS = {"mode", "epochs", "score", "compute", "batches", "min_agreement", "names", *_MIXED_CRITERIA}


def check(block: Any, where: str) -> dict[str, Any]:
    """The ``quantize`` block with its defaults, or a ConfigError saying what to change."""
    checks.block(block, f"{where}: quantize", _KEYS, "{mode: int8}")
    spec = {"mode": "mixed", "epochs": 0, "score": "quantization_loss", "compute": "float",
            "batches": 8, "min_agreement": 0.95, **block}
    number(spec["min_agreement"], f"{where}: quantize.min_agreement", low=0.0, high=1.0)
    flag(spec.get("names", True), f"{where}: quantize.names")  # no default: saved results stay valid
    choice(spec["mode"], f"{where}: quantize.mode", MODES)
    number(spec["epochs"], f"{where}: quantize.epochs", low=0, integer=True)
    number(spec["batches"], f"{where}: quantize.batches", low=1, integer=True)
    criteria = [k for k in _MIXED_CRITERIA if k in spec]
    if spec["mode"] == "tfmot_qat":
        if criteria:
            raise ConfigError(f"{where}: quantize.mode tfmot_qat is tfmot's 8-bit scheme for every "
                              f"layer; {', '.join(criteria)} belong to mode mixed.")
        return spec
    if spec["mode"] != "mixed":
        if criteria or spec["epochs"]:
            raise ConfigError(f"{where}: quantize.mode {spec['mode']} is post-training and the same "
                              f"for every layer; {', '.join(criteria) or 'epochs'} belong to mode mixed.")
        return spec
    if len(criteria) != 1:
        raise ConfigError(f"{where}: quantize (mixed) needs exactly one of {', '.join(_MIXED_CRITERIA)}, "
                          f"got {', '.join(criteria) or 'none'}.")
    if "bits" in spec and spec["bits"] not in (4, 8) and not isinstance(spec["bits"], dict):
        raise ConfigError(f"{where}: quantize.bits is 4, 8 or {{layer: 4 or 8}}, got {spec['bits']!r}.")
    if "file_fraction" in spec:
        number(spec["file_fraction"], f"{where}: quantize.file_fraction", low=0.0, high=1.0, low_open=True)
    if "byte_budget" in spec:
        number(spec["byte_budget"], f"{where}: quantize.byte_budget", low=1, integer=True)
    if "eight_bit_fraction" in spec:
        number(spec["eight_bit_fraction"], f"{where}: quantize.eight_bit_fraction", low=0.0, high=1.0)
    if "tolerance" in spec:
        number(spec["tolerance"], f"{where}: quantize.tolerance", low=0.0)
    choice(spec["compute"], f"{where}: quantize.compute", ("float", "dynamic"))
    choice(spec["score"], f"{where}: quantize.score", quantization.sensitivity.SCORES)
    return spec


#: where a run with a ``quantize`` block keeps its method's trained model and record until its
#: result is written: a run killed in its quantization phase goes on from there
METHOD_DONE = "method"


def after_method(ctx: RunContext, run_method: Callable[[], Outcome],
                 log: Callable[[str], None]) -> Outcome:
    """The method's outcome for the ``quantize`` block to start from: ``run_method()``,
    kept in ``run_dir/method``; or, when a killed run kept it, that one, so the method's
    epochs are not trained again before the quantization phase resumes.

    Its record is written after its model, so a kill between the two leaves nothing that
    loads.  A method that trained no epoch (``quantized``) is not kept: it costs nothing.
    Killed before the quantization phase's first epoch ended, the run starts that phase
    from the kept model but not from the random state the method left, so a model with
    Dropout may end on other weights than an unbroken run, even under ``exact_resume``.
    """
    kept = ctx.run_dir / METHOD_DONE
    if (kept / "outcome.json").is_file():
        record = json.loads((kept / "outcome.json").read_text())
        log(f"{ctx.label}: method phase done earlier ({record['epochs']} epochs), kept ({kept})")
        ctx.taught.extend(record["taught"])
        return Outcome(loading.load_model(kept / "model.keras", compile=True), record["history"],
                       record["epochs"], record["extra"])
    outcome = run_method()
    if outcome.epochs and outcome.export_model is None:
        with files.atomic_path(kept / "model.keras") as tmp:
            outcome.model.save(tmp)
        files.write_json(kept / "outcome.json", {"history": outcome.history, "epochs": outcome.epochs,
                                                 "extra": outcome.extra, "taught": ctx.taught})
    return outcome


def apply(ctx: RunContext, outcome: Outcome, block: dict[str, Any]) -> Outcome:
    """``outcome`` with its model quantized as ``block`` says, ready for the runner's export."""
    spec = check(block, ctx.label)
    if spec["mode"] == "tfmot_qat":
        return _tfmot_qat(ctx, outcome, spec)
    if spec["mode"] != "mixed":
        return dataclasses.replace(outcome, export={"mode": spec["mode"], **_checked_file(spec)})
    model = outcome.model
    table = quantization.measure(model, ctx.data.val, spec["batches"])
    bits, allocation = _bits(model, table, spec, ctx)
    history, epochs = outcome.history, outcome.epochs
    if spec["epochs"]:
        qat = quantization.quantize_aware(model, bits)
        history = _train_qat(ctx, qat, spec, history)
        model, epochs = quantization.bake(qat), epochs + int(spec["epochs"])
    extra = {**outcome.extra, "bits": bits, "allocation": allocation,
             "sensitivity": [row.as_dict() for row in table], "qat_epochs": int(spec["epochs"])}
    return Outcome(model, history, epochs, extra,
                   export={"mode": "mixed", "bits": bits, "compute": spec["compute"],
                           **_checked_file(spec)})


def _checked_file(spec: dict[str, Any]) -> dict[str, Any]:
    """How the file is checked and written, whatever the mode."""
    return {"min_agreement": spec["min_agreement"], "names": spec.get("names", True)}


def _train_qat(ctx: RunContext, qat, spec: dict[str, Any], history: dict) -> dict:
    """Fine-tune ``qat`` for the block's epochs in ``run_dir/qat`` (its own backup and
    history); the method's history with these epochs appended.  The model ends on this
    phase's kept epoch (or its last), so ``kept_epoch`` is that one, counted in the joined
    history: it is what the run is chosen on."""
    phase = dataclasses.replace(ctx.budget.finetune, epochs=int(spec["epochs"]))
    qat_ctx = dataclasses.replace(ctx, budget=dataclasses.replace(ctx.budget, finetune=phase),
                                  run_dir=ctx.run_dir / "qat", label=f"{ctx.label} qat")
    qat_ctx.run_dir.mkdir(parents=True, exist_ok=True)
    qat_history = qat_ctx.train(qat, "finetune")
    joined = {k: [*history.get(k, []), *v] for k, v in qat_history.items() if k != "kept_epoch"}
    if qat_history.get("kept_epoch"):
        joined["kept_epoch"] = [len(history.get("loss", [])) + int(qat_history["kept_epoch"][0])]
    return joined


def _tfmot_qat(ctx: RunContext, outcome: Outcome, spec: dict[str, Any]) -> Outcome:
    """The peer's own route: tfmot's prune-preserving 8-bit QAT, its converter's int8 file."""
    import tensorflow_model_optimization as tfmot

    Q = tfmot.quantization.keras
    try:
        qat = Q.quantize_apply(Q.quantize_annotate_model(outcome.model),
                               tfmot.experimental.combine.Default8BitPrunePreserveQuantizeScheme())
    except (RuntimeError, ValueError) as exc:  # tfmot names the layer it cannot quantize
        raise ModelError(f"{ctx.label}: tfmot's QAT cannot take this model: "
                         f"{str(exc).strip().splitlines()[0]}") from exc
    history = _train_qat(ctx, qat, spec, outcome.history) if spec["epochs"] else outcome.history
    return Outcome(quantization.qat.float_twin(qat, outcome.model), history,
                   outcome.epochs + int(spec["epochs"]),
                   {**outcome.extra, "qat_epochs": int(spec["epochs"])},
                   export={"mode": "int8", **_checked_file(spec)}, export_model=qat)


def _bits(model, table, spec: dict[str, Any], ctx: RunContext) -> tuple[dict[str, int], dict]:
    """Per-layer widths from the block's one criterion, and how they were chosen."""
    if "bits" in spec:
        bits = spec["bits"] if isinstance(spec["bits"], dict) else {r.layer: spec["bits"] for r in table}
        return quantization.qat.check_bits(model, bits, f"{ctx.label}: quantize.bits"), {"criterion": "bits"}
    kwargs = {k: spec[k] for k in ("byte_budget", "eight_bit_fraction", "tolerance") if k in spec}
    note = {}
    if "file_fraction" in spec:
        # a fraction of the dense baseline's float32 file, the model a user starts from; what
        # is not a quantizable weight (biases, the graph) stays as this model's float file has it
        inputs = ctx.data.sample_inputs(32)
        dense = export.to_tflite(ctx.baseline(), check_inputs=inputs).bytes
        other = export.to_tflite(model, check_inputs=inputs).bytes - 4 * sum(r.params for r in table)
        kwargs["byte_budget"] = max(1, int(dense * spec["file_fraction"]) - other)
        note = {"dense_fp32_bytes": dense, "other_bytes": other}
    chosen = quantization.allocate(table, score=spec["score"], **kwargs)
    return chosen.bits, {"criterion": chosen.criterion, "weight_bytes": chosen.weight_bytes,
                         "order": chosen.order, **kwargs, **note}
