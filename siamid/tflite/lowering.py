"""siamid's int8 ONNX model (QDQ format) -> a fully int8 TFLite ``Graph`` that computes the same.

The int8 ONNX file is a float graph with QuantizeLinear / DequantizeLinear pairs: every
QuantizeLinear is a point where the real value is rounded to an int8 (uint8) grid, every weight a
DequantizeLinear of int8 values with a scale per output channel. The lowering keeps exactly those
rounding points and those numbers: each ONNX QuantizeLinear becomes an int8 TFLite tensor with the
same scale and zero point (uint8 zero points - 128, exact), each weight the same int8 values
(conv OIHW -> OHWI, depthwise -> 1HWO, a fully-connected layer fed by a Flatten of C x H x W gets
its columns in the NHWC flatten order), each bias the same int32 values (scale = input scale x
weight scale). The float operators between two rounding points are evaluated the way TFLite's
int8 kernels round once at their output: a convolution, fully-connected layer, ADD or MEAN gets
the output quantization of the QuantizeLinear that follows it, with a ReLU in between fused into
it; MAX_POOL_2D, CONCATENATION and RESHAPE keep their input's grid (the inputs of a concatenation
are first requantized to the output's); a ReLU between two rounding points is a requantizing
RELU (or QUANTIZE where the output's zero point already clamps at 0); an average pool whose
output grid differs from its input's is a DEPTHWISE_CONV_2D of ones (scale 1 / window), so that
it rounds once, like the float average it replaces. A padding that TFLite's SAME does not
reproduce (PyTorch pads stride-2 windows on both sides, TFLite more after) becomes an explicit PAD
(int8 PAD fills with the zero point: real 0, as ONNX does).

The graph is cut before the L2 normalisation: its output is the head's int8 tensor, which the
host (or the firmware) dequantises and normalises. The input is int8 N x H x W x C with scale
1/255 and zero point -128 (a uint8 pixel p is fed as p - 128); where the ONNX input quantization
differs, a QUANTIZE follows the input. Unknown ONNX operators raise ModelError naming them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..errors import ModelError
from .graph import Graph

__all__ = ["INPUT_SCALE", "INPUT_ZERO_POINT", "Lowered", "RELU_SUFFIX", "lower"]

#: The .tflite input's quantization: a network-input pixel p (0..255, the value p / 255 the
#: float model sees) is the int8 value p - 128.
INPUT_SCALE = np.float32(1.0 / 255.0)
INPUT_ZERO_POINT = -128
#: Name suffix of a ReLU of a tensor on that tensor's own grid (its name + this).
RELU_SUFFIX = "/relu"

# Float operators of the L2 normalisation after the head (F.normalize, and the usual spellings
# of it): cut off and done on the host.
_NORMALISATION = {"ReduceL2", "Clip", "Shape", "Expand", "Div", "Max", "Sqrt", "ReduceSumSquare",
                  "Pow", "ReduceSum", "Unsqueeze", "Identity", "Constant", "Mul", "Reciprocal",
                  "LpNormalization"}
# ONNX channel axis of a 4-D NCHW tensor -> NHWC axis.
_NHWC_AXIS = {0: 0, 1: 3, 2: 1, 3: 2}


@dataclass
class Lowered:
    """The TFLite graph, and what the export records beside it: the ONNX tensor that is its
    output (the head before the normalisation) and the normalisation's epsilon."""

    graph: Graph
    onnx_output: str
    onnx_output_dtype: str  # "uint8" or "int8": its ONNX zero point is the int8 one + 128 or + 0
    l2_epsilon: float


# -- values while lowering -----------------------------------------------------------------------


@dataclass
class _Weight:
    """A constant DequantizeLinear: int values, per-channel scale, along ``axis``."""

    values: np.ndarray
    scale: np.ndarray
    zero_point: np.ndarray
    axis: int


