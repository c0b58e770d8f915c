"""What a firmware engineer needs to know about an exported model before flashing it.

``profile_model(path)`` reads a model file and returns a ``ModelProfile``: the card's model id
and tower, the input and output tensors (shape, dtype, int8 quantization), the stored weights
(count and bytes as stored), the file size, multiply-accumulates per layer and in all, the
operators used, and ``latency_ms(clock_mhz)``, an estimate for a Cortex-M33 class MCU.

Each file format has its own reader that fills the same ``ModelProfile``; ``READERS`` maps a file
suffix to it: ONNX (siamid's ``.onnx`` and ``.int8.onnx``) and TFLite (``siamid export --format
tflite``: with TFLite Micro's measured arena and which operators its kernels implement).

MACs come from ONNX shape inference at the model's own input size with batch 1: a Conv is
``out_elements x (in_c / groups) x k_h x k_w``, a Gemm / MatMul ``out_elements x reduced_dim``;
every other operator counts 0 MACs. In siamid's int8 files (QDQ format: QuantizeLinear /
DequantizeLinear pairs around float operators) the same Conv and Gemm nodes carry the MACs, so an
int8 file reports the same MACs as its fp32 original; the Q/DQ nodes are counted among the
operators but left out of the per-layer table (an int8 runtime fuses them into its kernels).

Needs the ``onnx`` package (the ``train`` extra) for ONNX files, the ``mcu`` extra for .tflite
files; ConfigError saying so where one is missing.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .cardfile import card_from_metadata
from .errors import ConfigError, ModelError

__all__ = ["LATENCY_METHOD", "MCU_MAX_MACS", "MCU_MAX_WEIGHT_BYTES", "READERS",
           "REFERENCE_CLOCK_MHZ", "LayerProfile", "ModelProfile", "Quantization", "TensorInfo",
           "estimate_latency_ms", "fits_microcontroller", "profile_model"]

# -- the latency estimate ------------------------------------------------------------------------

#: MLTK's published figure for its fingerprint tower on an EFR32MG24 (Cortex-M33 with the MVP
#: accelerator) at 78 MHz: 119.7 ms for 3.58 M MACs. The one point the estimate scales from.
REFERENCE_LATENCY_MS = 119.7
REFERENCE_MACS = 3.58e6
REFERENCE_CLOCK_MHZ = 78.0
LATENCY_METHOD = (
    "linear MAC-rate scaling from one published point (MLTK fingerprint tower on an EFR32MG24 "
    "with its MVP accelerator: 119.7 ms for 3.58 M MACs at 78 MHz); not a measurement, and "
    "optimistic where layers are memory-bound or use operators the accelerator lacks"
)


def estimate_latency_ms(macs: int, clock_mhz: float = REFERENCE_CLOCK_MHZ) -> float:
    """Milliseconds for ``macs`` multiply-accumulates at ``clock_mhz``, by ``LATENCY_METHOD``."""
    if not clock_mhz > 0:
        raise ConfigError(f"clock must be a positive number of MHz, got {clock_mhz}")
    return macs * (REFERENCE_LATENCY_MS / REFERENCE_MACS) * (REFERENCE_CLOCK_MHZ / clock_mhz)


# -- what "small enough for a microcontroller" means ----------------------------------------------

#: A model is MCU-sized when its int8 weights (int8 kernels and int32 biases, as stored) fit in
#: 256 kB of flash and one signature costs at most 50 M MACs (under 2 s at 78 MHz by the latency
#: estimate). CI checks the TFLite export on every registered tower of that size.
MCU_MAX_WEIGHT_BYTES = 256 * 1024
MCU_MAX_MACS = 50_000_000


def fits_microcontroller(int8_weight_bytes: int, macs: int) -> bool:
    """Whether a model of these int8 weight bytes and MACs per signature is MCU-sized."""
    return int8_weight_bytes <= MCU_MAX_WEIGHT_BYTES and macs <= MCU_MAX_MACS


# -- what a profile holds ------------------------------------------------------------------------


@dataclass(frozen=True)
class Quantization:
    """``real = scale * (q - zero_point)`` for the int tensor ``tensor`` of type ``dtype``."""

    tensor: str
    scale: float
    zero_point: int
    dtype: str


@dataclass(frozen=True)
class TensorInfo:
    """A model input or output: its name, shape without the batch axis, element type, and the
    quantization the graph applies right at it (None where the tensor stays float)."""

    name: str
    shape: tuple[int | str, ...]
    dtype: str
    quantization: Quantization | None = None

    @property
    def size(self) -> int | None:
        """Elements per image, or None where a dimension is not known."""
        return math.prod(self.shape) if all(isinstance(d, int) for d in self.shape) else None


@dataclass(frozen=True)
class LayerProfile:
    """One operator of the graph: its output shape at batch 1 (None where not inferred), its
    multiply-accumulates and the weight values it reads."""

    name: str
    op_type: str
    output_shape: tuple[int | str, ...] | None
    macs: int
    weights: int


@dataclass(frozen=True)
class ModelProfile:
    """What a model costs on a device; filled by a per-format reader (see ``READERS``).

    ``parameters`` counts the stored weight values (weights, biases; not quantization scales or
    zero points, not shape constants); ``parameter_bytes`` is what they take as stored, with the
    split by element type in ``parameter_bytes_by_dtype`` (an int8 file keeps its biases as
    int32). ``file_bytes`` is the whole file ("flash" if stored as is), of which
    ``metadata_bytes`` is the ModelCard and other metadata, which a firmware image need not
    carry. ``output_tail`` names the float operators between the last quantized tensor and the
    output (``last_quantized``) of an int8 model: the L2 normalisation a device does on the host.
    For a .tflite file, ``arena_bytes`` is the tensor arena TFLite Micro's interpreter reported
    using (None where tflite-micro is not installed) and ``operator_support`` whether TFLite
    Micro's builtin kernels implement each operator.
    """

    path: str
    format: str
    model_id: str
    architecture: str
    quantization: str
    input: TensorInfo
    output: TensorInfo
    parameters: int
    parameter_bytes: int
    parameter_bytes_by_dtype: dict[str, int]
    file_bytes: int
    metadata_bytes: int
    macs: int
    layers: tuple[LayerProfile, ...]
    operators: dict[str, int]
    last_quantized: Quantization | None = None
    output_tail: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    arena_bytes: int | None = None
    operator_support: dict[str, bool] = dataclasses.field(default_factory=dict)

    def latency_ms(self, clock_mhz: float = REFERENCE_CLOCK_MHZ) -> float:
        """Estimated milliseconds per signature at ``clock_mhz`` (see ``LATENCY_METHOD``)."""
        return estimate_latency_ms(self.macs, clock_mhz)

    def to_dict(self, clock_mhz: float = REFERENCE_CLOCK_MHZ) -> dict[str, Any]:
        """Plain JSON-ready values, with the latency estimate at ``clock_mhz`` and its method."""
        data = dataclasses.asdict(self)
        data["latency"] = {"clock_mhz": clock_mhz, "ms": self.latency_ms(clock_mhz),
                           "method": LATENCY_METHOD}
        return data


def profile_model(path: str | Path) -> ModelProfile:
    """The profile of the model file ``path``, read by the reader for its suffix.

    ModelError if the file is missing, is not a model of a known format, or has no siamid
    ModelCard.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"model file {path} not found; pass the path of an exported model "
                         "(siamid export writes <id>.onnx and <id>.int8.onnx)")
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        known = ", ".join(sorted(READERS))
        raise ModelError(f"cannot profile {path}: unknown model format {path.suffix or '(none)'!r}; "
                         f"known: {known}")
    return reader(path)


