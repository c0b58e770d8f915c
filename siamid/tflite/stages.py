"""Operator-by-operator verification of a .tflite export against its int8 ONNX model.

The end-to-end comparison (``run.verify``) mixes two things: whether each TFLite operator
computes what its ONNX counterpart computes, and how the two runtimes' rounding differences grow
through a trained network (onnxruntime requantizes in float32, TFLite in fixed point, so a value
within a hair of a half step rounds one way in one and the other way in the other, and every later
layer carries the one-step difference on, multiplied by its weights). This module separates them.

Every int8 tensor of the .tflite that is a rounding point of the ONNX model (the output of one of
its QuantizeLinear nodes) is an *anchor*. onnxruntime gives the anchors' values for each image;
each TFLite operator then runs alone (a one-operator .tflite, written by the same writer, in
LiteRT and in TFLite Micro) on its inputs taken from onnxruntime where they are anchors, else from
the operators before it (a PAD, a RESHAPE, a requantized concatenation part), and its output is
compared with onnxruntime's where it is an anchor (or a ReLU of one on its grid, which the ONNX
model computes in float, exactly: max(anchor, zero point)). One step at most at every anchor means the file
computes what the ONNX model computes, operator by operator.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ModelError
from .graph import Graph, Tensor

__all__ = ["TOLERANCE_STEPS", "StageCheck", "StageVerification", "verify_stages"]

#: Each operator, given the ONNX model's int8 inputs, may differ from its int8 output by this
#: many steps: one rounding, float32 in one runtime and fixed point in the other.
TOLERANCE_STEPS = 1


@dataclass(frozen=True)
class StageCheck:
    """One anchor: the TFLite operators that compute it from the anchors before it, and how far
    their output is from onnxruntime's, in steps of the anchor's grid."""

    tensor: str
    ops: tuple[str, ...]
    values: int  # per image
    litert_max_steps: int
    litert_off: int  # values (all images) that differ at all
    tflm_max_steps: int
    tflm_off: int


@dataclass(frozen=True)
class StageVerification:
    stages: tuple[StageCheck, ...]
    images: int
    tflm_images: int
    #: onnxruntime's head output with every anchor fetched equals its output alone: fetching the
    #: anchors did not change how it computes.
    reference_unchanged: bool

    @property
    def max_steps(self) -> int:
        return max((max(s.litert_max_steps, s.tflm_max_steps) for s in self.stages), default=0)

    @property
    def passed(self) -> bool:
        return self.max_steps <= TOLERANCE_STEPS

    @property
    def worst(self) -> StageCheck | None:
        return max(self.stages, key=lambda s: max(s.litert_max_steps, s.tflm_max_steps),
                   default=None)


def _anchor_names(model) -> set[str]:
    return {n.output[0] for n in model.graph.node if n.op_type == "QuantizeLinear"}


def _onnx_values(model, names: list[str], images: np.ndarray) -> dict[str, np.ndarray]:
    """onnxruntime's values of the model's output and of ``names`` (int8 ones as TFLite int8:
    uint8 - 128), batch-first."""
    from .run import onnx_values

    values = onnx_values(model, [model.graph.output[0].name, *names], images)
    return {name: (v.astype(np.int16) - 128).astype(np.int8) if v.dtype == np.uint8 else v
            for name, v in values.items()}


def _as_tflite(value: np.ndarray, tensor: Tensor, source: Tensor | None) -> np.ndarray:
    """An ONNX anchor (N, C, H, W) or (N, F) in the TFLite tensor's layout (N, H, W, C) or
    (N, F); a flattened anchor after a RESHAPE of (1, H, W, C) in TFLite's H, W, C order."""
    n = len(value)
    if value.ndim == 4:
        value = value.transpose(0, 2, 3, 1)
    elif value.ndim == 2 and source is not None and len(source.shape) == 4:
        _, h, w, c = source.shape
        if value.shape[1] == h * w * c:
            value = value.reshape(n, c, h, w).transpose(0, 2, 3, 1).reshape(n, -1)
    shape = (n, *tensor.shape[1:])
    if value.size != int(np.prod(shape)):
        raise ModelError(f"tensor {tensor.name!r}: onnxruntime gives shape {value.shape}, the "
                         f".tflite has {tensor.shape}")
    return np.ascontiguousarray(value.reshape(shape))