@dataclass
class _Real:
    """The real values of int8 tensor ``tensor``, after a ReLU if ``relu``."""

    tensor: int
    relu: bool = False


@dataclass
class _Pending:
    """A float result not rounded yet: ``emit(scale, zero_point, relu, name)`` writes the ops
    that compute it onto that grid and returns the tensor. ``shape`` is its NHWC shape;
    ``flat_from`` the (C, H, W) of an NCHW tensor it is a flattening of."""

    emit: Callable[[float, int, bool, str], int]
    shape: tuple[int, ...]
    relu: bool = False
    flat_from: tuple[int, int, int] | None = None


@dataclass
class _State:
    graph: Graph = field(default_factory=Graph)
    flat_from: dict[int, tuple[int, int, int]] = field(default_factory=dict)


def _fail(node, what: str) -> ModelError:
    return ModelError(f"cannot convert ONNX node {node.name or node.op_type!r} "
                      f"({node.op_type}) to TFLite: {what}")


def lower(model, path="model") -> Lowered:
    """Lower the int8 ONNX ``model`` (an onnx.ModelProto); ModelError if it is not a siamid int8
    (QDQ) export or uses an operator or pattern this lowering does not know."""
    from onnx import numpy_helper

    g = model.graph
    constants = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    for node in g.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    constants[node.output[0]] = numpy_helper.to_array(attr.t)
    feeds = [i for i in g.input if i.name not in constants]
    if len(feeds) != 1 or len(g.output) != 1:
        raise ModelError(f"{path} has {len(feeds)} inputs and {len(g.output)} outputs; a siamid "
                         "tower has one image input and one signature output")
    if not any(n.op_type == "QuantizeLinear" and n.input[0] not in constants for n in g.node):
        raise ModelError(f"{path} is not an int8 model (no QuantizeLinear on activations); "
                         "convert the <model_id>.int8.onnx file that `siamid export` writes")
    producers = {out: node for node in g.node for out in node.output}
    head, epsilon = _cut(g, producers, constants, path)
    needed = _ancestors(head, producers, constants)

    image = feeds[0]
    dims = [d.dim_value for d in image.type.tensor_type.shape.dim]
    if len(dims) != 4 or not all(dims[1:]):
        raise ModelError(f"{path}: input {image.name!r} has shape {dims}; expected N x C x H x W")
    _, c, h, w = dims
    st = _State()
    inp = st.graph.activation(image.name, (1, h, w, c), INPUT_SCALE, INPUT_ZERO_POINT)
    st.graph.inputs = [inp]
    values: dict[str, object] = {}
    head_dtype = "uint8"
    for node in g.node:
        if not any(o in needed for o in node.output) or node.op_type == "Constant":
            continue
        if node.op_type == "QuantizeLinear":
            scale, zp, offset = _qparams(node, constants)
            if node.output[0] == head:
                head_dtype = "uint8" if offset == -128 else "int8"
            if node.input[0] == image.name:
                values[node.output[0]] = _Real(_input_grid(st, inp, scale, zp + offset,
                                                           node.output[0]))
            else:
                source = _get(values, node, 0)
                values[node.output[0]] = _Real(_quantize(st, source, scale, zp + offset,
                                                         node.output[0], node))
            continue
        if node.op_type == "DequantizeLinear":
            if node.input[0] in constants:
                values[node.output[0]] = _weight(node, constants)
            else:
                source = _get(values, node, 0)
                if not isinstance(source, _Real):
                    raise _fail(node, "dequantizes a value that is not a quantized tensor")
                values[node.output[0]] = _Real(source.tensor)
            continue
        handler = _HANDLERS.get(node.op_type)
        if handler is None:
            raise _fail(node, f"the ONNX operator {node.op_type!r} is not supported by the TFLite "
                        f"export (supported: {', '.join(sorted(_HANDLERS))})")
        values[node.output[0]] = handler(st, node, values, constants)

    result = values.get(head)
    if not isinstance(result, _Real):
        raise ModelError(f"{path}: the head output {head!r} is not an int8 tensor")
    st.graph.outputs = [result.tensor]
    _fuse_relus(st.graph)
    st.graph.prune()
    return Lowered(st.graph, head, head_dtype, epsilon)