# -- the ONNX reader -----------------------------------------------------------------------------

# Operators whose MACs are counted: op type -> (activation input, weight input) positions.
_CONV_OPS = {"Conv": (0, 1), "ConvInteger": (0, 1), "QLinearConv": (0, 3)}
_MATMUL_OPS = {"Gemm": (0, 1), "MatMul": (0, 1), "MatMulInteger": (0, 1), "QLinearMatMul": (0, 3)}
# Inputs that are quantization parameters, or shapes, axes and bounds: constants that are not
# weights. Op type -> input positions (everything else a constant feeds counts as weights).
_NOT_WEIGHTS: dict[str, frozenset[int]] = {
    "QuantizeLinear": frozenset({1, 2}),
    "DequantizeLinear": frozenset({1, 2}),
    "QLinearConv": frozenset({1, 2, 4, 5, 6, 7}),
    "QLinearMatMul": frozenset({1, 2, 4, 5, 6, 7}),
    "QLinearAdd": frozenset({1, 2, 4, 5, 6, 7}),
    "QLinearMul": frozenset({1, 2, 4, 5, 6, 7}),
    "ConvInteger": frozenset({2, 3}),
    "MatMulInteger": frozenset({2, 3}),
    "Reshape": frozenset({1}), "Expand": frozenset({1}), "Tile": frozenset({1}),
    "Unsqueeze": frozenset({1}), "Squeeze": frozenset({1}), "Split": frozenset({1}),
    "Slice": frozenset({1, 2, 3, 4}), "Pad": frozenset({1, 2, 3}), "Resize": frozenset({1, 2, 3}),
    "Clip": frozenset({1, 2}), "ConstantOfShape": frozenset({0}), "TopK": frozenset({1}),
    "ReduceMean": frozenset({1}), "ReduceSum": frozenset({1}), "ReduceMax": frozenset({1}),
    "ReduceMin": frozenset({1}), "ReduceL2": frozenset({1}), "ReduceProd": frozenset({1}),
}
# Nodes that only carry a constant to its user: a weight read through them is the layer's.
_PASS_THROUGH = {"DequantizeLinear", "Identity", "Cast"}
_QDQ = {"QuantizeLinear", "DequantizeLinear"}


