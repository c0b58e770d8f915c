"""Running a siamid .tflite file: in LiteRT (``ai-edge-litert``, what a Linux device or a phone
runs) and in the TFLite Micro interpreter (``tflite-micro``: the reference kernels a
microcontroller runs), the tensor arena TFLite Micro needs, and the int8 ONNX model's output at the
same cut for comparison.

Every runner takes network inputs the way the rest of siamid has them, float32 (N, C, H, W) of
values p / 255, and returns the int8 head outputs (N, D) before the L2 normalisation, batch 1 at a
time (the file's batch).
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import ConfigError, ModelError

__all__ = ["Verification", "arena_bytes", "int8_inputs", "litert_outputs", "normalise",
           "onnx_int8_outputs", "onnx_values", "tflm_outputs", "tflm_run_feeds", "verify"]

# Arena for the measuring run: more than any siamid tower needs; the figure reported is what the
# interpreter's recording allocator says it used.
_MEASURE_ARENA = 16 * 1024 * 1024


def int8_inputs(images: np.ndarray) -> np.ndarray:
    """float32 (N, C, H, W) network inputs p / 255 -> the file's int8 (N, H, W, C) input p - 128."""
    images = np.asarray(images, np.float32)
    if images.ndim != 4:
        raise ModelError(f"network inputs must be (N, C, H, W), got shape {images.shape}")
    pixels = np.clip(np.rint(images * 255.0), 0, 255).astype(np.int16)
    return (pixels - 128).astype(np.int8).transpose(0, 2, 3, 1).copy()


def normalise(raw: np.ndarray, scale: float, zero_point: int, epsilon: float) -> np.ndarray:
    """int8 head outputs -> L2-normalised float signatures, as the ONNX model's tail computes."""
    real = (raw.astype(np.float32) - np.float32(zero_point)) * np.float32(scale)
    norm = np.maximum(np.linalg.norm(real, axis=1, keepdims=True), np.float32(epsilon))
    return (real / norm).astype(np.float32)


def _litert():
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as exc:
        raise ConfigError(f"running a .tflite file needs LiteRT ({exc}); install the "
                          "microcontroller extra: pip install 'siamid[mcu]'") from None
    return Interpreter


def _tflm():
    try:
        from tflite_micro import runtime
    except ImportError as exc:
        raise ConfigError(f"running TFLite Micro needs the tflite-micro package ({exc}); install "
                          "the microcontroller extra: pip install 'siamid[mcu]'") from None
    return runtime


@contextlib.contextmanager
def _captured_stderr() -> Iterator[list[str]]:
    """Capture what C++ code writes to file descriptor 2 (LiteRT's and TFLite Micro's logs):
    library code prints nothing. The text is in the yielded list once the block ends."""
    text: list[str] = []
    with tempfile.TemporaryFile(mode="w+b") as captured:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(captured.fileno(), 2)
        try:
            yield text
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            text.append(captured.read().decode(errors="replace"))


