"""The C reference's signature arithmetic in Python, operation for operation.

``siamid_ref.c`` dequantises the model's output, normalises it, and measures distances in IEEE
double, summing in index order; these functions do the same operations in the same order with
Python floats (IEEE double), so C and Python give bit-identical signatures and distances and
therefore identical decisions. They agree with the runtime (``siamid.fusion``,
``siamid.calibration``), whose numpy sums may round differently in the last bit: only a distance
within about 1e-15 of a threshold could be decided differently.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ..calibration import Calibration
from ..errors import ConfigError, TemplateError
from ..fusion import RULES, check_rule

__all__ = [
    "MEAN_EPS",
    "NORM_EPS",
    "RULE_CODES",
    "decide",
    "distance",
    "signature_from_float",
    "signature_from_int8",
    "template_distance",
    "threshold_for",
    "threshold_table",
]

#: siamid.nets normalises signatures with ``F.normalize(..., eps=1e-6)``.
NORM_EPS = 1e-6
#: siamid.fusion: a template mean shorter than this has no direction.
MEAN_EPS = 1e-6
#: The C reference's ``enum siamid_rule``.
RULE_CODES = {rule: code for code, rule in enumerate(RULES)}


def _unit(values: list[float]) -> np.ndarray:
    squares = 0.0
    for v in values:
        squares += v * v
    norm = max(math.sqrt(squares), NORM_EPS)
    return np.array([v / norm for v in values], np.float32)


def signature_from_int8(q: Sequence[int], scale: float, zero_point: int) -> np.ndarray:
    """The unit signature (float32) of an int8 model output: ``scale * (q - zero_point)``
    divided by its length (at least NORM_EPS): ``siamid_signature_int8``."""
    return _unit([float(scale) * float(int(v) - int(zero_point)) for v in q])


def signature_from_float(values: Sequence[float]) -> np.ndarray:
    """The unit signature of a float model output: ``siamid_signature_float``."""
    return _unit([float(np.float32(v)) for v in values])


def distance(a: Sequence[float], b: Sequence[float]) -> float:
    """Euclidean distance of two float32 signatures: ``siamid_distance``."""
    acc = 0.0
    for x, y in zip(np.asarray(a, np.float32).tolist(), np.asarray(b, np.float32).tolist()):
        d = x - y
        acc += d * d
    return math.sqrt(acc)


def template_distance(probe: np.ndarray, enrolled: np.ndarray, rule: str = "min") -> float:
    """Distance of ``probe`` (D,) to the template ``enrolled`` (k, D) under ``rule``:
    ``siamid_template_distance``. TemplateError where a mean template cancels out."""
    check_rule(rule)
    sigs = np.asarray(enrolled, np.float32)
    if rule == "min":
        return min(distance(probe, row) for row in sigs)
    rows = sigs.tolist()
    count = len(rows)
    mean = []
    for i in range(sigs.shape[1]):
        m = 0.0
        for row in rows:
            m += row[i]
        mean.append(m / count)
    squares = 0.0
    for m in mean:
        squares += m * m
    norm = math.sqrt(squares)
    if norm < MEAN_EPS:
        raise TemplateError("template signatures cancel out, their mean has no direction; "
                            "re-enroll")
    acc = 0.0
    for p, m in zip(np.asarray(probe, np.float32).tolist(), mean):
        d = p - m / norm
        acc += d * d
    return math.sqrt(acc)


def threshold_table(calibration: Calibration, rule: str = "min") -> tuple[float, ...]:
    """Thresholds of templates of 1, 2, ... K signatures under ``rule`` (K: the largest the
    calibration decides): entry k - 1 is ``calibration.threshold_for(k, rule)``."""
    return tuple(calibration.threshold_for(k, rule)
                 for k in range(1, calibration.largest_size(rule) + 1))


def threshold_for(table: Sequence[float], count: int) -> float:
    """The threshold of a ``count``-signature template from ``table``: ``siamid_threshold_for``."""
    if not table:
        raise ConfigError("a threshold table needs at least the single-comparison threshold")
    return float(table[max(min(count, len(table)), 1) - 1])


def decide(probe: np.ndarray, enrolled: np.ndarray, rule: str,
           table: Sequence[float]) -> tuple[bool, float]:
    """(accepted, distance) of ``probe`` against ``enrolled``: ``siamid_decide``."""
    d = template_distance(probe, enrolled, rule)
    return d < threshold_for(table, len(enrolled)), d