def _onnx():
    try:
        import onnx
    except ImportError as exc:
        raise ConfigError(
            f"profiling an ONNX model needs the onnx package ({exc}); install the training extra "
            "with: pip install 'siamid[train]' (or pip install onnx)"
        ) from None
    return onnx


def _dims(tensor_type) -> tuple[int | str, ...] | None:
    if not tensor_type.HasField("shape"):
        return None
    return tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
                 for d in tensor_type.shape.dim)


def _dtype_name(onnx, elem_type: int) -> str:
    return onnx.helper.tensor_dtype_to_np_dtype(elem_type).name if elem_type else "unknown"


def _profile_onnx(path: Path) -> ModelProfile:
    onnx = _onnx()
    from onnx import numpy_helper

    try:
        model = onnx.load(str(path))
    except Exception as exc:  # protobuf raises DecodeError, onnx its own types
        raise ModelError(f"{path} is not a readable ONNX model: {exc}") from exc
    graph = model.graph
    if not graph.node or not graph.input or not graph.output:
        raise ModelError(f"{path} is not an ONNX model (no graph: nodes, inputs and outputs); "
                         "pass an exported .onnx file")
    card = card_from_metadata({p.key: p.value for p in model.metadata_props}, path)

    # Constants: initializers and Constant nodes' tensors, as numpy arrays.
    constants = {t.name: t for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.output:
            for attr in node.attribute:
                if attr.name == "value":
                    constants[node.output[0]] = attr.t
    feeds = [i for i in graph.input if i.name not in constants]
    if len(feeds) != 1 or len(graph.output) != 1:
        raise ModelError(f"{path} has {len(feeds)} inputs and {len(graph.output)} outputs; a "
                         "siamid tower has one image input and one signature output")

    shapes = _infer_shapes(onnx, model, path)
    producers = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, list[tuple[Any, int]]] = {}
    for node in graph.node:
        for position, name in enumerate(node.input):
            if name:
                consumers.setdefault(name, []).append((node, position))

    # Which constants are weights: those any consumer reads at a weight position.
    weight_names = {name for name in constants
                    if any(position not in _NOT_WEIGHTS.get(node.op_type, ())
                           for node, position in consumers.get(name, ()))}
    by_dtype: Counter[str] = Counter()
    parameters = 0
    for name in sorted(weight_names):
        tensor = constants[name]
        count = math.prod(tensor.dims)
        parameters += count
        by_dtype[_dtype_name(onnx, tensor.data_type)] += count * _itemsize(onnx, tensor.data_type)

    def weights_of(node) -> int:
        """Weight values a node reads, directly or through DequantizeLinear / Identity / Cast."""
        total = 0
        for position, name in enumerate(node.input):
            if not name or position in _NOT_WEIGHTS.get(node.op_type, ()):
                continue
            while name in producers and producers[name].op_type in _PASS_THROUGH:
                name = producers[name].input[0]
            if name in weight_names:
                total += math.prod(constants[name].dims)
        return total

    layers, notes = [], []
    for node in graph.node:
        if node.op_type in _QDQ or node.op_type == "Constant":
            continue
        out_shape = shapes.get(node.output[0]) if node.output else None
        macs = _macs(node, shapes, constants)
        if macs is None:
            notes.append(f"{node.name or node.op_type}: shapes not inferred, MACs counted as 0")
            macs = 0
        layers.append(LayerProfile(name=node.name or node.output[0], op_type=node.op_type,
                                   output_shape=out_shape, macs=macs, weights=weights_of(node)))

    image, signature = feeds[0], graph.output[0]
    in_quant = None
    for node, position in consumers.get(image.name, ()):
        if node.op_type == "QuantizeLinear" and position == 0:
            in_quant = _quant_params(onnx, numpy_helper, node, node.output[0], constants)
    out_quant = None
    producer = producers.get(signature.name)
    if producer is not None and producer.op_type == "DequantizeLinear":
        out_quant = _quant_params(onnx, numpy_helper, producer, producer.input[0], constants)
    last_quant, tail = None, ()
    if out_quant is None and any(n.op_type in _QDQ for n in graph.node):
        last_quant, tail = _float_tail(onnx, numpy_helper, graph, signature.name, producers,
                                       constants)

    out_shape = shapes.get(signature.name) or _dims(signature.type.tensor_type) or ()
    out_dims = tuple(out_shape[1:])
    if any(not isinstance(d, int) or d == 0 for d in out_dims):
        out_dims = (card.embedding_size,)  # shape inference stopped short of the output
    file_bytes = path.stat().st_size
    return ModelProfile(
        path=str(path), format="onnx", model_id=card.model_id, architecture=card.architecture,
        quantization=card.quantization,
        input=TensorInfo(image.name, tuple(_dims(image.type.tensor_type) or ())[1:],
                         _dtype_name(onnx, image.type.tensor_type.elem_type), in_quant),
        output=TensorInfo(signature.name, out_dims,
                          _dtype_name(onnx, signature.type.tensor_type.elem_type), out_quant),
        parameters=parameters, parameter_bytes=sum(by_dtype.values()),
        parameter_bytes_by_dtype=dict(sorted(by_dtype.items())),
        file_bytes=file_bytes, metadata_bytes=sum(p.ByteSize() for p in model.metadata_props),
        macs=sum(layer.macs for layer in layers), layers=tuple(layers),
        operators=dict(Counter(n.op_type for n in graph.node).most_common()),
        last_quantized=last_quant, output_tail=tail, notes=tuple(notes),
    )