class LiteRTRunner:
    """One LiteRT interpreter on the file's bytes, single-threaded, with LiteRT's own int8
    kernels. Not the XNNPACK delegate LiteRT applies by default: its int8 requantization
    (QUANTIZE) rounds differently from TFLite's reference arithmetic and from onnxruntime, by up
    to 3 steps at the output on the shipped tiny model, where LiteRT's kernels differ by at most 2."""

    def __init__(self, data: bytes, path="model") -> None:
        Interpreter = _litert()
        from ai_edge_litert.interpreter import OpResolverType

        try:
            with _captured_stderr():
                self._it = Interpreter(
                    model_content=bytes(data), num_threads=1,
                    experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
                self._it.allocate_tensors()
        except ConfigError:
            raise
        except Exception as exc:
            raise ModelError(f"LiteRT cannot load {path}: {exc}") from exc
        self._in = [d["index"] for d in self._it.get_input_details()]
        self._out = self._it.get_output_details()[0]["index"]

    def run(self, inputs: np.ndarray) -> np.ndarray:
        """int8 (N, H, W, C) -> int8 (N, D)."""
        out = self.run_feeds([inputs])
        return out.reshape(len(out), -1) if len(out) else np.zeros((0, 0), np.int8)

    def run_feeds(self, feeds: list[np.ndarray]) -> np.ndarray:
        """One batch-first int8 array per model input -> the output, batch-first."""
        return _each_image(feeds, self._run_one)

    def _run_one(self, inputs: list[np.ndarray]) -> np.ndarray:
        for index, x in zip(self._in, inputs):
            self._it.set_tensor(index, x)
        self._it.invoke()
        return self._it.get_tensor(self._out)


def _each_image(feeds: list[np.ndarray], run_one) -> np.ndarray:
    """``run_one([x1[None], x2[None], ...])`` for each image of the batch-first ``feeds``; the
    outputs (batch 1) stacked batch-first."""
    outs = [np.asarray(run_one([f[i][None] for f in feeds]))[0].copy()
            for i in range(len(feeds[0]))]
    return np.stack(outs) if outs else np.zeros((0,), np.int8)


def litert_outputs(data: bytes, images: np.ndarray) -> np.ndarray:
    """The file's int8 outputs (N, D) in LiteRT for float32 (N, C, H, W) network inputs."""
    return LiteRTRunner(data).run(int8_inputs(images))


def _tflm_interpreter(data: bytes, arena: int):
    runtime = _tflm()
    try:
        with _captured_stderr() as log:
            return runtime.Interpreter.from_bytes(bytes(data), arena_size=arena)
    except Exception as exc:
        said = " ".join(log[0].split())[:300] if log else ""
        raise ModelError(f"TFLite Micro cannot load the model: {exc}"
                         + (f" ({said})" if said else "")) from exc


def tflm_outputs(data: bytes, images: np.ndarray) -> np.ndarray:
    """The file's int8 outputs (N, D) in the TFLite Micro interpreter."""
    out = tflm_run_feeds(data, [int8_inputs(images)])
    return out.reshape(len(out), -1) if len(out) else np.zeros((0, 0), np.int8)


def tflm_run_feeds(data: bytes, feeds: list[np.ndarray]) -> np.ndarray:
    """One batch-first int8 array per model input -> the output, batch-first, in TFLite Micro."""
    interpreter = _tflm_interpreter(data, _MEASURE_ARENA)

    def run_one(inputs: list[np.ndarray]) -> np.ndarray:
        for k, x in enumerate(inputs):
            interpreter.set_input(x, k)
        interpreter.invoke()
        return interpreter.get_output(0)

    return _each_image(feeds, run_one)


_ARENA_TOTAL = re.compile(r"Arena allocation total (\d+) bytes")


def arena_bytes(data: bytes) -> int:
    """The tensor arena TFLite Micro needs for the model, in bytes: the total its recording
    allocator reports after one inference (``print_allocations``, which writes to the C stderr;
    the Python API has no call that returns it)."""
    interpreter = _tflm_interpreter(data, _MEASURE_ARENA)
    details = interpreter.get_input_details(0)
    interpreter.set_input(np.zeros(details["shape"], details["dtype"]), 0)
    interpreter.invoke()
    with _captured_stderr() as captured:
        interpreter.print_allocations()
    text = captured[0]
    match = _ARENA_TOTAL.search(text)
    if match is None:
        raise ModelError("TFLite Micro did not report its arena allocation "
                         f"(print_allocations said: {text.strip()[:200]!r})")
    return int(match.group(1))


def onnx_int8_outputs(int8_onnx: str | Path, tensor: str, images: np.ndarray,
                      offset: int, fused: bool = True) -> np.ndarray:
    """The int8 ONNX model's quantized ``tensor`` (the head the .tflite stops at) for float32
    network inputs, on the .tflite's int8 scale (its ONNX values + ``offset``). ``fused``:
    onnxruntime's default, its integer kernels for each DequantizeLinear-operator-QuantizeLinear
    group; else no graph optimisation: each node as written, the operators in float."""
    import onnx

    out = onnx_values(onnx.load(str(int8_onnx)), [tensor], images, fused)[tensor]
    out = out.reshape(len(images), -1).astype(np.int16) + offset
    return out.astype(np.int8)


def onnx_values(model, names: list[str], images: np.ndarray,
                fused: bool = True) -> dict[str, np.ndarray]:
    """onnxruntime's values of the tensors ``names`` of ``model`` (an onnx.ModelProto, left
    unchanged) for float32 (N, C, H, W) network ``images``, batch-first, as it computes them
    (``fused``: see ``onnx_int8_outputs``)."""
    import onnx
    import onnxruntime as ort

    model = onnx.ModelProto.FromString(model.SerializeToString())
    del model.graph.output[:]
    for name in names:
        model.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    options.log_severity_level = 3
    if not fused:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(model.SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    feed = session.get_inputs()[0].name
    chunks: dict[str, list[np.ndarray]] = {name: [] for name in names}
    for i in range(0, len(images), 64):
        outs = session.run(None, {feed: images[i:i + 64].astype(np.float32)})
        for name, value in zip(names, outs):
            chunks[name].append(value)
    return {name: np.concatenate(parts) for name, parts in chunks.items()}


@dataclass(frozen=True)
class Verification:
    """Largest difference, in steps of the int8 output, between the .tflite in LiteRT and in
    TFLite Micro and the int8 ONNX model on the same images (``images``; ``tflm_images`` of them
    through TFLite Micro, whose reference kernels are slow)."""

    litert_max_steps: int
    tflm_max_steps: int
    images: int
    tflm_images: int

    @property
    def max_steps(self) -> int:
        return max(self.litert_max_steps, self.tflm_max_steps)


def verify(int8_onnx: str | Path, tflite: str | Path, images: np.ndarray,
           tflm_images: int | None = None) -> Verification:
    """Run ``tflite`` in LiteRT and TFLite Micro and ``int8_onnx`` in onnxruntime on float32
    (N, C, H, W) network ``images``; the largest differences of their int8 outputs."""
    from . import read_io

    data = Path(tflite).read_bytes()
    io = read_io(tflite)
    images = np.asarray(images, np.float32)
    reference = onnx_int8_outputs(int8_onnx, io["source_tensor"], images, io["source_offset"])
    lite = litert_outputs(data, images)
    n = len(images) if tflm_images is None else min(int(tflm_images), len(images))
    micro = tflm_outputs(data, images[:n])
    steps = lambda a, b: int(np.abs(a.astype(np.int16) - b.astype(np.int16)).max()) if len(a) else 0
    return Verification(steps(lite, reference), steps(micro, reference[:n]), len(images), n)
