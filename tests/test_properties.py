"""The invariants, over inputs hypothesis draws (derandomized, so CI draws the same ones).

Exact per-layer sparsity, masks that only shrink under a pruning-only schedule, constant
nonzeros under regrowth, shrunk outputs equal to masked outputs, a quantized export that
refuses divergence and writes nothing, allocations within their byte and MACs budgets, and
a fuzz run over the experiment configs: any config is read or refused with a ConfigError.
"""
from __future__ import annotations

import copy
import functools
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kerasprune import prune, set_sparsity, structured, to_tflite
from kerasprune.agent import PruningEnvironment, Search
from kerasprune.backend import keras, tf
from kerasprune.errors import ConfigError, ExportError, KerasPruneError
from kerasprune.experiment.config import load_config
from kerasprune.quantization import LayerSensitivity, allocate
from kerasprune.sparsity.dynamic import _moved
from kerasprune.sparsity.prune import wrappers
from kerasprune.structured import PlanCost, analyze

EXPERIMENTS = Path(__file__).resolve().parent.parent / "experiments"
# models are built per example: few examples, no deadline; the same draws on every run
MODEL = settings(max_examples=12, deadline=None, derandomize=True, database=None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
PURE = settings(max_examples=200, deadline=None, derandomize=True, database=None)

widths = st.lists(st.integers(2, 12), min_size=1, max_size=3)


def _mlp(hidden: list[int], seed: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    layers = [keras.Input((6,))]
    layers += [keras.layers.Dense(w, activation="relu", name=f"fc{i}") for i, w in enumerate(hidden)]
    return keras.Sequential([*layers, keras.layers.Dense(3, name="logits")], name="mlp")


def _cnn(filters: list[int], seed: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    layers = [keras.Input((8, 8, 2))]
    layers += [keras.layers.Conv2D(f, 3, padding="same", activation="relu", name=f"conv{i}")
               for i, f in enumerate(filters[:2])]
    layers += [keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3, name="logits")]
    return keras.Sequential(layers, name="cnn")


def _masks(wrapper) -> list[np.ndarray]:
    return [np.asarray(m.numpy(), bool) for m in wrapper.masks]


@MODEL
@given(hidden=widths, sparsity=st.floats(0.0, 0.95))
def test_layer_scope_masks_hold_exactly_the_asked_share_of_every_layer(hidden, sparsity):
    model = prune(_mlp(hidden))
    set_sparsity(model, sparsity, scope="layer", min_density=0.0)
    for wrapper in wrappers(model):
        masks = _masks(wrapper)
        size = sum(m.size for m in masks)
        assert sum(int((~m).sum()) for m in masks) == int(round(sparsity * size)), wrapper.name


@MODEL
@given(hidden=widths, levels=st.lists(st.floats(0.0, 0.95), min_size=2, max_size=4).map(sorted),
       scope=st.sampled_from(["global", "layer"]), seed=st.integers(0, 3))
def test_masks_only_lose_weights_while_the_schedule_only_prunes(hidden, levels, scope, seed):
    model = prune(_mlp(hidden))
    rng = np.random.default_rng(seed)
    before = None
    for level in levels:
        for weight in (p.variable for w in wrappers(model) for p in w.prunable):  # training moves them
            weight.assign(weight.numpy() + rng.normal(0, 0.3, weight.shape).astype("float32"))
        set_sparsity(model, level, scope=scope)
        now = [m for w in wrappers(model) for m in _masks(w)]
        if before is not None:
            assert all(not (n & ~b).any() for n, b in zip(now, before))  # nothing comes back
        before = now


@PURE
@given(data=st.data(), size=st.integers(2, 200), seed=st.integers(0, 10 ** 6))
def test_regrowth_moves_weights_but_keeps_their_number(data, size, seed):
    rng = np.random.default_rng(seed)
    mask = rng.random(size) < data.draw(st.floats(0.05, 0.95))
    live = int(mask.sum())
    k = data.draw(st.integers(0, live))
    moved = _moved(mask, rng.standard_normal(size), rng.standard_normal(size), k, rng)
    assert moved.sum() == live
    assert (mask & ~moved).sum() <= k  # at most k dropped (a dropped one may grow back)


@PURE
@given(data=st.data(), rows=st.integers(1, 30), width=st.integers(1, 12), seed=st.integers(0, 10 ** 6))
def test_row_regrowth_keeps_every_rows_number_and_grows_each_rows_largest(data, rows, width, seed):
    rng = np.random.default_rng(seed)
    mask = rng.random((rows, width)) < data.draw(st.floats(0.05, 0.95))
    k = data.draw(st.integers(0, int(mask.sum())))
    grow = rng.standard_normal((rows, width)) * (rng.random((rows, 1)) < 0.7)  # some rows unreached
    moved = _moved(mask, rng.standard_normal((rows, width)), grow, k, rng, rows=True)
    assert moved.sum(axis=1).tolist() == mask.sum(axis=1).tolist()
    unreached = ~grow.any(axis=1)
    assert (moved[unreached] == mask[unreached]).all()  # nothing to judge them by: they stay
    for r in range(rows):  # nothing left dead in a row has a larger gradient than what grew there
        grown, dead = moved[r] & ~mask[r], ~moved[r]
        if grown.any() and dead.any():
            assert grow[r][grown].min() >= grow[r][dead].max()


@MODEL
@given(kind=st.sampled_from(["mlp", "cnn"]), sizes=widths, ratio=st.floats(0.0, 0.9),
       importance=st.sampled_from(["l1", "l2"]), seed=st.integers(0, 3))
def test_the_shrunk_model_computes_what_the_masked_model_computes(kind, sizes, ratio, importance, seed):
    model = (_mlp if kind == "mlp" else _cnn)(sizes, seed)
    plan = structured.plan_channels(model, ratio, importance=importance)
    x = np.random.default_rng(seed).standard_normal((4, *model.input_shape[1:])).astype("float32")
    small, masked = structured.shrink(model, plan), structured.mask(model, plan)
    np.testing.assert_allclose(small(x).numpy(), masked(x).numpy(), atol=1e-5)


@functools.lru_cache(maxsize=1)
def _quantized():
    """A model, inputs, and the top-1 agreement of its all-4-bit file with Keras."""
    model = _mlp([16, 16], seed=1)
    x = np.random.default_rng(1).standard_normal((64, 6)).astype("float32")
    bits = {name: 4 for name in ("fc0", "fc1", "logits")}
    agreement = to_tflite(model, None, mode="mixed", bits=bits, check_inputs=x, min_agreement=0.0).agreement
    return model, x, bits, agreement


@settings(max_examples=5, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(offset=st.floats(-0.3, 0.3))
def test_a_quantized_export_is_written_only_when_it_agrees_enough(offset, tmp_path):
    model, x, bits, agreement = _quantized()
    needed = float(np.clip(agreement + offset, 0.0, 1.0))
    path = tmp_path / f"m{len(list(tmp_path.iterdir()))}.tflite"  # one file per example
    if agreement >= needed:
        assert to_tflite(model, path, mode="mixed", bits=bits, check_inputs=x, min_agreement=needed).path == path
        assert path.is_file()
    else:
        with pytest.raises(ExportError, match="nothing was written"):
            to_tflite(model, path, mode="mixed", bits=bits, check_inputs=x, min_agreement=needed)
        assert not any(tmp_path.glob(f"{path.name}*"))  # nor a temporary


layers = st.lists(st.tuples(st.integers(1, 5000), st.floats(-1.0, 5.0), st.booleans()), min_size=1, max_size=8)


@PURE
@given(rows=layers, share=st.floats(0.0, 1.0))
def test_a_bit_allocation_never_exceeds_its_byte_budget(rows, share):
    table = [LayerSensitivity(f"l{i}", params, params + 4, (params if fixed else (params + 1) // 2) + 4,
                              fisher=abs(score)) for i, (params, score, fixed) in enumerate(rows)]
    largest, smallest = sum(r.bytes_8 for r in table), sum(r.bytes_4 for r in table)
    budget = max(1, int(smallest + share * (largest - smallest)))
    result = allocate(table, score="fisher", byte_budget=budget)
    assert result.weight_bytes <= budget
    assert result.weight_bytes == sum(r.bytes_4 if result.bits[r.layer] == 4 else r.bytes_8 for r in table)


@MODEL
@given(kind=st.sampled_from(["mlp", "cnn"]), sizes=widths, budget=st.floats(0.3, 1.0))
def test_a_macs_budget_is_never_exceeded_by_a_plan(kind, sizes, budget):
    model = (_mlp if kind == "mlp" else _cnn)(sizes)
    graph = analyze(model)
    cost = PlanCost(model, graph)
    try:
        plan = structured.plan_channels(model, macs=budget)
    except ConfigError as refused:  # too small for the budget: refused, not exceeded
        assert "raise the budget" in str(refused)
        return
    assert cost.fraction(plan) <= budget + 1e-9


@settings(max_examples=6, deadline=None, derandomize=True, database=None)
@given(sizes=widths, budget=st.floats(0.45, 0.95), top=st.sampled_from([0.6, 0.8, 0.9]), seed=st.integers(0, 9))
def test_every_plan_the_agent_tries_stays_within_its_budget(sizes, budget, top, seed):
    model = _mlp(sizes)
    rng = np.random.default_rng(seed)
    data = tf.data.Dataset.from_tensor_slices((rng.standard_normal((64, 6)).astype("float32"),
                                               rng.integers(0, 3, 64))).batch(32)
    try:
        env = PruningEnvironment(model, data, budget=budget, max_ratio=top, eval_batches=1,
                                 confirm_batches=1)
    except ConfigError as refused:  # the budget cannot be met: said before any episode
        assert "cannot be met" in str(refused)
        return
    result = Search(env, seed=seed, epsilon_episodes=4).run(4)  # a plan over the budget raises
    assert all(e["macs"] <= budget + 1e-9 for e in result.episodes)


def _configs() -> list[dict]:
    return [yaml.safe_load(p.read_text()) for p in sorted(EXPERIMENTS.glob("*.yaml"))]


def _paths(node, prefix=()):
    """Every key path into a config, with the node itself."""
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _paths(value, (*prefix, i))


junk = st.one_of(st.none(), st.booleans(), st.integers(-3, 10 ** 6), st.floats(allow_nan=True),
                 st.text(max_size=8), st.lists(st.integers(-2, 5), max_size=3),
                 st.dictionaries(st.text(max_size=5), st.integers(), max_size=2))


@settings(max_examples=150, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_a_fuzzed_config_is_read_or_refused_with_a_config_error(data, tmp_path):
    config = copy.deepcopy(data.draw(st.sampled_from(_configs())))
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(list(_paths(config))[1:]))
        parent = functools.reduce(lambda node, key: node[key], path[:-1], config)
        action = data.draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "delete":
            del parent[path[-1]]
        elif action == "add" and isinstance(parent, dict):
            parent[data.draw(st.text(min_size=1, max_size=6))] = data.draw(junk)
        else:
            parent[path[-1]] = data.draw(junk)
    target = tmp_path / "fuzzed.yaml"
    target.write_text(yaml.safe_dump(config))
    try:
        load_config(target)
    except KerasPruneError:
        pass  # refused, with a message naming the file (not a TypeError or a KeyError)