def _cut(g, producers, constants, path) -> tuple[str, float]:
    """(the int tensor whose DequantizeLinear feeds the float tail, the tail's epsilon). The tail
    must be an L2 normalisation: dropping anything else would change what the model computes."""
    heads, tail, stack, seen = set(), [], [g.output[0].name], set()
    while stack:
        name = stack.pop()
        node = producers.get(name)
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        if node.op_type == "DequantizeLinear" and node.input[0] not in constants:
            heads.add(node.input[0])
            continue
        tail.append(node)
        stack.extend(n for n in node.input if n and n not in constants)
    if len(heads) != 1:
        raise ModelError(f"{path}: expected one int8 tensor before the float L2 normalisation, "
                         f"found {len(heads)}; is this a siamid int8 export?")
    other = sorted({n.op_type for n in tail} - _NORMALISATION)
    if other:
        raise ModelError(f"{path}: the float operators after the last int8 tensor are not an L2 "
                         f"normalisation ({', '.join(other)}); the TFLite export cuts the graph "
                         "there and would drop them")
    epsilon = 1e-12
    for node in tail:
        if node.op_type == "Clip" and len(node.input) > 1 and node.input[1] in constants:
            epsilon = float(np.asarray(constants[node.input[1]]).reshape(-1)[0])
        if node.op_type == "Max":
            for name in node.input:
                if name in constants:
                    epsilon = float(np.asarray(constants[name]).reshape(-1)[0])
    return next(iter(heads)), epsilon


def _ancestors(name, producers, constants) -> set[str]:
    needed, stack = set(), [name]
    while stack:
        n = stack.pop()
        if n in needed or n in constants:
            continue
        needed.add(n)
        node = producers.get(n)
        if node is not None:
            stack.extend(i for i in node.input if i)
    return needed


def _get(values, node, position):
    name = node.input[position]
    if name not in values:
        raise _fail(node, f"its input {name!r} is not computed from the image by supported "
                    "operators")
    return values[name]


def _qparams(node, constants) -> tuple[float, int, int]:
    """(scale, zero point, offset to int8) of a per-tensor Quantize/DequantizeLinear."""
    try:
        scale = np.asarray(constants[node.input[1]], np.float32)
        zp = np.asarray(constants[node.input[2]]) if len(node.input) > 2 and node.input[2] else \
            np.zeros((), np.uint8)
    except KeyError:
        raise _fail(node, "its scale and zero point are not constants") from None
    if scale.size != 1 or zp.size != 1:
        raise _fail(node, "activations must be quantized per tensor")
    if zp.dtype == np.uint8:
        offset = -128
    elif zp.dtype == np.int8:
        offset = 0
    else:
        raise _fail(node, f"activations must be uint8 or int8, not {zp.dtype}")
    return float(scale.reshape(-1)[0]), int(zp.reshape(-1)[0]), offset


def _weight(node, constants) -> _Weight:
    values = np.asarray(constants[node.input[0]])
    scale = np.asarray(constants[node.input[1]], np.float32).reshape(-1)
    zp = (np.asarray(constants[node.input[2]]).reshape(-1) if len(node.input) > 2 and node.input[2]
          else np.zeros(1, values.dtype))
    axis = 1
    for attr in node.attribute:
        if attr.name == "axis":
            axis = attr.i
    if values.dtype not in (np.int8, np.int32):
        raise _fail(node, f"weights must be int8 (biases int32), not {values.dtype}")
    if np.any(zp != 0):
        raise _fail(node, "weights must be quantized symmetrically (zero point 0)")
    return _Weight(values, scale, zp, axis % max(values.ndim, 1))


