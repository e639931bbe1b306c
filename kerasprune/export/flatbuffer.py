"""What a ``.tflite`` flatbuffer holds: its ops, weights, MACs and how the weights are stored.

Read from the file itself, so a model that never was Keras (or a SavedModel's conversion)
gets params, nonzeros and MACs too, and the sparse study can see in the graph whether
weights are stored sparse and densified before the kernels use them.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field

import numpy as np

# TensorType enum of the TFLite schema -> numpy dtype (INT4, 17, is packed two per byte).
_DTYPES = {0: np.float32, 1: np.float16, 2: np.int32, 3: np.uint8, 4: np.int64, 7: np.int16,
           9: np.int8, 10: np.float64}
_WEIGHT_TYPES = {0, 1, 9, 17}  # float32, float16, int8, int4: what params are made of
_TYPE_NAMES = {0: "float32", 1: "float16", 9: "int8", 17: "int4"}
_BITS = {0: 32, 1: 16, 2: 32, 3: 8, 4: 64, 7: 16, 9: 8, 10: 64, 17: 4}


@dataclass
class GraphStats:
    """Per-example counts over a TFLite model's main subgraph."""

    ops: dict[str, int] = field(default_factory=dict)
    params: int = 0  # elements of float / int8 / int4 constants per use (zero biases are dropped)
    nonzero_params: int = 0
    weight_bytes: int = 0  # as stored: each constant once, sparse ones by their values
    sparse_tensors: int = 0  # weights stored in TFLite's sparse format
    macs: int = 0
    macs_effective: int = 0  # MACs with nonzero weights only
    activation_bytes: int = 0  # read and written by the ops, constants excluded
    weight_type: str = "float32"  # the type holding most weights (rank >= 2)
    sparsity: float = 0.0  # zeros among kernels and embeddings (rank >= 2), as in metrics

    @property
    def densified_at_load(self) -> bool:
        """Sparse weights feed DENSIFY ops: the runtime expands them to dense before use."""
        return self.ops.get("DENSIFY", 0) > 0

    def as_dict(self) -> dict:
        return {**asdict(self), "densified_at_load": self.densified_at_load}


def graph_stats(content: bytes | str | os.PathLike) -> GraphStats:
    """Count a flatbuffer's ops, weights and MACs (a dynamic batch counts as 1)."""
    model, graph, op_name = _read(content)
    stats = GraphStats()
    weights = _constant_weights(graph, model.buffers)
    source, _ = _stored_sources(graph, op_name, weights)
    for op in graph.operators:
        stats.ops[op_name(op)] = stats.ops.get(op_name(op), 0) + 1
    by_type: dict[str, int] = {}
    kernel_count = kernel_nonzero = 0
    for op in graph.operators:
        name = op_name(op)
        if op.outputs[0] in source:  # a DENSIFY or DEQUANTIZE of a weight: counted at its use
            continue
        for i in [*op.inputs, *op.outputs]:
            if i >= 0 and i not in weights and source.get(i) not in weights:
                stats.activation_bytes += _bytes(graph.tensors[i])
        # Per use: the converter stores equal constants (e.g. two bias vectors) once.
        used = [weights[i] for i in dict.fromkeys(source.get(i, i) for i in op.inputs) if i in weights]
        for w in used:
            stats.params += w.count
            stats.nonzero_params += w.nonzero
            if w.rank >= 2:
                by_type[w.type] = by_type.get(w.type, 0) + w.count
                kernel_count, kernel_nonzero = kernel_count + w.count, kernel_nonzero + w.nonzero
        macs = _macs(name, [graph.tensors[i] if i >= 0 else None for i in op.inputs],
                     graph.tensors[op.outputs[0]])
        if macs:
            kernels = [w for w in used if w.rank >= 2]
            count = sum(w.count for w in kernels)
            density = sum(w.nonzero for w in kernels) / count if count else 1.0
            stats.macs += macs
            stats.macs_effective += round(macs * density)
    for w in weights.values():
        stats.weight_bytes += w.stored_bytes
        stats.sparse_tensors += int(w.sparse)
    stats.weight_type = max(by_type, key=by_type.get) if by_type else "float32"
    stats.sparsity = round(1 - kernel_nonzero / kernel_count, 5) if kernel_count else 0.0
    return stats


