"""What the dependency analysis couples and freezes, and how plans choose channels."""
from __future__ import annotations

import numpy as np
import pytest

from kerasprune import data as kdata
from kerasprune import metrics, models
from kerasprune.backend import keras, tf
from kerasprune.errors import ConfigError, ModelError
from kerasprune.structured import (
    analyze,
    channel_scores,
    make_plan,
    mask,
    plan_channels,
    shrink,
)

L = keras.layers


def test_resnet20_residual_streams_are_cut_together_and_half_the_filters_leave_a_quarter_of_the_macs():
    model = models.build("resnet20", input_shape=(32, 32, 3), num_classes=10)
    graph = analyze(model)
    groups = graph.groups()
    stream = next(k for k in groups if "stem_conv" in k)
    assert set(stream) == {"stem_conv", "stage1_block1_b_conv", "stage1_block2_b_conv",
                           "stage1_block3_b_conv"}
    assert len(groups) == 12 and graph.frozen == {"logits": "its softmax mixes its output channels"}
    small = shrink(model, plan_channels(model, 0.5, graph=graph), graph)
    assert metrics.count_macs(small).dense <= 0.30 * metrics.count_macs(model).dense
    assert small.get_layer("stage3_block3_a_conv").filters == 32


def test_layers_without_a_rule_are_reported_and_left_intact():
    model = models.build("transformer", input_shape=(16,), num_classes=2, vocab_size=50,
                         embed_dim=16, num_heads=2, ff_dim=24, num_layers=1)
    graph = analyze(model)
    assert "normalizes over its channels" in graph.frozen["block1_attention_norm"]
    assert "PositionEmbedding" in graph.frozen["positions"]
    assert graph.heads == {"block1_attention": 2}
    assert [k for k in graph.groups()] == [("block1_ff1",)]  # the residual stream stays whole
    small = shrink(model, plan_channels(model, 0.5, graph=graph), graph)
    assert small.get_layer("block1_attention")._num_heads == 1
    assert small.get_layer("embedding").output_dim == 16


def test_shared_and_subclassed_models_are_refused_by_name():
    shared = L.Dense(4, name="shared")
    inputs = keras.Input((4,))
    model = keras.Model(inputs, shared(shared(inputs)))
    with pytest.raises(ModelError, match="'shared' is called more than once"):
        analyze(model)

    class Sub(keras.Model):
        def call(self, x):
            return x

    with pytest.raises(ModelError, match="subclassed"):
        analyze(Sub())


def _mlp():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6,))
    x = L.Dense(10, activation="relu", name="a")(inputs)
    x = L.Dense(20, activation="relu", name="b")(x)
    return keras.Model(inputs, L.Dense(3, activation="softmax", name="out")(x))


def test_ratios_by_layer_name_global_ranking_and_round_to():
    model = _mlp()
    graph = analyze(model)
    scores = channel_scores(graph, "l1")
    by_name = make_plan(graph, scores, {"b": 0.5}, head_scores={})
    assert by_name.summary(graph) == {"a": "10/10", "b": "10/20"}
    rounded = make_plan(graph, scores, 0.3, round_to=4, head_scores={})
    assert rounded.summary(graph) == {"a": "8/10", "b": "16/20"}  # 7 -> 8, 14 -> 16
    everywhere = make_plan(graph, scores, 0.5, scope="global", head_scores={})
    assert len(everywhere.removed) == 15
    # the lowest L1 channels of each layer go first
    b = [g for g in graph.channels if "b" in g.sources]
    lowest = min(b, key=lambda g: scores[g.id])
    assert lowest.id in make_plan(graph, scores, {"b": 0.05}, head_scores={}).removed