def _params(st: _State, tensor: int) -> tuple[float, int]:
    return st.graph.tensors[tensor].params


def _shape(st: _State, tensor: int) -> tuple[int, ...]:
    return st.graph.tensors[tensor].shape


def _input_grid(st: _State, inp: int, scale: float, zp: int, name: str) -> int:
    """The input on the ONNX input quantization: the input itself where the two agree (the
    ONNX model then sees the integer p for pixel p / 255), else a QUANTIZE."""
    if zp == INPUT_ZERO_POINT and abs(scale * 255.0 - 1.0) < 1e-4:
        return inp
    out = st.graph.activation(name, _shape(st, inp), scale, zp)
    return st.graph.emit("QUANTIZE", [inp], out)


def _int8(st: _State, value, node) -> int:
    """A tensor holding ``value`` exactly, on its own grid (a ReLU becomes a RELU op with the
    same quantization, which ``_fuse_relus`` folds into the op producing its input)."""
    if isinstance(value, _Real):
        if not value.relu:
            return value.tensor
        scale, zp = _params(st, value.tensor)
        t = st.graph.tensors[value.tensor]
        out = st.graph.activation(t.name + RELU_SUFFIX, t.shape, scale, zp)
        return st.graph.emit("RELU", [value.tensor], out)
    raise _fail(node, "its input is a float result with no QuantizeLinear before this operator")


def _quantize(st: _State, value, scale: float, zp: int, name: str, node) -> int:
    """``value`` rounded once onto (scale, zp): the ONNX QuantizeLinear."""
    if isinstance(value, _Pending):
        return value.emit(scale, zp, value.relu, name)
    if isinstance(value, _Real):
        same = _params(st, value.tensor) == (float(np.float32(scale)), zp)
        if same and not value.relu:
            return value.tensor
        out = st.graph.activation(name, _shape(st, value.tensor), scale, zp)
        if value.relu and zp > -128:
            return st.graph.emit("RELU", [value.tensor], out)
        # zero point -128: the requantization itself clamps the negative values to real 0.
        return st.graph.emit("QUANTIZE", [value.tensor], out)
    raise _fail(node, "quantizes a value that is not an activation")


def _activation(relu: bool) -> str:
    return "RELU" if relu else "NONE"


# -- operators -----------------------------------------------------------------------------------


def _attrs(node) -> dict:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _padding_mode(in_hw, kernel, strides, pads) -> str | None:
    """"VALID" or "SAME" where TFLite's padding reproduces ONNX's explicit ``pads``, else None."""
    if not any(pads):
        return "VALID"
    top, left, bottom, right = pads
    for size, k, s, before, after in ((in_hw[0], kernel[0], strides[0], top, bottom),
                                      (in_hw[1], kernel[1], strides[1], left, right)):
        out = (size + before + after - k) // s + 1
        total = max((math.ceil(size / s) - 1) * s + k - size, 0)
        if out != math.ceil(size / s) or total // 2 != before:
            return None
    return "SAME"


def _window(in_hw, kernel, strides, pads, st: _State, x: int) -> tuple[str, int]:
    """(padding, input) that reproduce ONNX's explicit ``pads``: SAME or VALID where one of them
    does, else VALID on a PAD of the input."""
    mode = _padding_mode(in_hw, kernel, strides, pads)
    if mode is not None:
        return mode, x
    top, left, bottom, right = pads
    scale, zp = _params(st, x)
    t = st.graph.tensors[x]
    shape = (1, in_hw[0] + top + bottom, in_hw[1] + left + right, t.shape[3])
    paddings = st.graph.constant(t.name + "/paddings",
                                 np.array([[0, 0], [top, bottom], [left, right], [0, 0]], np.int32))
    out = st.graph.activation(t.name + "/padded", shape, scale, zp)
    return "VALID", st.graph.emit("PAD", [x, paddings], out)


