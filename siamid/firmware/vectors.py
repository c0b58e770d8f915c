"""Test vectors for the C reference: inputs and what Python computes, as ``siamid_check.c`` reads.

A vector file is text, whitespace-separated tokens: a header ``siamid-vectors 1``, the integer
preprocessing parameters (``param NAME COUNT VALUES``, names of ``siamid.fixedpoint.IntegerParams``
and of the C struct), then records, then ``end``:

- ``prep ID H W PIXELS expect SCORES NETWORK_INPUT``: an 8-bit gray image, its 16 integer scores
  (``IntegerScores`` in field order) and its network input bytes;
- ``sharpen ID H W SHIFT KERNEL PIXELS expect PIXELS``: the sharpening stage alone;
- ``signature ID DIM SCALE ZERO_POINT Q expect SIGNATURE``: an int8 model output and its unit
  signature;
- ``decide ID DIM COUNT RULE N THRESHOLDS PROBE ENROLLED expect RESULT DISTANCE``: a decision
  (RESULT 1 accept, 0 reject, < 0 the C error code).

Floats travel as the hex of their IEEE bits (float32 8 digits, double 16), so nothing is lost.
The same file checks the C on a host (tests/test_cref.py) or on the target itself.
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TextIO

import numpy as np

from ..config import PreprocessConfig
from ..errors import ConfigError, TemplateError
from ..fixedpoint import IntegerParams, prepare, sharpen
from .signatures import RULE_CODES, signature_from_int8, template_distance, threshold_for

__all__ = ["Decision", "write_test_vectors"]

#: The C reference's SIAMID_E_TEMPLATE: a mean template that cancels out.
E_TEMPLATE = -2


@dataclasses.dataclass(frozen=True)
class Decision:
    """One decision to check: ``probe`` (D,) float32 against ``enrolled`` (k, D) under ``rule``
    with the threshold ``table`` (entry k - 1: k-signature templates)."""

    probe: np.ndarray
    enrolled: np.ndarray
    rule: str
    table: tuple[float, ...]


def _f32(value: float) -> str:
    return struct.pack(">f", float(value)).hex()


def _f64(value: float) -> str:
    return struct.pack(">d", float(value)).hex()


def _ints(values: Iterable[int]) -> str:
    return " ".join(str(int(v)) for v in values)


def _write_params(out: TextIO, params: IntegerParams) -> None:
    for name, value in params.items():
        values = value if isinstance(value, tuple) else (value,)
        out.write(f"param {name} {len(values)} {_ints(values)}\n")


def write_test_vectors(
    path: str | Path,
    config: PreprocessConfig,
    images: Sequence[tuple[str, np.ndarray]] = (),
    *,
    sharpen_images: Sequence[tuple[str, np.ndarray]] = (),
    outputs: Sequence[tuple[str, np.ndarray]] = (),
    output_scale: float = 1.0,
    output_zero_point: int = 0,
    decisions: Sequence[tuple[str, Decision]] = (),
) -> Path:
    """Write a vector file at ``path`` for ``siamid_check``; returns the path.

    ``images``: (id, uint8 gray image at the config's target dpi) preprocessed by ``config``'s
    integer stages (``config.integer`` need not be set: the integer stages are what the C runs);
    ``sharpen_images``: (id, uint8 image) for the sharpening stage alone; ``outputs``: (id, int8
    model output) dequantised with ``output_scale`` and ``output_zero_point``; ``decisions``:
    (id, Decision). Ids are single words. ConfigError where the config has no integer form.
    """
    params = IntegerParams.from_config(dataclasses.replace(config, integer=True))
    path = Path(path)
    with path.open("w") as out:
        out.write("siamid-vectors 1\n")
        _write_params(out, params)
        for name, image in images:
            _check_id(name)
            gray = np.asarray(image, np.uint8)
            result = prepare(gray, params)
            scores = [getattr(result.scores, f.name)
                      for f in dataclasses.fields(result.scores)]
            out.write(f"prep {name} {gray.shape[0]} {gray.shape[1]} {_ints(gray.ravel())}\n"
                      f"expect {_ints(scores)}\n{_ints(result.network_input.ravel())}\n")
        for name, image in sharpen_images:
            _check_id(name)
            gray = np.asarray(image, np.uint8)
            want = sharpen(gray, params.sharpen_kernel, params.sharpen_shift)
            out.write(f"sharpen {name} {gray.shape[0]} {gray.shape[1]} {params.sharpen_shift} "
                      f"{_ints(params.sharpen_kernel)} {_ints(gray.ravel())}\n"
                      f"expect {_ints(want.ravel())}\n")
        for name, q in outputs:
            _check_id(name)
            q = np.asarray(q)
            sig = signature_from_int8(q, output_scale, output_zero_point)
            out.write(f"signature {name} {q.size} {_f64(output_scale)} {output_zero_point} "
                      f"{_ints(q)} expect {' '.join(_f32(v) for v in sig)}\n")
        for name, d in decisions:
            _check_id(name)
            enrolled = np.asarray(d.enrolled, np.float32)
            probe = np.asarray(d.probe, np.float32)
            try:
                distance = template_distance(probe, enrolled, d.rule)
                result = int(distance < threshold_for(d.table, len(enrolled)))
            except TemplateError:
                distance, result = 0.0, E_TEMPLATE
            out.write(f"decide {name} {probe.size} {len(enrolled)} {RULE_CODES[d.rule]} "
                      f"{len(d.table)} {' '.join(_f64(t) for t in d.table)}\n"
                      f"{' '.join(_f32(v) for v in probe)}\n"
                      f"{' '.join(_f32(v) for v in enrolled.ravel())}\n"
                      f"expect {result} {_f64(distance)}\n")
        out.write("end\n")
    return path


def _check_id(name: str) -> None:
    if not name or any(c.isspace() for c in name) or len(name) > 100:
        raise ConfigError(f"test vector ids must be single words of at most 100 characters, "
                          f"got {name!r}")
