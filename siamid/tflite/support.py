"""Which TFLite builtin operators TFLite Micro's kernels implement: a table, and the probe of the
installed ``tflite-micro`` interpreter's op resolver that checks it (tests/test_tflite.py).

The table is what the Python interpreter of tflite-micro (nightly 2026-10-23) registers; a
firmware build registers the subset it names in its MicroMutableOpResolver. ``siamid profile``
marks each operator of a .tflite file with it.
"""

from __future__ import annotations

__all__ = ["TFLM_BUILTIN_OPS", "tflm_registered_ops"]

TFLM_BUILTIN_OPS = frozenset({
    "ABS", "ADD", "ADD_N", "ARG_MAX", "ARG_MIN", "ASSIGN_VARIABLE", "AVERAGE_POOL_2D",
    "BATCH_MATMUL", "BATCH_TO_SPACE_ND", "BROADCAST_ARGS", "BROADCAST_TO", "CALL_ONCE", "CAST",
    "CEIL", "CONCATENATION", "CONV_2D", "COS", "CUMSUM", "DEPTHWISE_CONV_2D", "DEPTH_TO_SPACE",
    "DEQUANTIZE", "DIV", "DYNAMIC_UPDATE_SLICE", "ELU", "EMBEDDING_LOOKUP", "EQUAL", "EXP",
    "EXPAND_DIMS", "FILL", "FLOOR", "FLOOR_DIV", "FLOOR_MOD", "FULLY_CONNECTED", "GATHER",
    "GATHER_ND", "GREATER", "GREATER_EQUAL", "HARD_SWISH", "IF", "L2_NORMALIZATION", "L2_POOL_2D",
    "LEAKY_RELU", "LESS", "LESS_EQUAL", "LOG", "LOGICAL_AND", "LOGICAL_NOT", "LOGICAL_OR",
    "LOGISTIC", "LOG_SOFTMAX", "MAXIMUM", "MAX_POOL_2D", "MEAN", "MINIMUM", "MIRROR_PAD", "MUL",
    "NEG", "NOT_EQUAL", "PACK", "PAD", "PADV2", "PRELU", "QUANTIZE", "READ_VARIABLE",
    "REDUCE_ALL", "REDUCE_MAX", "REDUCE_MIN", "RELU", "RELU6", "RESHAPE", "RESIZE_BILINEAR",
    "RESIZE_NEAREST_NEIGHBOR", "REVERSE_V2", "ROUND", "RSQRT", "SELECT_V2", "SHAPE", "SIN",
    "SLICE", "SOFTMAX", "SPACE_TO_BATCH_ND", "SPACE_TO_DEPTH", "SPLIT", "SPLIT_V", "SQRT",
    "SQUARE", "SQUARED_DIFFERENCE", "SQUEEZE", "STRIDED_SLICE", "SUB", "SUM", "SVDF", "TANH",
    "TRANSPOSE", "TRANSPOSE_CONV", "UNIDIRECTIONAL_SEQUENCE_LSTM", "UNPACK", "WHILE",
    "ZEROS_LIKE",
})


def _probe_model(fb, code: int) -> bytes:
    """Two operators: ``code``, then a CUSTOM one no resolver has. TFLite Micro looks every
    operator up before it prepares any, so loading fails at the first one it lacks, saying
    which, and no kernel ever runs on this meaningless graph."""
    import flatbuffers
    import numpy as np

    model = fb.ModelT()
    model.version = 3
    model.operatorCodes = []
    for builtin, custom in ((code, None), (fb.BuiltinOperator.CUSTOM, "siamid_probe")):
        oc = fb.OperatorCodeT()
        oc.builtinCode, oc.deprecatedBuiltinCode, oc.version = builtin, min(builtin, 127), 1
        oc.customCode = custom
        model.operatorCodes.append(oc)
    tensor = fb.TensorT()
    tensor.name, tensor.shape, tensor.type, tensor.buffer = "x", np.array([1], np.int32), \
        fb.TensorType.INT8, 0
    subgraph = fb.SubGraphT()
    subgraph.tensors = [tensor]
    subgraph.inputs = subgraph.outputs = np.array([0], np.int32)
    subgraph.operators = []
    for index in range(2):
        op = fb.OperatorT()
        op.opcodeIndex, op.inputs, op.outputs = index, np.array([0], np.int32), np.array([0], np.int32)
        subgraph.operators.append(op)
    model.subgraphs, model.buffers = [subgraph], [fb.BufferT()]
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def tflm_registered_ops() -> frozenset[str]:
    """The builtin operators the installed tflite-micro interpreter's op resolver registers,
    found by loading a probe model for each (``_probe_model``)."""
    from .flatbuf import schema
    from .run import _captured_stderr, _tflm

    fb, runtime = schema(), _tflm()
    found = set()
    for name, code in vars(fb.BuiltinOperator).items():
        if name.startswith("_") or code == fb.BuiltinOperator.CUSTOM:
            continue
        with _captured_stderr() as log:
            try:
                runtime.Interpreter.from_bytes(_probe_model(fb, code), arena_size=4096)
            except Exception:  # always: the CUSTOM operator is never found
                pass
        if "op code CUSTOM" in log[0]:  # got past ``code`` to the custom operator
            found.add(name)
    return frozenset(found)