@dataclass
class WeightedOp:
    """An op that multiplies by (or looks up in) a stored weight, and how it is stored."""

    op: str  # FULLY_CONNECTED, CONV_2D, EMBEDDING_LOOKUP, GATHER, ...
    output: str  # its output tensor's name (what ai-edge-quantizer recipes match)
    weight: str  # the stored weight tensor's name (before any DEQUANTIZE or DENSIFY)
    type: str  # int4, int8, float16 or float32, as stored in the file
    params: int
    bytes: int  # as stored: packed values, sparse values only
    dequantized: bool  # a DEQUANTIZE turns it to float before the op (weight-only storage)


def weighted_ops(content: bytes | str | os.PathLike) -> list[WeightedOp]:
    """Every op of the main subgraph that reads a weight of rank >= 2, in graph order.

    Types are read from the flatbuffer: the interpreter reports INT4 tensors as int8.
    """
    model, graph, op_name = _read(content)
    weights = _constant_weights(graph, model.buffers)
    source, dequantized = _stored_sources(graph, op_name, weights)
    found = []
    for op in graph.operators:
        if op.outputs[0] in source:
            continue
        for i in op.inputs:
            w = weights.get(source.get(i, i))
            if w is not None and w.rank >= 2:
                found.append(WeightedOp(op_name(op), _name(graph, op.outputs[0]),
                                        _name(graph, source.get(i, i)), w.type, w.count, w.stored_bytes,
                                        i in dequantized))
                break
    return found


#: ops that hand token ids on with their values unchanged, between the input and its table
_ID_PASSTHROUGH = {"CAST", "RESHAPE", "SQUEEZE", "EXPAND_DIMS"}
#: ops that look rows up in a table: positions of (table, ids) among their inputs
_LOOKUPS = {"GATHER": (0, 1), "EMBEDDING_LOOKUP": (1, 0)}


def input_vocabulary(content: bytes | str | os.PathLike) -> int | None:
    """The fewest rows of a GATHER or EMBEDDING_LOOKUP table that the model's input indexes
    (what a ``.keras`` twin's ``Embedding`` takes); None when it indexes none."""
    model, graph, op_name = _read(content)
    ids, rows = {int(graph.inputs[0])}, []
    for op in graph.operators:  # in execution order: an id tensor is made before it is used
        name = op_name(op)
        if name in _ID_PASSTHROUGH and op.inputs[0] in ids:
            ids.add(int(op.outputs[0]))
        if name in _LOOKUPS and op.inputs[_LOOKUPS[name][1]] in ids:
            rows.append(int(graph.tensors[op.inputs[_LOOKUPS[name][0]]].shape[0]))
    return min(rows) if rows else None


def densified_bytes(content: bytes | str | os.PathLike) -> int:
    """How many bytes the weights stored sparse grow by where the runtime DENSIFYs them at
    load (a convolution's kernel; a float FULLY_CONNECTED keeps its sparse one): every
    inference then reads them dense."""
    model, graph, op_name = _read(content)
    grown = 0
    for op in graph.operators:
        if op_name(op) == "DENSIFY":
            stored, dense = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
            grown += _elements(dense.shape) * _BITS[dense.type] // 8 - len(model.buffers[stored.buffer].data)
    return grown


def _name(graph, index: int) -> str:
    """A tensor's name, or its index in a file whose names were stripped."""
    name = graph.tensors[index].name
    return name.decode() if name else f"tensor {index}"


def without_names(content: bytes) -> bytes:
    """The flatbuffer without its tensor and subgraph names and its description.

    They matter to a debugger, not to the runtime: on a 97%-sparse 4-bit LeNet-5 they are
    371 of the 5,975 bytes gzip leaves (a one-off measurement).  The signature keeps its
    input and output keys (they point at tensor indices), so signature runners work as before.
    """
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(content))
    model.description = None
    for graph in model.subgraphs:
        graph.name = None
        for tensor in graph.tensors:
            tensor.name = None
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def has_state(content: bytes) -> bool:
    """Whether the model keeps variable tensors between invocations (fused LSTM state)."""
    from tensorflow.lite.python import schema_py_generated as schema

    model = schema.Model.GetRootAs(bytearray(content), 0)
    return any(graph.Tensors(i).IsVariable()
               for graph in (model.Subgraphs(g) for g in range(model.SubgraphsLength()))
               for i in range(graph.TensorsLength()))