def _operands(node, values):
    """(input, weights, bias or None) of a Conv or Gemm whose weights and bias are quantized
    constants; ModelError naming the node otherwise."""
    x_value, w = _get(values, node, 0), _get(values, node, 1)
    b = _get(values, node, 2) if len(node.input) > 2 and node.input[2] else None
    if not isinstance(w, _Weight) or (b is not None and not isinstance(b, _Weight)):
        raise _fail(node, "its weights and bias must be quantized constants (int8, int32)")
    return x_value, w, b


def _conv(st: _State, node, values, constants):
    a = _attrs(node)
    x_value, w, b = _operands(node, values)
    if any(d != 1 for d in a.get("dilations", [1, 1])):
        raise _fail(node, "dilated convolutions are not supported")
    if a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        raise _fail(node, "auto_pad is not supported (export with explicit pads)")
    out_c, in_per_group, kh, kw = w.values.shape
    groups = a.get("group", 1)
    strides = tuple(a.get("strides", [1, 1]))
    pads = tuple(a.get("pads", [0, 0, 0, 0]))

    def emit(scale, zp, relu, name):
        x = _int8(st, x_value, node)
        _, h, wd, in_c = _shape(st, x)
        if groups == 1:
            code, kernel, axis = "CONV_2D", w.values.transpose(0, 2, 3, 1), 0  # OIHW -> OHWI
        elif groups == in_c and in_per_group == 1:
            code, kernel, axis = "DEPTHWISE_CONV_2D", w.values.transpose(1, 2, 3, 0), 3  # -> 1HWO
        else:
            raise _fail(node, f"grouped convolutions (groups={groups}, {in_c} input channels) "
                        "are not supported; only plain and depthwise ones")
        padding, xp = _window((h, wd), (kh, kw), strides, pads, st, x)
        in_scale, _ = _params(st, x)
        weights = st.graph.constant(name + "/weights", kernel.astype(np.int8), w.scale,
                                    np.zeros(out_c, np.int64), axis)
        bias = _bias(st, node, b, in_scale, w.scale, out_c, name)
        oh = (h + pads[0] + pads[2] - kh) // strides[0] + 1
        ow = (wd + pads[1] + pads[3] - kw) // strides[1] + 1
        out = st.graph.activation(name, (1, oh, ow, out_c), scale, zp)
        options = dict(padding=padding, stride=strides, activation=_activation(relu))
        if code == "DEPTHWISE_CONV_2D":
            options["depth_multiplier"] = out_c // in_c
        return st.graph.emit(code, [xp, weights, bias], out, **options)

    return _Pending(emit, ())


def _bias(st: _State, node, b: _Weight | None, in_scale: float, w_scale: np.ndarray, n: int,
          name: str) -> int:
    """int32 bias, scale = input scale x weight scale per channel (what the kernels check)."""
    scale = (np.float32(in_scale) * w_scale.astype(np.float32)).astype(np.float32)
    if b is None:
        values = np.zeros(n, np.int32)
    else:
        if b.values.dtype != np.int32 or b.values.size != n:
            raise _fail(node, f"its bias must be {n} int32 values, got {b.values.dtype} "
                        f"{b.values.shape}")
        want = np.broadcast_to(scale, b.scale.shape) if b.scale.size > 1 else scale[:1]
        if not np.allclose(b.scale, want, rtol=1e-3, atol=0):  # the input may be on 1/255
            raise _fail(node, "its bias scale is not input scale x weight scale")
        values = b.values.astype(np.int32).reshape(-1)
    return st.graph.constant(name + "/bias", values, scale, np.zeros(n, np.int64), 0)


