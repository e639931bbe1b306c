"""Text classifiers over int token ids: LSTM, BiLSTM, Kim's CNN and a Transformer encoder.

Inputs are the int32 ids that ``kerasprune.data`` produces (fixed ``seq_len``), so the
models convert to TFLite without string ops.
"""
from __future__ import annotations

from ..backend import keras, tf
from ..metrics import register_macs

layers = keras.layers


@keras.utils.register_keras_serializable(package="kerasprune")
class PositionEmbedding(layers.Layer):
    """Adds a learned vector per position; the only custom layer in the zoo."""

    def build(self, input_shape):
        self.positions = self.add_weight(
            name="positions", shape=(input_shape[-2], input_shape[-1]),
            initializer=keras.initializers.RandomNormal(stddev=0.02),
        )
        super().build(input_shape)

    def call(self, inputs):
        return inputs + tf.cast(self.positions, inputs.dtype)


@register_macs(PositionEmbedding)
def _position_macs(layer, node, value):
    return [], 0  # an elementwise add, not a multiply-accumulate


def _embed(seq_len: int, vocab_size: int, dim: int):
    inputs = keras.Input((seq_len,), dtype="int32", name="tokens")
    return inputs, layers.Embedding(vocab_size, dim, name="embedding")(inputs)


def _classify(x, num_classes: int, dropout: float, inputs, name: str) -> keras.Model:
    x = layers.Dropout(dropout, name="dropout")(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="logits")(x)
    return keras.Model(inputs, outputs, name=name)


def lstm(seq_len: int, vocab_size: int, num_classes: int, embed_dim: int = 128,
         units: int = 128, dropout: float = 0.5) -> keras.Model:
    """Embedding -> LSTM (last state) -> dense softmax."""
    inputs, x = _embed(seq_len, vocab_size, embed_dim)
    x = layers.LSTM(units, name="lstm")(x)
    return _classify(x, num_classes, dropout, inputs, "lstm")


def bilstm(seq_len: int, vocab_size: int, num_classes: int, embed_dim: int = 128,
           units: int = 64, dropout: float = 0.5) -> keras.Model:
    """Embedding -> bidirectional LSTM (both last states) -> dense softmax."""
    inputs, x = _embed(seq_len, vocab_size, embed_dim)
    x = layers.Bidirectional(layers.LSTM(units), name="bilstm")(x)
    return _classify(x, num_classes, dropout, inputs, "bilstm")


def textcnn(seq_len: int, vocab_size: int, num_classes: int, embed_dim: int = 128,
            filters: int = 100, kernel_sizes: tuple[int, ...] = (3, 4, 5),
            dropout: float = 0.5) -> keras.Model:
    """Kim 2014's CNN-rand: parallel 1D convolutions, max-over-time pooling, concat."""
    inputs, x = _embed(seq_len, vocab_size, embed_dim)
    branches = []
    for k in kernel_sizes:
        y = layers.Conv1D(filters, k, activation="relu", name=f"conv{k}")(x)
        branches.append(layers.GlobalMaxPooling1D(name=f"maxpool{k}")(y))
    x = layers.Concatenate(name="concat")(branches) if len(branches) > 1 else branches[0]
    return _classify(x, num_classes, dropout, inputs, "textcnn")


def transformer(seq_len: int, vocab_size: int, num_classes: int, embed_dim: int = 64,
                num_heads: int = 4, ff_dim: int = 128, num_layers: int = 2,
                dropout: float = 0.1) -> keras.Model:
    """A post-LayerNorm Transformer encoder (BERT's block) with mean pooling.

    ``embed_dim=768, num_heads=12, ff_dim=3072, num_layers=12`` is BERT-base's shape
    (trained from scratch here: no pretrained weights are loaded).
    """
    if embed_dim % num_heads:
        raise ValueError(f"embed_dim {embed_dim} must be divisible by num_heads {num_heads}")
    inputs, x = _embed(seq_len, vocab_size, embed_dim)
    x = PositionEmbedding(name="positions")(x)
    for i in range(1, num_layers + 1):
        attention = layers.MultiHeadAttention(
            num_heads, embed_dim // num_heads, dropout=dropout, name=f"block{i}_attention"
        )(x, x)
        attention = layers.Dropout(dropout, name=f"block{i}_attention_dropout")(attention)
        x = layers.LayerNormalization(name=f"block{i}_attention_norm")(
            layers.Add(name=f"block{i}_attention_add")([x, attention]))
        ff = layers.Dense(ff_dim, activation="gelu", name=f"block{i}_ff1")(x)
        ff = layers.Dense(embed_dim, name=f"block{i}_ff2")(ff)
        ff = layers.Dropout(dropout, name=f"block{i}_ff_dropout")(ff)
        x = layers.LayerNormalization(name=f"block{i}_ff_norm")(
            layers.Add(name=f"block{i}_ff_add")([x, ff]))
    x = layers.GlobalAveragePooling1D(name="pool")(x)
    return _classify(x, num_classes, dropout, inputs, "transformer")