def _itemsize(onnx, elem_type: int) -> int:
    return onnx.helper.tensor_dtype_to_np_dtype(elem_type).itemsize


def _infer_shapes(onnx, model, path: Path) -> dict[str, tuple[int | str, ...]]:
    """Every tensor's inferred shape at batch 1 (the model's own input size)."""
    fixed = type(model)()
    fixed.CopyFrom(model)
    initializers = {t.name for t in fixed.graph.initializer}
    for value in fixed.graph.input:
        if value.name in initializers:
            continue
        dims = value.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].Clear()
            dims[0].dim_value = 1
    try:
        inferred = onnx.shape_inference.infer_shapes(fixed, strict_mode=False, data_prop=True)
    except Exception as exc:
        raise ModelError(f"ONNX shape inference failed on {path}: {exc}") from exc
    shapes: dict[str, tuple[int | str, ...]] = {}
    graph = inferred.graph
    for value in list(graph.input) + list(graph.value_info) + list(graph.output):
        dims = _dims(value.type.tensor_type)
        if dims is not None:
            shapes[value.name] = dims
    for tensor in graph.initializer:
        shapes[tensor.name] = tuple(tensor.dims)
    for node in graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    shapes[node.output[0]] = tuple(attr.t.dims)
    return shapes


def _known(shape) -> bool:
    return shape is not None and all(isinstance(d, int) and d > 0 for d in shape)