def _gemm(st: _State, node, values, constants):
    a = _attrs(node)
    x_value, w, b = _operands(node, values)
    if a.get("transA", 0) or a.get("alpha", 1.0) != 1.0 or a.get("beta", 1.0) != 1.0:
        raise _fail(node, "only Gemm with transA=0, alpha=1, beta=1 is supported")
    kernel = w.values if a.get("transB", 0) else w.values.T
    if (w.axis == 0) != bool(a.get("transB", 0)) and w.scale.size > 1:
        raise _fail(node, "its weights must be quantized per output channel")
    out_n, k = kernel.shape

    def emit(scale, zp, relu, name):
        x = _int8(st, x_value, node)
        flat = st.flat_from.get(x)
        cols = kernel
        if flat is not None:  # NCHW flatten order -> NHWC flatten order
            c, h, wd = flat
            cols = kernel.reshape(out_n, c, h, wd).transpose(0, 2, 3, 1).reshape(out_n, k)
        if math.prod(_shape(st, x)) != k:
            raise _fail(node, f"input of {math.prod(_shape(st, x))} values for {k} weights")
        in_scale, _ = _params(st, x)
        weights = st.graph.constant(name + "/weights", cols.astype(np.int8), w.scale,
                                    np.zeros(w.scale.size, np.int64), 0)
        bias = _bias(st, node, b, in_scale, np.broadcast_to(w.scale, (out_n,)) if w.scale.size == 1
                     else w.scale, out_n, name)
        out = st.graph.activation(name, (1, out_n), scale, zp)
        return st.graph.emit("FULLY_CONNECTED", [x, weights, bias], out,
                             activation=_activation(relu))

    return _Pending(emit, (1, out_n))


def _relu(st: _State, node, values, constants):
    value = _get(values, node, 0)
    if isinstance(value, (_Real, _Pending)):
        return _Real(value.tensor, True) if isinstance(value, _Real) else \
            _Pending(value.emit, value.shape, True, value.flat_from)
    raise _fail(node, "applies to a value that is not an activation")


def _clip(st: _State, node, values, constants):
    bounds = [np.asarray(constants[n]).reshape(-1)[0] if n in constants else None
              for n in list(node.input[1:3]) + [""] * (3 - len(node.input))][:2]
    a = _attrs(node)
    low = bounds[0] if bounds[0] is not None else a.get("min")
    high = bounds[1] if bounds[1] is not None else a.get("max")
    if low == 0 and (high is None or np.isinf(high)):
        return _relu(st, node, values, constants)
    raise _fail(node, f"Clip({low}, {high}) is not supported; only Clip(0, inf), a ReLU")


def _average_pool(st: _State, node, values, constants):
    a = _attrs(node)
    value = _get(values, node, 0)
    kernel = tuple(a["kernel_shape"])
    strides = tuple(a.get("strides", [1, 1]))
    if any(a.get("pads", [0, 0, 0, 0])) or a.get("ceil_mode", 0):
        raise _fail(node, "padded or ceil-mode average pooling is not supported")

    def emit(scale, zp, relu, name):
        x = _int8(st, value, node)
        _, h, w, c = _shape(st, x)
        oh, ow = (h - kernel[0]) // strides[0] + 1, (w - kernel[1]) // strides[1] + 1
        out = st.graph.activation(name, (1, oh, ow, c), scale, zp)
        if _params(st, x) == (float(np.float32(scale)), zp):
            return st.graph.emit("AVERAGE_POOL_2D", [x], out, padding="VALID", stride=strides,
                                 filter=kernel, activation=_activation(relu))
        # Another output grid: an average pool would round onto the input's grid first. A
        # depthwise convolution of ones (scale 1 / window) rounds once, at its output.
        window = kernel[0] * kernel[1]
        ones = st.graph.constant(name + "/window", np.ones((1, *kernel, c), np.int8),
                                 np.full(c, 1.0 / window, np.float32), np.zeros(c, np.int64), 3)
        in_scale, _ = _params(st, x)
        bias = st.graph.constant(name + "/bias", np.zeros(c, np.int32),
                                 np.full(c, np.float32(in_scale) * np.float32(1.0 / window),
                                         np.float32), np.zeros(c, np.int64), 0)
        return st.graph.emit("DEPTHWISE_CONV_2D", [x, ones, bias], out, padding="VALID",
                             stride=strides, depth_multiplier=1, activation=_activation(relu))

    return _Pending(emit, ())


