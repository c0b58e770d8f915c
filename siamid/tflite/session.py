"""A siamid .tflite file behind the few calls of onnxruntime's InferenceSession that
``runtime.Embedder`` makes, so that the Embedder (and everything built on it: enrollment,
verification, the EER of the shared scoring code) runs a .tflite file as it runs an .onnx one.

It feeds the file's int8 input (pixel - 128, NHWC) and dequantises and L2-normalises its int8
head output on the host, as firmware does (``run.normalise``). LiteRT starts at the first ``run``:
reading the card needs only the TFLite schema module.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from ..errors import ModelError

__all__ = ["TfliteSession"]


class TfliteSession:
    def __init__(self, path: str | Path) -> None:
        from . import IO_METADATA_KEY, flatbuf

        self.path = Path(path)
        self._data = self.path.read_bytes()
        meta = flatbuf.read_metadata(self._data, self.path)
        try:
            self._meta = {k: v.decode("utf-8") for k, v in meta.items()}
            self._io = json.loads(self._meta.get(IO_METADATA_KEY, "null"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise ModelError(f"model {self.path}: malformed siamid metadata ({exc})") from exc
        if self._io is None:
            raise ModelError(f"model {self.path} has no {IO_METADATA_KEY!r} metadata; export it "
                             "with `siamid export --format tflite`")
        _, h, w, c = self._io["input"]["shape"]
        self._inputs = [SimpleNamespace(name="image", shape=["N", c, h, w])]
        self._outputs = [SimpleNamespace(name="signature", shape=["N", self._io["output"]["shape"][-1]])]
        self._runner = None

    def get_modelmeta(self) -> SimpleNamespace:
        return SimpleNamespace(custom_metadata_map=dict(self._meta))

    def get_inputs(self) -> list:
        return list(self._inputs)

    def get_outputs(self) -> list:
        return list(self._outputs)

    def run(self, output_names, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """float32 (N, C, H, W) network inputs -> [L2-normalised signatures (N, D)]."""
        from .run import LiteRTRunner, int8_inputs, normalise

        if self._runner is None:
            self._runner = LiteRTRunner(self._data, self.path)
        raw = self._runner.run(int8_inputs(next(iter(feeds.values()))))
        out = self._io["output"]
        return [normalise(raw, out["scale"], out["zero_point"], self._io["l2_epsilon"])]