def _single_op_graph(graph: Graph, index: int) -> tuple[Graph, list[int]]:
    """Operator ``index`` of ``graph`` alone: its activation inputs become the graph's inputs.
    Returns the graph and the original tensor indices of its inputs, in order."""
    op = graph.ops[index]
    g = Graph()
    remap: dict[int, int] = {}
    feeds: list[int] = []
    for t in [*op.inputs, *op.outputs]:
        if t < 0 or t in remap:
            continue
        remap[t] = g.add(graph.tensors[t])
        if graph.tensors[t].data is None and t in op.inputs:
            g.inputs.append(remap[t])
            feeds.append(t)
    g.ops = [type(op)(op.code, [remap.get(t, -1) if t >= 0 else -1 for t in op.inputs],
                      [remap[t] for t in op.outputs], dict(op.options))]
    g.outputs = [remap[op.outputs[0]]]
    return g, feeds


def _steps(a: np.ndarray, b: np.ndarray) -> tuple[int, int]:
    if not len(a):
        return 0, 0
    diff = np.abs(a.astype(np.int16) - b.astype(np.int16))
    return int(diff.max()), int(np.count_nonzero(diff))


def verify_stages(int8_onnx: str | Path, images: np.ndarray,
                  tflm_images: int | None = None) -> StageVerification:
    """Run every operator of ``int8_onnx``'s TFLite lowering alone on onnxruntime's values of its
    inputs, for float32 (N, C, H, W) network ``images`` (the first ``tflm_images`` of them in
    TFLite Micro too, all where None), and compare each anchor with onnxruntime's."""
    import onnx

    from . import flatbuf
    from .lowering import RELU_SUFFIX, lower
    from .run import LiteRTRunner, int8_inputs, tflm_run_feeds

    model = onnx.load(str(int8_onnx))
    graph = lower(model, int8_onnx).graph
    images = np.asarray(images, np.float32)
    n_micro = len(images) if tflm_images is None else min(int(tflm_images), len(images))
    anchors = _anchor_names(model)
    names = sorted({t.name.removesuffix(RELU_SUFFIX) for t in graph.tensors
                    if t.data is None and t.name.removesuffix(RELU_SUFFIX) in anchors})
    reference = _onnx_values(model, names, images)
    for t in graph.tensors:  # a ReLU on an anchor's grid: max(anchor, zero point), exactly
        base = t.name.removesuffix(RELU_SUFFIX)
        if t.data is None and t.name.endswith(RELU_SUFFIX) and base in reference:
            reference[t.name] = np.maximum(reference[base], np.int8(t.params[1]))
    head = model.graph.output[0].name
    alone = _onnx_values(model, [], images)[head]
    unchanged = bool(np.array_equal(alone, reference[head]))

    producer_input = {op.outputs[0]: op.inputs[0] for op in graph.ops}
    known: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # tensor -> (LiteRT values, TFLM values)
    for t in graph.inputs:
        x = int8_inputs(images)
        known[t] = (x, x[:n_micro])

    def value_of(t: int) -> tuple[np.ndarray, np.ndarray]:
        tensor = graph.tensors[t]
        if tensor.name in reference and t not in graph.inputs:
            source = producer_input.get(t)
            v = _as_tflite(reference[tensor.name], tensor,
                           graph.tensors[source] if source is not None else None)
            return v, v[:n_micro]
        return known[t]

    stages: list[StageCheck] = []
    pending: list[str] = []
    for index, op in enumerate(graph.ops):
        single, feeds = _single_op_graph(graph, index)
        data = flatbuf.write(single, {})
        lite_in = [value_of(t)[0] for t in feeds]
        micro_in = [value_of(t)[1] for t in feeds]
        out = op.outputs[0]
        lite = LiteRTRunner(data).run_feeds(lite_in)
        micro = tflm_run_feeds(data, micro_in) if n_micro else lite[:0]
        known[out] = (lite, micro)
        pending.append(op.code)
        tensor = graph.tensors[out]
        if tensor.name in reference:
            expected = value_of(out)[0]
            lmax, loff = _steps(lite, expected)
            mmax, moff = _steps(micro, expected[:n_micro])
            stages.append(StageCheck(tensor.name, tuple(pending), int(np.prod(tensor.shape[1:])),
                                     lmax, loff, mmax, moff))
            pending = []
    return StageVerification(tuple(stages), len(images), n_micro, unchanged)