def test_bad_plans_are_refused_with_the_choices():
    model = _mlp()
    graph = analyze(model)
    scores = channel_scores(graph, "l1")
    with pytest.raises(ConfigError, match="no removable channels; choose from a, b"):
        make_plan(graph, scores, {"out": 0.5}, head_scores={})
    with pytest.raises(ConfigError, match=r"ratio must be a number in \[0, 1\)"):
        make_plan(graph, scores, 1.0, head_scores={})
    with pytest.raises(ConfigError, match="needs data"):
        channel_scores(graph, "activation_taylor")
    with pytest.raises(ConfigError, match=r"'taylor' scores weights \(unstructured pruning\); "
                                          "structured pruning takes l1, l2, activation_taylor"):
        channel_scores(graph, "taylor")
    with pytest.raises(ConfigError, match="unknown importance 'random'"):
        channel_scores(graph, "random")


def test_data_scores_rank_a_dead_channel_last():
    model = _mlp()
    b = model.get_layer("b")
    kernel, bias = b.get_weights()
    kernel[:, 7], bias[7] = 0.0, -1.0  # channel 7 of b never fires
    b.set_weights([kernel, bias])
    x = np.random.default_rng(0).standard_normal((64, 6)).astype("float32")
    ds = tf.data.Dataset.from_tensor_slices((x, np.arange(64) % 3)).batch(16)
    graph = analyze(model)
    dead = next(g.id for g in graph.channels if g.sources.get("b") == 7)
    for method in ("activation_taylor", "mean_activation", "apoz"):
        scores = channel_scores(graph, method, ds)
        assert scores[dead] == min(scores.values()) == 0.0, method


@pytest.mark.parametrize("method", ["mean_activation", "apoz"])
def test_padding_the_keras_mask_hides_changes_no_activation_score(method):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((None,), dtype="int32")
    x = keras.layers.Embedding(20, 4, mask_zero=True, name="emb")(inputs)
    x = keras.layers.LSTM(5, return_sequences=True, name="lstm")(x)
    outputs = keras.layers.Dense(2)(keras.layers.GlobalAveragePooling1D()(x))
    model = keras.Model(inputs, outputs)
    table = model.get_layer("emb").get_weights()[0]
    table[0] = 0.0  # the padding row: unmasked, it would read as silent units
    model.get_layer("emb").set_weights([table])
    graph = analyze(model)
    tokens = np.random.default_rng(0).integers(1, 20, (8, 5))
    scores = [channel_scores(graph, method, tf.data.Dataset.from_tensor_slices((x, np.zeros(8, int))).batch(8))
              for x in (tokens, np.pad(tokens, ((0, 0), (0, 15))))]  # three times as much padding as text
    np.testing.assert_allclose([scores[1][i] for i in sorted(scores[0])],
                               [scores[0][i] for i in sorted(scores[0])], rtol=1e-5)


def test_text_cnn_embedding_and_filters_shrink(mock_tfds):
    data = kdata.load("sst2", seq_len=12, vocab_size=200, batch_size=8)
    model = models.build_for(data, "textcnn", filters=8)
    small = shrink(model, plan_channels(model, 0.3, importance="apoz", data=data.val))
    assert small.get_layer("embedding").output_dim == 90  # 128 -> 90
    assert small.get_layer("conv3").filters == 6
    assert small.predict(data.val, verbose=0).shape[1] == 2  # ready to fine-tune and export