def _macs(node, shapes, constants) -> int | None:
    """Multiply-accumulates of one node at batch 1; None where its shapes are not known."""
    if node.op_type in _CONV_OPS:
        _, w = _CONV_OPS[node.op_type]
        out, weight = shapes.get(node.output[0]), shapes.get(node.input[w])
        if not (_known(out) and _known(weight)):
            return None
        # weight (out_c, in_c / groups, k_h, k_w): every output element reads in_c/groups*k_h*k_w.
        return math.prod(out) * math.prod(weight[1:])
    if node.op_type == "ConvTranspose":
        x, weight = shapes.get(node.input[0]), shapes.get(node.input[1])
        if not (_known(x) and _known(weight)):
            return None
        # weight (in_c, out_c / groups, k...): every input element is spread over out_c/groups*k.
        return math.prod(x) * math.prod(weight[1:])
    if node.op_type in _MATMUL_OPS:
        a, _ = _MATMUL_OPS[node.op_type]
        out, x = shapes.get(node.output[0]), shapes.get(node.input[a])
        if not (_known(out) and _known(x)) or not x:
            return None
        reduced = x[-1]
        if node.op_type == "Gemm" and any(at.name == "transA" and at.i for at in node.attribute):
            reduced = x[0]
        return math.prod(out) * reduced
    return 0


def _scalar(numpy_helper, constants, name: str | None, default):
    if not name or name not in constants:
        return default
    values = numpy_helper.to_array(constants[name]).reshape(-1)
    return values[0].item() if values.size else default


def _quant_params(onnx, numpy_helper, node, tensor: str, constants) -> Quantization | None:
    """The (per-tensor) scale and zero point of a QuantizeLinear / DequantizeLinear node."""
    scale = _scalar(numpy_helper, constants, node.input[1] if len(node.input) > 1 else None, None)
    if scale is None:
        return None
    zp_name = node.input[2] if len(node.input) > 2 else ""
    zero_point = _scalar(numpy_helper, constants, zp_name, 0)
    dtype = (_dtype_name(onnx, constants[zp_name].data_type) if zp_name in constants else "uint8")
    return Quantization(tensor=tensor, scale=float(scale), zero_point=int(zero_point), dtype=dtype)


def _float_tail(onnx, numpy_helper, graph, output: str, producers, constants):
    """(quantization of the last int tensor, float op types after it, in graph order) on the
    way to ``output``: the walk back from the output stops at each DequantizeLinear."""
    tail, last, stack = set(), None, [output]
    while stack:
        node = producers.get(stack.pop())
        if node is None or id(node) in tail:
            continue
        if node.op_type == "DequantizeLinear":
            if node.input[0] not in constants and last is None:
                last = _quant_params(onnx, numpy_helper, node, node.input[0], constants)
            continue
        if node.op_type != "Constant":
            tail.add(id(node))
        stack.extend(n for n in node.input if n and n not in constants)
    return last, tuple(n.op_type for n in graph.node if id(n) in tail)


