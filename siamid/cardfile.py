"""Writing the ModelCard into an exported ONNX file, without the onnx package.

The card lives in the ONNX ``metadata_props`` (key ``siamid.model_card``, plus ``siamid.model_id``
for tools that only want the id); onnxruntime reads it (``runtime.read_card``). Rewriting it must
work on a device that only authenticates, where ``siamid calibrate`` recalibrates a model on the
user's own captures and neither torch nor onnx is installed. An ONNX file is one protobuf
``ModelProto`` message whose field 14 is the repeated ``StringStringEntryProto`` metadata (key = 1,
value = 2), so the card is replaced at the protobuf wire level: every other field is copied byte
for byte, the old entries with our keys are dropped and the new ones appended (protobuf readers
accept repeated fields anywhere in the message).
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Mapping
from pathlib import Path

from .errors import ModelError
from .types import ModelCard

__all__ = ["CARD_METADATA_KEY", "MODEL_ID_METADATA_KEY", "card_from_metadata", "set_metadata",
           "write_card"]

#: Key of the ModelCard JSON in an ONNX file's metadata_props.
CARD_METADATA_KEY = "siamid.model_card"
#: Key of the bare model id beside it.
MODEL_ID_METADATA_KEY = "siamid.model_id"

_METADATA_FIELD = 14  # ModelProto.metadata_props


def card_from_metadata(meta: Mapping[str, str], path: str | Path) -> ModelCard:
    """The ModelCard in an ONNX file's metadata (key -> value, as onnxruntime or onnx read it);
    ModelError naming ``path`` if it is missing or malformed."""
    text = meta.get(CARD_METADATA_KEY)
    if not text:
        raise ModelError(
            f"model {path} has no siamid ModelCard (metadata key {CARD_METADATA_KEY!r}); "
            "export it with `siamid export` so it carries its preprocessing and threshold"
        )
    try:
        return ModelCard.from_json(text)
    except ModelError as exc:
        raise ModelError(f"model {path}: {exc}; re-export the model") from exc
_VARINT, _FIXED64, _LENGTH, _FIXED32 = 0, 1, 2, 5


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise ValueError("truncated or overlong varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _fields(buf: bytes):
    """(field number, wire type, payload start, payload end, field start) of each top-level field."""
    pos = 0
    while pos < len(buf):
        start = pos
        tag, pos = _read_varint(buf, pos)
        number, wire = tag >> 3, tag & 7
        if wire == _VARINT:
            _, pos = _read_varint(buf, pos)
            yield number, wire, start, pos, start
            continue
        if wire == _FIXED64:
            size = 8
        elif wire == _FIXED32:
            size = 4
        elif wire == _LENGTH:
            size, pos = _read_varint(buf, pos)
        else:
            raise ValueError(f"unsupported protobuf wire type {wire} in field {number}")
        if pos + size > len(buf):
            raise ValueError(f"field {number} runs past the end of the message")
        yield number, wire, pos, pos + size, start
        pos += size


def _entry_key(payload: bytes) -> str | None:
    for number, wire, begin, end, _ in _fields(payload):
        if number == 1 and wire == _LENGTH:
            return payload[begin:end].decode("utf-8")
    return None


def _length_field(number: int, payload: bytes) -> bytes:
    return _varint((number << 3) | _LENGTH) + _varint(len(payload)) + payload


def set_metadata(model: bytes, entries: dict[str, str]) -> bytes:
    """A serialised ModelProto with ``entries`` set in its metadata_props (replacing entries of
    the same keys, keeping every other byte). ValueError if ``model`` is not a protobuf message."""
    out = bytearray()
    for number, wire, begin, end, start in _fields(model):
        if number == _METADATA_FIELD and wire == _LENGTH and _entry_key(model[begin:end]) in entries:
            continue
        out += model[start:end]
    for key, value in entries.items():
        entry = _length_field(1, key.encode("utf-8")) + _length_field(2, value.encode("utf-8"))
        out += _length_field(_METADATA_FIELD, entry)
    return bytes(out)


def write_card(path: str | Path, card: ModelCard) -> None:
    """Replace the ModelCard inside the exported ONNX file at ``path``, atomically (a temporary
    file beside it, then a rename; the file keeps its permissions). ModelError if the file is
    missing or not an ONNX model."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ModelError(f"cannot read model {path}: {exc}") from exc
    try:
        updated = set_metadata(raw, {CARD_METADATA_KEY: card.to_json(),
                                     MODEL_ID_METADATA_KEY: card.model_id})
    except (ValueError, UnicodeDecodeError) as exc:
        raise ModelError(f"{path} is not an ONNX model file ({exc})") from exc
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(updated)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, stat.S_IMODE(path.stat().st_mode))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