@dataclass
class _Weight:
    count: int
    nonzero: int
    stored_bytes: int
    sparse: bool
    rank: int
    type: str


def _constant_weights(graph, buffers) -> dict[int, _Weight]:
    found = {}
    for i, t in enumerate(graph.tensors):
        data = buffers[t.buffer].data if 0 < t.buffer < len(buffers) else None
        if data is None or len(data) == 0 or t.type not in _WEIGHT_TYPES:
            continue
        raw = np.asarray(data, dtype=np.uint8).tobytes()
        if t.type == 17:  # int4: two values per byte, the last byte's high half padding
            packed = np.frombuffer(raw, np.uint8)
            values = np.stack([packed & 0x0F, packed >> 4], -1).ravel()[:_elements(t.shape)]
        else:
            values = np.frombuffer(raw, dtype=_DTYPES[t.type])
        count = _elements(t.shape) if t.sparsity is not None else values.size
        found[i] = _Weight(count, int(np.count_nonzero(values)), len(raw), t.sparsity is not None,
                           len(t.shape) if t.shape is not None else 0, _TYPE_NAMES[t.type])
    return found


def _read(content: bytes | str | os.PathLike):
    """The flatbuffer's model, its main subgraph and a function naming an op."""
    from tensorflow.lite.python import schema_py_generated as schema

    if not isinstance(content, (bytes, bytearray)):
        with open(content, "rb") as f:
            content = f.read()
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(bytearray(content), 0))
    op_names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    return model, model.subgraphs[0], lambda op: _op_name(model, op, op_names)


def _stored_sources(graph, op_name, weights: dict) -> tuple[dict[int, int], set[int]]:
    """A densified or dequantized weight stands for its stored source: output -> input
    for each DENSIFY and each DEQUANTIZE of a constant; and the dequantized outputs."""
    source, dequantized = {}, set()
    for op in graph.operators:
        name = op_name(op)
        if name == "DENSIFY" or (name == "DEQUANTIZE" and op.inputs[0] in weights):
            source[op.outputs[0]] = op.inputs[0]
            if name == "DEQUANTIZE":
                dequantized.add(op.outputs[0])
    return source, dequantized


def _op_name(model, op, op_names: dict[int, str]) -> str:
    code = model.operatorCodes[op.opcodeIndex]
    if code.customCode:
        return code.customCode.decode() if isinstance(code.customCode, bytes) else str(code.customCode)
    return op_names.get(max(code.builtinCode, code.deprecatedBuiltinCode), "UNKNOWN")


def _elements(shape) -> int:
    return int(np.prod([max(1, int(d)) for d in shape])) if shape is not None else 0


def _bytes(tensor) -> int:
    return _elements(tensor.shape) * _BITS.get(tensor.type, 32) // 8


def _macs(name: str, inputs: list, output) -> int:
    """Multiply-accumulates of one weighted op, from its tensor shapes."""
    out = _elements(output.shape)

    def shape(k: int) -> list[int]:
        present = len(inputs) > k and inputs[k] is not None
        return [int(d) for d in inputs[k].shape] if present else []

    if name == "CONV_2D":
        _, kh, kw, cin = shape(1)
        return out * kh * kw * cin
    if name == "DEPTHWISE_CONV_2D":
        return out * shape(1)[1] * shape(1)[2]
    if name == "CONV_3D":
        kd, kh, kw, cin, _ = shape(1)
        return out * kd * kh * kw * cin
    if name == "TRANSPOSE_CONV":
        cout, kh, kw, _ = shape(1)
        return _elements(inputs[2].shape) * kh * kw * cout
    if name == "FULLY_CONNECTED":
        return out * shape(1)[-1]
    if name == "BATCH_MATMUL":
        return out * shape(0)[-1]
    if name in ("UNIDIRECTIONAL_SEQUENCE_LSTM", "UNIDIRECTIONAL_SEQUENCE_RNN"):
        steps = shape(0)[1] if len(shape(0)) == 3 else 1
        gates = [inputs[k] for k in range(1, 9) if k < len(inputs) and inputs[k] is not None]
        return steps * sum(_elements(t.shape) for t in gates)
    return 0
