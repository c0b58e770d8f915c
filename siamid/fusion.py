"""How one probe signature is compared with a template of k enrollment signatures.

The runtime's Gallery and the enrollment protocol of the evaluation use the same rules, so the
error rates measured with ``enrollK`` are those of the Gallery at the same threshold.
"""

from __future__ import annotations

import numpy as np

from .errors import ConfigError, TemplateError

#: Comparison rules: ``min`` is the smallest distance to any enrollment signature, ``mean`` the
#: distance to the re-normalised mean of the enrollment signatures.
RULES = ("min", "mean")


def check_rule(rule: str) -> None:
    """ConfigError naming ``rule`` and the known ones unless it is one of ``RULES``."""
    if rule not in RULES:
        raise ConfigError(f"unknown comparison rule {rule!r}; use one of {', '.join(RULES)}")


def template_distances(probes: np.ndarray, signatures: np.ndarray, rule: str = "min") -> np.ndarray:
    """Euclidean distances (n,) of ``probes`` (n, D) to one template's signatures (k, D)."""
    check_rule(rule)
    probes = np.asarray(probes, np.float64)
    signatures = np.asarray(signatures, np.float64)
    if rule == "mean":
        mean = signatures.mean(axis=0)
        norm = float(np.linalg.norm(mean))
        # Opposite signatures can cancel out; the mean then has no direction to compare against.
        if norm < 1e-6:
            raise TemplateError(
                "template signatures cancel out, their mean has no direction; re-enroll"
            )
        return np.linalg.norm(probes - mean / norm, axis=1)
    diffs = probes[:, None, :] - signatures[None, :, :]
    return np.sqrt((diffs**2).sum(axis=2)).min(axis=1)


def template_distance(probe: np.ndarray, signatures: np.ndarray, rule: str = "min") -> float:
    """Euclidean distance of ``probe`` (D,) to a template's signatures (k, D) under ``rule``."""
    return float(template_distances(np.asarray(probe)[None, :], signatures, rule)[0])