@pytest.mark.parametrize("build, layer, reason", [
    (lambda x: L.Conv2DTranspose(4, 3, name="up")(L.Conv2D(4, 3, name="c")(x)), "up", "transposed"),
    (lambda x: L.Multiply(name="gate")([L.Conv2D(1, 1, name="g")(x), L.Conv2D(4, 1, name="c")(x)]),
     "gate", "broadcasting"),
    # layers with a weight rule that refuses their layout: the rule must not run on them later
    (lambda x: L.Conv2D(4, 3, groups=2, name="g")(L.Conv2D(4, 3, name="c")(x)), "g", "grouped"),
    (lambda x: L.DepthwiseConv2D(3, depth_multiplier=2, name="dw")(L.Conv2D(4, 3, name="c")(x)),
     "dw", "depth_multiplier > 1"),
    (lambda x: L.SeparableConv2D(4, 3, depth_multiplier=2, name="sep")(L.Conv2D(4, 3, name="c")(x)),
     "sep", "depth_multiplier > 1"),
    (lambda x: L.BatchNormalization(axis=1, name="bn")(L.Conv2D(4, 3, name="c")(x)), "bn", "not the channel axis"),
])
def test_layers_that_would_be_cut_wrongly_are_left_intact(build, layer, reason):
    from kerasprune.structured.cost import PlanCost

    inputs = keras.Input((8, 8, 3))
    x = build(inputs)
    x = L.Conv2D(5, 1, name="after")(x)
    model = keras.Model(inputs, L.Dense(2)(L.Flatten()(x)))
    graph = analyze(model)
    assert reason in graph.frozen[layer]
    plan = plan_channels(model, 0.5, graph=graph)
    small = shrink(model, plan, graph)  # still consistent
    x = np.random.default_rng(0).standard_normal((2, 8, 8, 3)).astype("float32")
    np.testing.assert_allclose(small.predict(x, verbose=0), mask(model, plan, graph).predict(x, verbose=0),
                               atol=1e-5)
    assert PlanCost(model, graph)(plan) == metrics.count_macs(small).dense


def test_attention_with_a_separate_key_and_bad_head_ratios_are_reported():
    q, kv = keras.Input((4, 6)), keras.Input((5, 6))
    out = L.MultiHeadAttention(2, 3, name="mha")(q, kv, key=kv)
    graph = analyze(keras.Model([q, kv], L.Dense(2)(L.GlobalAveragePooling1D()(out))))
    assert "separate key" in graph.frozen["mha"]
    model = _mlp()
    with pytest.raises(ConfigError, match="must be a number in"):
        make_plan(analyze(model), channel_scores(analyze(model), "l1"), 0.3, head_ratio=-0.5,
                  head_scores={})


class _Gain(keras.layers.Layer):
    """A user's layer that scales each channel by itself: channels pass straight through."""

    def call(self, x):
        return 2.0 * x


def test_a_custom_layer_gets_a_channel_rule_through_the_public_registry():
    from kerasprune.structured import Rule, passthrough, register_rule
    from kerasprune.structured.rules import RULES

    inputs = keras.Input((6,))
    x = keras.layers.Dense(8, activation="relu", name="a")(inputs)
    x = _Gain(name="gain")(x)
    model = keras.Model(inputs, keras.layers.Dense(3, name="out")(x))
    before = analyze(model)
    assert "register_rule" in before.frozen["gain"] and "a" not in {n for k in before.groups() for n in k}
    register_rule(_Gain, rule=Rule(passthrough))
    try:
        after = analyze(model)
        assert "gain" not in after.frozen and ("a",) in after.groups()
    finally:
        RULES.pop(_Gain)
    with pytest.raises(TypeError, match="not a Keras layer class"):
        register_rule(int, rule=Rule(passthrough))


def test_a_bidirectional_layer_keeps_a_unit_in_each_direction():
    """Its two directions are one group; a plan that would empty one (which shrink refuses)
    brings back that direction's best unit."""
    inputs = keras.Input((6,), dtype="int32")
    x = L.Bidirectional(L.LSTM(2), name="bi")(L.Embedding(20, 4, name="emb")(inputs))
    model = keras.Model(inputs, L.Dense(2, name="out")(x))
    graph = analyze(model)
    plan = plan_channels(model, {"bi": 0.75, "emb": 0.0}, graph=graph)
    assert plan.summary(graph)["bi"] == "2/4"
    small = shrink(model, plan, graph)
    assert small.get_layer("bi").forward_layer.units == small.get_layer("bi").backward_layer.units == 1
