"""The int8 TFLite graph siamid writes, as plain Python objects (no flatbuffers, no onnx).

``lowering`` builds a ``Graph`` from an int8 ONNX model; ``flatbuf`` serialises it. Tensors are
NHWC like TFLite's; every activation tensor is int8 with one scale and zero point, every weight
tensor int8 with a scale per output channel (``axis``), every bias int32 with scale = input scale
x weight scale of its channel.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Graph", "Op", "Tensor"]


@dataclass
class Tensor:
    """One tensor: ``data`` is None for activations (computed at run time).

    ``scale`` / ``zero_point`` hold one value (per tensor) or one per channel along ``axis``;
    both are None for tensors that are not quantized (shapes, axes, paddings: int32 constants).
    """

    name: str
    shape: tuple[int, ...]
    dtype: str  # "int8" or "int32"
    scale: np.ndarray | None = None
    zero_point: np.ndarray | None = None
    axis: int = 0
    data: np.ndarray | None = None

    @property
    def params(self) -> tuple[float, int]:
        """(scale, zero point) of a per-tensor quantized tensor."""
        return float(self.scale[0]), int(self.zero_point[0])


@dataclass
class Op:
    """One builtin operator (``code`` is its TFLite name, e.g. ``"CONV_2D"``) and its options:
    ``padding`` ("SAME"/"VALID"), ``stride`` (h, w), ``filter`` (h, w), ``activation``
    ("NONE"/"RELU"), ``depth_multiplier``, ``axis``, ``keep_dims``, ``new_shape``."""

    code: str
    inputs: list[int]
    outputs: list[int]
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class Graph:
    tensors: list[Tensor] = field(default_factory=list)
    ops: list[Op] = field(default_factory=list)
    inputs: list[int] = field(default_factory=list)
    outputs: list[int] = field(default_factory=list)

    def add(self, tensor: Tensor) -> int:
        self.tensors.append(tensor)
        return len(self.tensors) - 1

    def activation(self, name: str, shape, scale: float, zero_point: int) -> int:
        """A new int8 activation tensor quantized per tensor."""
        return self.add(Tensor(name, tuple(int(d) for d in shape), "int8",
                               np.array([scale], np.float32), np.array([zero_point], np.int64)))

    def constant(self, name: str, data: np.ndarray, scale=None, zero_point=None,
                 axis: int = 0) -> int:
        data = np.ascontiguousarray(data)
        dtype = {np.dtype(np.int8): "int8", np.dtype(np.int32): "int32"}[data.dtype]
        return self.add(Tensor(name, tuple(data.shape), dtype,
                               None if scale is None else np.asarray(scale, np.float32).reshape(-1),
                               None if zero_point is None
                               else np.asarray(zero_point, np.int64).reshape(-1), axis, data))

    def emit(self, code: str, inputs: list[int], output: int, **options: Any) -> int:
        self.ops.append(Op(code, list(inputs), [output], options))
        return output

    def consumers(self, tensor: int) -> list[Op]:
        return [op for op in self.ops if tensor in op.inputs]

    def producer(self, tensor: int) -> Op | None:
        return next((op for op in self.ops if tensor in op.outputs), None)

    def prune(self) -> None:
        """Drop tensors no operator, input or output refers to; renumber the references."""
        used = set(self.inputs) | set(self.outputs)
        for op in self.ops:
            used |= {i for i in op.inputs if i >= 0} | set(op.outputs)
        keep = sorted(used)
        index = {old: new for new, old in enumerate(keep)}
        self.tensors = [self.tensors[i] for i in keep]
        self.inputs = [index[i] for i in self.inputs]
        self.outputs = [index[i] for i in self.outputs]
        for op in self.ops:
            op.inputs = [index[i] if i >= 0 else -1 for i in op.inputs]
            op.outputs = [index[i] for i in op.outputs]