# -- the TFLite reader ---------------------------------------------------------------------------

# Operators whose MACs are counted, and which of their inputs are weights (kernel, bias).
_TFLITE_WEIGHTED = {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV"}


def _profile_tflite(path: Path) -> ModelProfile:
    """A .tflite file written by ``siamid export --format tflite``: its operators and tensors as
    stored (NHWC shapes), MACs per operator (a convolution: output elements x kernel area x
    input channels, a depthwise one output elements x kernel area, a fully-connected layer
    output elements x inputs), and TFLite Micro's arena, measured by running it once."""
    from .tflite import IO_METADATA_KEY, flatbuf
    from .tflite.support import TFLM_BUILTIN_OPS

    data = path.read_bytes()
    info = flatbuf.read(data, path)
    try:
        meta = {k: v.decode("utf-8") for k, v in info.metadata.items()}
    except UnicodeDecodeError as exc:
        raise ModelError(f"model {path}: its metadata is not UTF-8 text ({exc})") from exc
    card = card_from_metadata(meta, path)
    tensors = info.tensors
    layers, by_dtype, parameters, weighted = [], Counter(), 0, set()
    for op in info.ops:
        out = tensors[op.outputs[0]]
        weights = 0
        macs = 0
        if op.code in _TFLITE_WEIGHTED:
            for position in (1, 2):
                if position < len(op.inputs) and op.inputs[position] >= 0:
                    t = tensors[op.inputs[position]]
                    if t.data_bytes and op.inputs[position] not in weighted:
                        weighted.add(op.inputs[position])
                        count = math.prod(t.shape)
                        parameters += count
                        by_dtype[t.dtype] += t.data_bytes
                    weights += math.prod(t.shape)
            kernel = tensors[op.inputs[1]].shape
            if op.code == "DEPTHWISE_CONV_2D":
                macs = math.prod(out.shape) * kernel[1] * kernel[2]
            else:  # CONV_2D (O, kh, kw, I), FULLY_CONNECTED (O, I): the reduced dims
                macs = math.prod(out.shape) * math.prod(kernel[1:])
        layers.append(LayerProfile(name=out.name, op_type=op.code, output_shape=out.shape,
                                   macs=macs, weights=weights))

    def tensor_info(index: int) -> TensorInfo:
        t = tensors[index]
        q = (Quantization(t.name, t.scale[0], t.zero_point[0], t.dtype)
             if len(t.scale) == 1 else None)
        return TensorInfo(t.name, t.shape[1:], t.dtype, q)

    notes = ["the output is the head before the L2 normalisation: the host (firmware) "
             "dequantises it and normalises it"] if IO_METADATA_KEY in meta else []
    arena = None
    try:
        from .tflite.run import arena_bytes

        arena = arena_bytes(data)
    except ConfigError as exc:
        notes.append(f"TFLite Micro arena not measured: {exc}")
    operators = dict(Counter(op.code for op in info.ops).most_common())
    return ModelProfile(
        path=str(path), format="tflite", model_id=card.model_id, architecture=card.architecture,
        quantization=card.quantization, input=tensor_info(info.inputs[0]),
        output=tensor_info(info.outputs[0]), parameters=parameters,
        parameter_bytes=sum(by_dtype.values()), parameter_bytes_by_dtype=dict(sorted(by_dtype.items())),
        file_bytes=len(data), metadata_bytes=sum(len(v) for v in info.metadata.values()),
        macs=sum(layer.macs for layer in layers), layers=tuple(layers), operators=operators,
        notes=tuple(notes), arena_bytes=arena,
        operator_support={op: op in TFLM_BUILTIN_OPS for op in operators},
    )


#: File suffix -> the reader that profiles such a file.
READERS: dict[str, Callable[[Path], ModelProfile]] = {".onnx": _profile_onnx,
                                                      ".tflite": _profile_tflite}
