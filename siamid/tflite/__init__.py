"""Fully int8 TFLite files for microcontrollers, written from siamid's int8 ONNX export.

``export_tflite(int8_onnx, out)`` maps the int8 ONNX model's QDQ graph onto TFLite's int8
operators (``lowering``) and writes the flatbuffer itself (``flatbuf``): no TensorFlow, and the
file computes what the ONNX int8 model computes, with its scales, zero points and int8 weights.
Its input is int8 1 x H x W x C (scale 1/255, zero point -128: feed pixel - 128), its output the
int8 head before the L2 normalisation, which the host or firmware dequantises and normalises
(``run.normalise``).

Two metadata entries ride in ``Model.metadata``: the ModelCard JSON the ONNX file carries, under
the same key (``cardfile.CARD_METADATA_KEY``), and ``IO_METADATA_KEY``, what firmware needs
beside it: the input and output quantization and layout, that the host normalises (and with which
epsilon), and which ONNX tensor the output is.

Writing needs onnx (the ``train`` extra) and the TFLite schema module (the ``mcu`` extra);
reading a card needs only the latter; ``run`` runs files in LiteRT and TFLite Micro.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from ..cardfile import CARD_METADATA_KEY, card_from_metadata
from ..errors import ConfigError, ModelError
from ..types import ModelCard

__all__ = ["IO_METADATA_KEY", "SUFFIX", "card_from_tflite", "export_tflite", "read_io",
           "tflite_path_for"]

#: Metadata key of the I/O description beside the card.
IO_METADATA_KEY = "siamid.tflite_io"
#: File suffix of the written files.
SUFFIX = ".tflite"


def tflite_path_for(int8_onnx: str | Path, out: str | Path | None = None) -> Path:
    """``<model_id>.tflite`` for ``<model_id>.int8.onnx`` (in ``out``, else beside it)."""
    int8_onnx = Path(int8_onnx)
    stem = int8_onnx.name.removesuffix(".onnx").removesuffix(".int8")
    return Path(out or int8_onnx.parent) / f"{stem}{SUFFIX}"


def export_tflite(int8_onnx: str | Path, out_path: str | Path | None = None) -> Path:
    """Write the .tflite twin of the int8 ONNX file ``int8_onnx`` (default ``<model_id>.tflite``
    beside it) and return its path. ModelError if the file is missing, not a siamid int8
    export, or uses an operator the lowering does not know (the message names it)."""
    from ..runtime import read_card
    from . import flatbuf
    from .lowering import INPUT_SCALE, INPUT_ZERO_POINT, lower

    int8_onnx = Path(int8_onnx)
    if not int8_onnx.is_file():
        raise ModelError(f"int8 ONNX model {int8_onnx} not found; `siamid export` writes "
                         "<model_id>.int8.onnx")
    try:
        import onnx
    except ImportError as exc:
        raise ConfigError(f"writing a .tflite file needs the onnx package ({exc}); install the "
                          "training extra: pip install 'siamid[train]'") from None
    try:
        model = onnx.load(str(int8_onnx))
    except Exception as exc:  # protobuf's DecodeError and onnx's own types
        raise ModelError(f"{int8_onnx} is not a readable ONNX model: {exc}") from exc
    card = read_card(int8_onnx)
    if card.quantization != "int8":
        raise ModelError(f"{int8_onnx} is a {card.quantization} model; convert the int8 file "
                         "(<model_id>.int8.onnx)")
    lowered = lower(model, int8_onnx)
    graph = lowered.graph
    out_tensor = graph.tensors[graph.outputs[0]]
    scale, zero_point = out_tensor.params
    io: dict[str, Any] = {
        "input": {"layout": "NHWC", "shape": list(graph.tensors[graph.inputs[0]].shape),
                  "dtype": "int8", "scale": float(INPUT_SCALE), "zero_point": INPUT_ZERO_POINT,
                  "feed": "network-input pixel (0..255) - 128"},
        "output": {"shape": list(out_tensor.shape), "dtype": "int8", "scale": scale,
                   "zero_point": zero_point},
        "host_normalises": True,
        "l2_epsilon": lowered.l2_epsilon,
        "source_model_id": card.model_id,
        "source_tensor": lowered.onnx_output,
        "source_offset": -128 if lowered.onnx_output_dtype == "uint8" else 0,
    }
    data = flatbuf.write(graph, {CARD_METADATA_KEY: card.to_json().encode(),
                                 IO_METADATA_KEY: json.dumps(io, sort_keys=True).encode()},
                         description=f"siamid signature tower {card.model_id} (int8, head output)")
    out_path = Path(out_path) if out_path is not None else tflite_path_for(int8_onnx)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out_path.name}.", dir=out_path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would keep the file from other users
        os.replace(tmp, out_path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out_path


def _metadata(path: str | Path) -> dict[str, bytes]:
    from . import flatbuf

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"model file {path} not found; `siamid export --format tflite` writes "
                         "<model_id>.tflite")
    return flatbuf.read_metadata(path.read_bytes(), path)


def card_from_tflite(path: str | Path) -> ModelCard:
    """The ModelCard inside a .tflite file; ModelError if missing, unreadable or malformed."""
    meta = _metadata(path)
    try:
        text = {k: v.decode("utf-8") for k, v in meta.items() if k == CARD_METADATA_KEY}
    except UnicodeDecodeError as exc:
        raise ModelError(f"model {path}: its ModelCard is not UTF-8 text ({exc})") from exc
    return card_from_metadata(text, path)


def read_io(path: str | Path) -> dict[str, Any]:
    """The I/O description (``IO_METADATA_KEY``) inside a .tflite file written by siamid."""
    raw = _metadata(path).get(IO_METADATA_KEY)
    if raw is None:
        raise ModelError(f"model {path} has no {IO_METADATA_KEY!r} metadata; export it with "
                         "`siamid export --format tflite`")
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise ModelError(f"model {path}: malformed {IO_METADATA_KEY!r} metadata ({exc})") from exc
