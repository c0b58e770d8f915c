"""The .tflite file format: a ``Graph`` -> TFLite flatbuffer bytes, and what a file holds.

Written with the ``flatbuffers`` package and the TFLite schema's generated Python module (Apache
2.0, like siamid), which ``ai-edge-litert`` and ``tflite-micro`` both ship: no TensorFlow. Every
buffer's data starts on a 16-byte boundary (the schema's ``force_align: 16``, which the Python
object API does not honour by itself): TFLite Micro on a Cortex-M reads int32 biases and weights
in place. Named metadata entries (``Model.metadata``, each pointing at a buffer) carry siamid's
JSON; LiteRT and TFLite Micro ignore names they do not know.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ConfigError, ModelError
from .graph import Graph

__all__ = ["ALIGNMENT", "FileInfo", "TensorEntry", "OpEntry", "read", "read_metadata", "schema",
           "write"]

#: Byte alignment of every buffer's data in the written file.
ALIGNMENT = 16
_IDENTIFIER = b"TFL3"
_SCHEMA_VERSION = 3

# Operator versions as TFLite's converter records them for int8 kernels (per-channel weights,
# int8 activations); LiteRT looks a kernel up by (operator, version), TFLite Micro by operator.
_VERSIONS = {"CONV_2D": 3, "DEPTHWISE_CONV_2D": 3, "FULLY_CONNECTED": 4, "AVERAGE_POOL_2D": 2,
             "MAX_POOL_2D": 2, "MEAN": 2, "ADD": 2, "CONCATENATION": 2, "RESHAPE": 1,
             "PAD": 2, "QUANTIZE": 2, "RELU": 2}


def schema():
    """The TFLite schema's generated module (``tflite`` flatbuffers namespace); ConfigError
    naming the extra where neither package that ships it is installed."""
    try:
        from ai_edge_litert import schema_py_generated as fb
    except ImportError:
        try:
            from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as fb
        except ImportError as exc:
            raise ConfigError(
                f"reading or writing .tflite files needs the TFLite schema ({exc}); install the "
                "microcontroller extra: pip install 'siamid[mcu]' (ai-edge-litert, tflite-micro, "
                "flatbuffers)") from None
    return fb


def _names(enum) -> dict[int, str]:
    return {v: k for k, v in vars(enum).items() if not k.startswith("_")}


# -- writing -------------------------------------------------------------------------------------


def _aligned_buffer(fb):
    """A BufferT whose data vector starts on an ``ALIGNMENT`` boundary."""

    class AlignedBuffer(fb.BufferT):
        def Pack(self, builder):
            data = None
            if self.data is not None and len(self.data):
                payload = bytes(self.data)
                builder.StartVector(1, len(payload), ALIGNMENT)
                builder.head -= len(payload)
                builder.Bytes[builder.head:builder.head + len(payload)] = payload
                data = builder.EndVector()
            fb.BufferStart(builder)
            if data is not None:
                fb.BufferAddData(builder, data)
            return fb.BufferEnd(builder)

    return AlignedBuffer


def _options(fb, code: str, o: dict):
    """(BuiltinOptions type, options object) of one operator."""
    act = getattr(fb.ActivationFunctionType, o.get("activation", "NONE"))
    pad = getattr(fb.Padding, o.get("padding", "VALID"))
    sh, sw = o.get("stride", (1, 1))
    if code in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        opt = fb.Conv2DOptionsT() if code == "CONV_2D" else fb.DepthwiseConv2DOptionsT()
        opt.padding, opt.strideH, opt.strideW, opt.fusedActivationFunction = pad, sh, sw, act
        opt.dilationHFactor = opt.dilationWFactor = 1
        if code == "DEPTHWISE_CONV_2D":
            opt.depthMultiplier = o["depth_multiplier"]
            return fb.BuiltinOptions.DepthwiseConv2DOptions, opt
        return fb.BuiltinOptions.Conv2DOptions, opt
    if code in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
        opt = fb.Pool2DOptionsT()
        opt.padding, opt.strideH, opt.strideW, opt.fusedActivationFunction = pad, sh, sw, act
        opt.filterHeight, opt.filterWidth = o["filter"]
        return fb.BuiltinOptions.Pool2DOptions, opt
    if code == "FULLY_CONNECTED":
        opt = fb.FullyConnectedOptionsT()
        opt.fusedActivationFunction, opt.keepNumDims = act, False
        return fb.BuiltinOptions.FullyConnectedOptions, opt
    if code == "ADD":
        opt = fb.AddOptionsT()
        opt.fusedActivationFunction = act
        return fb.BuiltinOptions.AddOptions, opt
    if code == "CONCATENATION":
        opt = fb.ConcatenationOptionsT()
        opt.axis, opt.fusedActivationFunction = o["axis"], act
        return fb.BuiltinOptions.ConcatenationOptions, opt
    if code == "RESHAPE":
        opt = fb.ReshapeOptionsT()
        opt.newShape = list(o["new_shape"])
        return fb.BuiltinOptions.ReshapeOptions, opt
    if code == "MEAN":
        opt = fb.ReducerOptionsT()
        opt.keepDims = bool(o.get("keep_dims", False))
        return fb.BuiltinOptions.ReducerOptions, opt
    if code == "PAD":
        return fb.BuiltinOptions.PadOptions, fb.PadOptionsT()
    if code == "QUANTIZE":
        return fb.BuiltinOptions.QuantizeOptions, fb.QuantizeOptionsT()
    return fb.BuiltinOptions.NONE, None


def write(graph: Graph, metadata: dict[str, bytes], description: str = "") -> bytes:
    """The .tflite bytes of ``graph``, with ``metadata`` (name -> bytes) in ``Model.metadata``."""
    import flatbuffers

    fb = schema()
    buffer_type = _aligned_buffer(fb)
    buffers = [buffer_type()]  # buffer 0: the empty sentinel every activation points at
    tensors = []
    for t in graph.tensors:
        ft = fb.TensorT()
        ft.name = t.name
        ft.shape = np.array(t.shape, np.int32)
        ft.type = fb.TensorType.INT8 if t.dtype == "int8" else fb.TensorType.INT32
        ft.buffer = 0
        if t.data is not None:
            buf = buffer_type()
            buf.data = np.ascontiguousarray(t.data, "<" + t.data.dtype.str[1:]).view(np.uint8).reshape(-1)
            buffers.append(buf)
            ft.buffer = len(buffers) - 1
        if t.scale is not None:
            q = fb.QuantizationParametersT()
            q.scale = np.asarray(t.scale, np.float32)
            q.zeroPoint = np.asarray(t.zero_point, np.int64)
            q.quantizedDimension = t.axis
            ft.quantization = q
        tensors.append(ft)

    codes: list[str] = []
    operators = []
    for op in graph.ops:
        if op.code not in codes:
            codes.append(op.code)
        fo = fb.OperatorT()
        fo.opcodeIndex = codes.index(op.code)
        fo.inputs = np.array(op.inputs, np.int32)
        fo.outputs = np.array(op.outputs, np.int32)
        fo.builtinOptionsType, fo.builtinOptions = _options(fb, op.code, op.options)
        operators.append(fo)
    opcodes = []
    for code in codes:
        oc = fb.OperatorCodeT()
        oc.builtinCode = getattr(fb.BuiltinOperator, code)
        # Codes above 127 live only in builtinCode; the deprecated byte holds a placeholder.
        oc.deprecatedBuiltinCode = min(oc.builtinCode, 127)
        oc.version = _VERSIONS.get(code, 1)
        opcodes.append(oc)

    subgraph = fb.SubGraphT()
    subgraph.name = "main"
    subgraph.tensors, subgraph.operators = tensors, operators
    subgraph.inputs = np.array(graph.inputs, np.int32)
    subgraph.outputs = np.array(graph.outputs, np.int32)

    entries = []
    for name, payload in metadata.items():
        buf = buffer_type()
        buf.data = np.frombuffer(payload, np.uint8)
        buffers.append(buf)
        md = fb.MetadataT()
        md.name, md.buffer = name, len(buffers) - 1
        entries.append(md)

    model = fb.ModelT()
    model.version = _SCHEMA_VERSION
    model.description = description
    model.operatorCodes, model.subgraphs = opcodes, [subgraph]
    model.buffers, model.metadata = buffers, entries
    size = sum(len(b.data) for b in buffers if b.data is not None)
    builder = flatbuffers.Builder(size + 64 * 1024)
    builder.Finish(model.Pack(builder), file_identifier=_IDENTIFIER)
    return bytes(builder.Output())


# -- reading -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TensorEntry:
    name: str
    shape: tuple[int, ...]
    dtype: str
    scale: tuple[float, ...]
    zero_point: tuple[int, ...]
    data_bytes: int  # bytes of its constant data, 0 for an activation


@dataclass(frozen=True)
class OpEntry:
    code: str
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    options: dict


@dataclass(frozen=True)
class FileInfo:
    """What a .tflite file holds (its first subgraph), read without running it."""

    tensors: tuple[TensorEntry, ...]
    ops: tuple[OpEntry, ...]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    metadata: dict[str, bytes]
    buffer_offsets: tuple[int, ...]  # file offset of each non-empty buffer's data


def _root(data: bytes, path):
    fb = schema()
    if len(data) < 8 or not fb.Model.ModelBufferHasIdentifier(data, 0):
        raise ModelError(f"{path} is not a TFLite model (no {_IDENTIFIER.decode()} identifier); "
                         "pass a .tflite file written by `siamid export --format tflite`")
    return fb, fb.Model.GetRootAsModel(bytearray(data), 0)


def read_metadata(data: bytes, path: str | Path = "model") -> dict[str, bytes]:
    """Name -> bytes of each ``Model.metadata`` entry; ModelError if ``data`` is not a
    readable .tflite file."""
    fb, model = _root(data, path)
    try:
        out = {}
        for i in range(model.MetadataLength()):
            entry = model.Metadata(i)
            buf = model.Buffers(entry.Buffer())
            if buf.Offset() > 1:  # data kept after the flatbuffer (files over 2 GB)
                out[entry.Name().decode()] = bytes(data[buf.Offset():buf.Offset() + buf.Size()])
            else:
                out[entry.Name().decode()] = buf.DataAsNumpy().tobytes() if buf.DataLength() else b""
        return out
    except Exception as exc:  # a damaged flatbuffer fails in struct, index or decode errors
        raise ModelError(f"{path} is a damaged TFLite file ({type(exc).__name__}: {exc}); "
                         "export it again") from exc


def read(data: bytes, path: str | Path = "model") -> FileInfo:
    """The tensors, operators, I/O, metadata and buffer offsets of a .tflite file."""
    fb, model = _root(data, path)
    types, ops = _names(fb.TensorType), _names(fb.BuiltinOperator)
    try:
        g = model.Subgraphs(0)
        tensors, offsets = [], []
        for i in range(model.BuffersLength()):
            b = model.Buffers(i)
            if b.DataLength():
                offsets.append(b._tab.Vector(b._tab.Offset(4)))
        for i in range(g.TensorsLength()):
            t = g.Tensors(i)
            q = t.Quantization()
            b = model.Buffers(t.Buffer())
            tensors.append(TensorEntry(
                name=t.Name().decode(), shape=tuple(int(d) for d in t.ShapeAsNumpy())
                if t.ShapeLength() else (), dtype=types.get(t.Type(), "?").lower(),
                scale=tuple(float(s) for s in q.ScaleAsNumpy()) if q and q.ScaleLength() else (),
                zero_point=tuple(int(z) for z in q.ZeroPointAsNumpy())
                if q and q.ZeroPointLength() else (),
                data_bytes=int(b.DataLength())))
        entries = []
        for i in range(g.OperatorsLength()):
            o = g.Operators(i)
            oc = model.OperatorCodes(o.OpcodeIndex())
            code = ops.get(max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode()), "?")
            entries.append(OpEntry(code, tuple(int(x) for x in o.InputsAsNumpy()),
                                   tuple(int(x) for x in o.OutputsAsNumpy()), _read_options(fb, o)))
        return FileInfo(tuple(tensors), tuple(entries), tuple(int(x) for x in g.InputsAsNumpy()),
                        tuple(int(x) for x in g.OutputsAsNumpy()), read_metadata(data, path),
                        tuple(offsets))
    except ModelError:
        raise
    except Exception as exc:
        raise ModelError(f"{path} is a damaged TFLite file ({type(exc).__name__}: {exc}); "
                         "export it again") from exc


def _read_options(fb, op) -> dict:
    """Kernel geometry of convolutions and pools (what MAC counting needs)."""
    kind = op.BuiltinOptionsType()
    table = op.BuiltinOptions()
    if table is None:
        return {}
    for name, cls in (("Conv2DOptions", "Conv2DOptions"),
                      ("DepthwiseConv2DOptions", "DepthwiseConv2DOptions"),
                      ("Pool2DOptions", "Pool2DOptions")):
        if kind == getattr(fb.BuiltinOptions, name):
            opt = getattr(fb, cls)()
            opt.Init(table.Bytes, table.Pos)
            out = {"stride": (opt.StrideH(), opt.StrideW())}
            if cls == "Pool2DOptions":
                out["filter"] = (opt.FilterHeight(), opt.FilterWidth())
            return out
    return {}