def _mean(st: _State, node, values, constants, axes=None, keep=None):
    a = _attrs(node)
    value = _get(values, node, 0)
    if axes is None:
        axes = a.get("axes")
        if axes is None and len(node.input) > 1 and node.input[1] in constants:
            axes = constants[node.input[1]].reshape(-1).tolist()
    keep = a.get("keepdims", 1) if keep is None else keep
    if sorted(int(x) % 4 for x in axes or []) != [2, 3]:
        raise _fail(node, f"only a mean over the spatial axes (2, 3) is supported, not {axes}")

    def emit(scale, zp, relu, name):
        x = _int8(st, value, node)
        _, h, w, c = _shape(st, x)
        axis = st.graph.constant(name + "/axes", np.array([1, 2], np.int32))
        out = st.graph.activation(name + ("/mean" if relu else ""),
                                  (1, 1, 1, c) if keep else (1, c), scale, zp)
        out = st.graph.emit("MEAN", [x, axis], out, keep_dims=bool(keep))
        return _quantize(st, _Real(out, True), scale, zp, name, node) if relu else out

    return _Pending(emit, ())


def _global_average_pool(st: _State, node, values, constants):
    return _mean(st, node, values, constants, axes=[2, 3], keep=1)


def _max_pool(st: _State, node, values, constants):
    a = _attrs(node)
    value = _get(values, node, 0)
    kernel = tuple(a["kernel_shape"])
    strides = tuple(a.get("strides", [1, 1]))
    pads = tuple(a.get("pads", [0, 0, 0, 0]))
    if a.get("ceil_mode", 0) or any(d != 1 for d in a.get("dilations", [1, 1])):
        raise _fail(node, "ceil-mode or dilated max pooling is not supported")

    def pool(x, name):
        _, h, w, c = _shape(st, x)
        # Max pooling ignores TFLite's SAME padding like ONNX's (-inf) padding.
        padding = _padding_mode((h, w), kernel, strides, pads)
        if padding is None:
            raise _fail(node, f"max-pool pads {pads} have no TFLite equivalent")
        oh = (h + pads[0] + pads[2] - kernel[0]) // strides[0] + 1
        ow = (w + pads[1] + pads[3] - kernel[1]) // strides[1] + 1
        scale, zp = _params(st, x)
        out = st.graph.activation(name, (1, oh, ow, c), scale, zp)
        return st.graph.emit("MAX_POOL_2D", [x], out, padding=padding, stride=strides,
                             filter=kernel)

    if isinstance(value, _Real):  # max commutes with the monotone requantization after it
        return _Real(pool(_int8(st, value, node), node.output[0]))
    if isinstance(value, _Pending):
        return _Pending(lambda s, z, relu, name: pool(value.emit(s, z, relu or value.relu, name + "/in"), name),
                        ())
    raise _fail(node, "pools a value that is not an activation")


def _reshape_to(st: _State, x: int, shape, name: str) -> int:
    scale, zp = _params(st, x)
    out = st.graph.activation(name, shape, scale, zp)
    new_shape = st.graph.constant(name + "/shape", np.array(shape, np.int32))
    return st.graph.emit("RESHAPE", [x, new_shape], out, new_shape=list(shape))


def _flatten(st: _State, node, values, constants):
    value = _get(values, node, 0)
    if node.op_type == "Flatten" and _attrs(node).get("axis", 1) != 1:
        raise _fail(node, "only Flatten(axis=1) is supported")
    if node.op_type == "Reshape":
        shape = constants.get(node.input[1])
        if shape is None or len(shape) != 2 or shape[0] not in (1, -1, 0):
            raise _fail(node, "only a Reshape to (batch, features) is supported")

    def flat(x, name):
        shape = _shape(st, x)
        if len(shape) == 2:
            return x
        out = _reshape_to(st, x, (1, math.prod(shape[1:])), name)
        if len(shape) == 4 and (shape[1] > 1 or shape[2] > 1):
            st.flat_from[out] = (shape[3], shape[1], shape[2])
        return out

    if isinstance(value, _Real):
        return _Real(flat(_int8(st, value, node), node.output[0]))
    if isinstance(value, _Pending):
        return _Pending(lambda s, z, relu, name: flat(value.emit(s, z, relu or value.relu, name + "/in"),
                                                            name),
                        ())
    raise _fail(node, "flattens a value that is not an activation")


def _add(st: _State, node, values, constants):
    a_value, b_value = _get(values, node, 0), _get(values, node, 1)
    if not (isinstance(a_value, _Real) and isinstance(b_value, _Real)):
        raise _fail(node, "only the sum of two quantized activations is supported")

    def emit(scale, zp, relu, name):
        a, b = _int8(st, a_value, node), _int8(st, b_value, node)
        if _shape(st, a) != _shape(st, b):
            raise _fail(node, f"broadcasting {_shape(st, a)} + {_shape(st, b)} is not supported")
        out = st.graph.activation(name, _shape(st, a), scale, zp)
        return st.graph.emit("ADD", [a, b], out, activation=_activation(relu))

    return _Pending(emit, ())


def _concat(st: _State, node, values, constants):
    parts = [_get(values, node, i) for i in range(len(node.input))]
    axis = _attrs(node).get("axis", 1)
    if not all(isinstance(p, _Real) for p in parts):
        raise _fail(node, "only a concatenation of quantized activations is supported")

    def emit(scale, zp, relu, name):
        # TFLite Micro concatenates int8 tensors of one grid: requantize each part onto the
        # output's (one rounding per element, as the float concatenation's QuantizeLinear).
        tensors = [_quantize(st, _Real(p.tensor, p.relu or relu), scale, zp, f"{name}/part{i}",
                             node) for i, p in enumerate(parts)]
        shapes = [_shape(st, t) for t in tensors]
        rank = len(shapes[0])
        ax = _NHWC_AXIS[axis % 4] if rank == 4 else axis % rank
        shape = list(shapes[0])
        shape[ax] = sum(s[ax] for s in shapes)
        out = st.graph.activation(name, tuple(shape), scale, zp)
        return st.graph.emit("CONCATENATION", tensors, out, axis=ax)

    return _Pending(emit, ())


def _identity(st: _State, node, values, constants):
    return _get(values, node, 0)


_HANDLERS = {
    "Conv": _conv, "Gemm": _gemm, "Relu": _relu, "Clip": _clip, "AveragePool": _average_pool,
    "GlobalAveragePool": _global_average_pool, "ReduceMean": _mean, "MaxPool": _max_pool,
    "Flatten": _flatten, "Reshape": _flatten, "Add": _add, "Concat": _concat,
    "Identity": _identity,
}


def _fuse_relus(graph: Graph) -> None:
    """Fold each RELU whose input and output share one grid into the operator producing its
    input (a fused activation clamps at the zero point: the same values), where that input
    feeds nothing else."""
    fusable = {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "ADD"}
    for op in list(graph.ops):
        if op.code != "RELU":
            continue
        src, dst = op.inputs[0], op.outputs[0]
        if graph.tensors[src].params != graph.tensors[dst].params:
            continue
        producer = graph.producer(src)
        if (producer is None or producer.code not in fusable
                or producer.options.get("activation", "NONE") != "NONE"
                or len(graph.consumers(src)) != 1 or src in graph.outputs):
            continue
        producer.options["activation"] = "RELU"
        producer.outputs = [dst]
        graph.ops.remove(op)
