"""The one home of the decision: which threshold a comparison is decided at, and what it means.

A model's signatures are calibrated on a set of images (the validation split at export, or the
user's own captured set with ``siamid calibrate``): for single comparisons and for K-image
templates under each comparison rule, the threshold is chosen at the card's target FMR on that
set's impostor comparisons, and a compact table of those impostor distances is kept so that each
decision can say how often a stranger scores as close. The result, a ``Calibration``, lives in
the ModelCard (``card.calibration``) with the provenance of the set it came from; the exporter,
``siamid calibrate``, the Gallery, ``siamid evaluate`` and the benchmarks all ask this module,
none re-derives a threshold.

Conventions: Euclidean distances, accept iff ``distance < threshold``; rates are fractions.
Numpy only (the runtime layer).
"""

from __future__ import annotations

import datetime
import math
import numbers
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import PurePath
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from .errors import ConfigError, DatasetError, ModelError
from .evaluation import evaluate_protocol
from .fusion import RULES, check_rule
from .pairs import Protocol
from .types import ModelCard, SampleId

__all__ = [
    "ENROLLMENT_FMR",
    "TEMPLATE_SIZES",
    "Calibration",
    "ImpostorTable",
    "OperatingPoint",
    "Provenance",
    "calibrate",
    "card_calibration",
    "check_fmr",
    "legacy_calibration",
    "today",
    "threshold_at_fmr",
    "with_calibration",
]

#: Template sizes K calibrated for each rule (1 = a single comparison; the Gallery enrolls 3).
TEMPLATE_SIZES = (1, 2, 3, 4, 5)
#: Points kept per impostor table: half spread over the low tail on a log scale (where
#: decisions are made), half evenly, so a card stays a few kB per table.
TABLE_POINTS = 160
#: Enrollment images must agree at the distance where this fraction of single impostor
#: comparisons would match: loose enough that a genuine finger's captures (which vary more than
#: the decision threshold allows one probe) enroll, tight enough that three images of different
#: fingers almost never do. bench/enrollment_consistency.py measures the trade-off (shipped
#: model, held-out synthetic fingers: 7.1% of genuine 3-image enrollments refused, 0.10% of
#: different-finger ones accepted; on real fingers, where the model is weak, 30% and 1.9%).
ENROLLMENT_FMR = 0.02
#: The smallest impostor distances, each kept: FMR estimates near 1 / n depend on them.
TAIL_RANKS = 16
#: Version of the ``card.calibration`` layout.
CALIBRATION_FORMAT = 1


def threshold_at_fmr(impostor: ArrayLike, target_fmr: float) -> float:
    """The largest threshold ``t`` whose FMR (fraction of impostor distances ``< t``) is at most
    ``target_fmr``, on these impostor distances.

    With ``n`` impostors, at most ``k = floor(target_fmr * n)`` may be accepted, so ``t`` is the
    (k+1)-th smallest impostor distance: any larger threshold would accept one more. With
    ``target_fmr = 0`` it is the smallest impostor distance. ``target_fmr`` must be in [0, 1):
    at 1 every threshold qualifies and there is no largest.
    """
    check_fmr(target_fmr)
    i = np.sort(_distances(impostor))
    # The tiny slack keeps e.g. 0.29 * 100 = 28.999999999999996 from losing a whole comparison.
    allowed = min(int(math.floor(float(target_fmr) * i.size + 1e-9)), i.size - 1)
    return float(i[allowed])


def check_fmr(target_fmr: object) -> float:
    """``target_fmr`` as a float, or ConfigError unless it is a fraction in [0, 1)."""
    if (isinstance(target_fmr, bool) or not isinstance(target_fmr, numbers.Real)
            or not 0.0 <= float(target_fmr) < 1.0):
        raise ConfigError(
            f"target FMR must be a fraction in [0, 1), got {target_fmr!r} "
            "(rates are fractions: 0.1% is 0.001)"
        )
    return float(target_fmr)


def _distances(values: ArrayLike) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64).ravel()
    if array.size == 0:
        raise DatasetError("no impostor distances: calibration needs at least two identities")
    if not np.all(np.isfinite(array)):
        raise DatasetError("impostor distances contain NaN or inf: the model produced bad signatures")
    return array


@dataclass(frozen=True)
class ImpostorTable:
    """A compact picture of impostor distances: ``fmr[i]`` is the fraction of the ``n_impostor``
    calibration impostor comparisons with distance ``<= distances[i]`` (both ascending)."""

    distances: tuple[float, ...]
    fmr: tuple[float, ...]
    n_impostor: int

    @classmethod
    def from_scores(cls, impostor: ArrayLike, points: int = TABLE_POINTS) -> "ImpostorTable":
        """Keep about ``points`` of the sorted impostor distances: the low tail densely (the
        first ``TAIL_RANKS`` ranks, then log-spaced ranks) and the rest evenly."""
        values = np.sort(_distances(impostor))
        n = values.size
        tail = min(TAIL_RANKS, n, points)
        ranks = np.unique(np.concatenate([
            np.arange(1, tail + 1), np.geomspace(tail, n, (points - tail) // 2),
            np.linspace(1, n, points - tail - (points - tail) // 2),
        ]).round().astype(np.int64))
        # A rank stands for every impostor tied with it: the FMR at a distance counts them all.
        ranks = np.unique(np.searchsorted(values, values[ranks - 1], side="right"))
        # Rounded up to 1e-6 (distances lie in [0, 2]): short in the card, and a stored distance
        # is never below the impostor it stands for, so an estimate never overstates the FMR.
        kept = np.ceil(values[ranks - 1] * 1e6) / 1e6
        return cls(tuple(float(v) for v in kept),
                   tuple(float(r) / n for r in ranks), int(n))

    def estimate(self, distance: float) -> float | None:
        """The fraction of calibration impostors at most ``distance`` away (0 below them all);
        between kept points the lower one's fraction, so the estimate never overstates. None
        for an empty table (a calibration that kept no impostor distances)."""
        if self.n_impostor == 0:
            return None
        d = float(distance)
        if math.isnan(d):
            raise DatasetError("distance is NaN: the signatures compared contain NaN values")
        k = int(np.searchsorted(np.asarray(self.distances), d, side="right"))
        return 0.0 if k == 0 else float(self.fmr[k - 1])

    def to_dict(self) -> dict[str, Any]:
        return {"distances": list(self.distances), "fmr": list(self.fmr),
                "n_impostor": self.n_impostor}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ImpostorTable":
        return cls(tuple(float(x) for x in data["distances"]),
                   tuple(float(x) for x in data["fmr"]), int(data["n_impostor"]))


@dataclass(frozen=True)
class OperatingPoint:
    """The decision for probes against ``size``-signature templates under ``rule``: the
    threshold at the calibration's target FMR, the FNMR it had on the calibration set's genuine
    comparisons, the counts, and the impostor table behind FMR estimates."""

    size: int
    rule: str
    threshold: float
    fnmr: float | None  # None where the calibration kept no genuine comparisons
    n_genuine: int
    table: ImpostorTable

    @property
    def key(self) -> str:
        return _key(self.size, self.rule)


def _key(size: int, rule: str) -> str:
    return "1" if size == 1 else f"{rule}:{size}"


@dataclass(frozen=True)
class Provenance:
    """Where a calibration comes from: the set's name, hash, counts, sensor, and whether it is
    the exporter's validation split or a user's own captured set (``kind``: "validation" or
    "user")."""

    kind: str
    name: str
    set_hash: str = ""
    n_images: int = 0
    n_identities: int = 0
    sensor: str = ""
    synthetic: bool = False
    date: str = ""

    def describe(self) -> str:
        """``the validation split of <name> (synthetic, 240 identities, 1,920 images)`` etc.
        An identity is a finger or a face."""
        facts = [x for x in ("synthetic" if self.synthetic else "",
                             f"sensor {self.sensor}" if self.sensor else "",
                             f"{self.n_identities:,} identities" if self.n_identities else "",
                             f"{self.n_images:,} images" if self.n_images else "",
                             f"hash {self.set_hash[:12]}" if self.set_hash else "",
                             self.date) if x]
        where = (f"your set {self.name}" if self.kind == "user"
                 else f"the validation split of {self.name}" if self.kind == "validation"
                 else self.name)
        return where + (f" ({', '.join(facts)})" if facts else "")

    def names_folder(self, folder: str | PurePath) -> bool:
        """Whether this set is named after ``folder`` (or includes it, for a set of several
        folders): its last two path components, e.g. ``fvc2000/DB1_B``, as a path in the name.

        An exporter's validation split is part of the data the model was trained on, so a
        model scored on a folder its calibration names is scored on its own training data.
        """
        parts = PurePath(folder).parts[-2:]
        if not parts:
            return False
        tail = "/".join(parts)
        names = [n.strip().replace("\\", "/") for n in self.name.split(",")]
        return any(n == tail or n.endswith("/" + tail) for n in names)


@dataclass(frozen=True)
class Calibration:
    """Thresholds at ``target_fmr`` for each template size and rule, with their impostor tables.

    ``threshold_for(size, rule)`` says which threshold applies to a comparison: a template of
    ``size`` signatures is decided at the point calibrated for the largest K <= ``size`` of its
    rule (an impostor gets one try per signature, so bigger templates need lower thresholds;
    above the largest K calibrated the FMR creeps above the target), and a single comparison at
    K = 1.
    """

    target_fmr: float
    points: dict[str, OperatingPoint]
    source: Provenance | None = None
    format_version: int = CALIBRATION_FORMAT

    def point_for(self, size: int, rule: str = "min") -> OperatingPoint:
        """The operating point that decides a template of ``size`` signatures under ``rule``."""
        check_rule(rule)
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
            raise ConfigError(f"template size must be an integer >= 1, got {size!r}")
        fitting = [p for p in self.points.values()
                   if p.size <= size and (p.size == 1 or p.rule == rule)]
        if not fitting:
            raise ModelError("the model's calibration has no single-comparison threshold; "
                             "recalibrate it with `siamid calibrate`")
        return max(fitting, key=lambda p: p.size)

    def trained_on(self, folder: str | PurePath) -> bool:
        """Whether the model was trained on ``folder``: an exporter calibrates on the validation
        split of its training folders, and its provenance names them (``names_folder``)."""
        return (self.source is not None and self.source.kind == "validation"
                and self.source.names_folder(folder))

    def threshold_for(self, size: int = 1, rule: str = "min") -> float:
        """The threshold a template of ``size`` signatures is decided at under ``rule``."""
        return self.point_for(size, rule).threshold

    def fmr_estimate(self, distance: float, size: int = 1, rule: str = "min") -> float | None:
        """How often a stranger comes at least this close to a ``size``-signature template: the
        fraction of calibration impostor attempts of the deciding operating point."""
        return self.point_for(size, rule).table.estimate(distance)

    @property
    def threshold(self) -> float:
        """The single-comparison threshold."""
        return self.threshold_for(1)

    def largest_size(self, rule: str = "min") -> int:
        """The largest template size the calibration has an operating point for under ``rule``
        (1 where only single comparisons were calibrated)."""
        check_rule(rule)
        return max((p.size for p in self.points.values() if p.size == 1 or p.rule == rule),
                   default=1)

    def threshold_at(self, fmr: float, size: int = 1, rule: str = "min") -> float | None:
        """The threshold at ``fmr`` for ``size``-signature templates under ``rule``, read from
        the impostor table of the point that decides them: the largest kept distance at which
        at most that fraction of its impostor attempts were closer. None where the table cannot
        support the rate: fewer than ``1 / fmr`` impostor attempts (a rate of 1 in N cannot be
        observed in fewer trials), or none kept that low. At the calibration's own target FMR
        it is the calibrated threshold itself."""
        fmr = check_fmr(fmr)
        point = self.point_for(size, rule)
        if fmr == self.target_fmr:
            return point.threshold
        table = point.table
        if table.n_impostor == 0 or table.n_impostor * fmr < 1 - 1e-9:
            return None
        within = [d for d, f in zip(table.distances, table.fmr) if f <= fmr + 1e-12]
        return within[-1] if within else None

    def retargeted(self, fmr: float) -> "Calibration":
        """The same calibration decided at another target FMR: every operating point whose
        impostor table supports ``fmr`` gets its ``threshold_at(fmr)`` (points that cannot are
        dropped; their FNMR, measured at the old threshold, is no longer known). What
        ``siamid calibrate --target-fmr`` would choose on the same set, up to the table's
        resolution (never a looser threshold). ConfigError if not even single comparisons
        support ``fmr``."""
        points = {}
        for key, point in self.points.items():
            threshold = self.threshold_at(fmr, point.size, point.rule)
            if threshold is not None:
                points[key] = OperatingPoint(point.size, point.rule, threshold, None, 0,
                                             point.table)
        if "1" not in points:
            raise ConfigError(
                f"the calibration's {self.point_for(1).table.n_impostor:,} single impostor "
                f"comparisons cannot support FMR {fmr:.3%}; choose a higher FMR or recalibrate "
                "on more fingers (`siamid calibrate`)")
        return Calibration(check_fmr(fmr), points, self.source, self.format_version)

    def distance_at_fmr(self, fmr: float) -> float | None:
        """The largest kept single-comparison impostor distance whose FMR is at most ``fmr``
        (None where no table was kept, or every kept distance is above it)."""
        check_fmr(fmr)
        table = self.point_for(1).table
        within = [d for d, f in zip(table.distances, table.fmr) if f <= fmr]
        return within[-1] if within else None

    def enrollment_threshold(self, fmr: float | None = None) -> float:
        """The distance below which two enrollment images count as the same finger: where the
        single-comparison impostor table reaches ``fmr`` (default ``ENROLLMENT_FMR``), never
        below the decision threshold (and the decision threshold itself where no table was
        kept)."""
        loose = self.distance_at_fmr(ENROLLMENT_FMR if fmr is None else fmr)
        return max(self.threshold, loose if loose is not None else self.threshold)

    def describe(self, size: int = 1, rule: str = "min") -> str:
        """Where the FMR claim for ``size``-signature templates comes from, in one sentence."""
        point = self.point_for(size, rule)
        what = ("single-image comparisons" if point.size == 1
                else f"{point.size}-image template attempts ({point.rule} rule)")
        source = self.source.describe() if self.source else "an unrecorded set"
        return (f"threshold {point.threshold:.4f} chosen at FMR {self.target_fmr:.3%} on "
                f"{point.table.n_impostor:,} impostor {what} of {source}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": self.format_version,
            "target_fmr": self.target_fmr,
            "source": asdict(self.source) if self.source else None,
            "points": {k: {"size": p.size, "rule": p.rule, "threshold": p.threshold,
                           "fnmr": p.fnmr, "n_genuine": p.n_genuine, "table": p.table.to_dict()}
                       for k, p in self.points.items()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Calibration":
        """Read ``to_dict``'s output; ModelError on a malformed or newer layout."""
        try:
            version = int(data.get("format", 0))
            if version > CALIBRATION_FORMAT:
                raise ModelError(f"the model's calibration has format {version}, this siamid "
                                 f"reads {CALIBRATION_FORMAT}; upgrade siamid")
            points = {k: OperatingPoint(int(p["size"]), str(p["rule"]), float(p["threshold"]),
                                        None if p["fnmr"] is None else float(p["fnmr"]),
                                        int(p["n_genuine"]),
                                        ImpostorTable.from_dict(p["table"]))
                      for k, p in data["points"].items()}
            source = Provenance(**data["source"]) if data.get("source") else None
            return cls(float(data["target_fmr"]), points, source, version)
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"the model's calibration is malformed ({exc}); re-export or "
                             "recalibrate it") from exc


def calibrate(
    embeddings: np.ndarray,
    ids: Sequence[SampleId],
    target_fmr: float,
    source: Provenance | None = None,
    sizes: Sequence[int] = TEMPLATE_SIZES,
    rules: Sequence[str] = RULES,
    progress: Callable[[str, int, int], None] | None = None,
) -> Calibration:
    """Calibrate signatures of a labelled set at ``target_fmr``.

    K = 1 is decided on every cross-identity pair (the ``all`` protocol); K >= 2 on the
    ``enrollK`` trials under each rule. A size is left out when the set cannot support it: no
    identity has more than K images, or fewer than ``1 / target_fmr`` impostor attempts (a rate
    of 1 in N cannot be observed in fewer trials). DatasetError if even single comparisons
    cannot be calibrated, naming the counts needed.
    """
    target_fmr = check_fmr(target_fmr)
    for rule in rules:
        check_rule(rule)
    jobs = [(1, "min")] + [(k, r) for k in sizes if k > 1 for r in rules]
    points: dict[str, OperatingPoint] = {}
    for done, (size, rule) in enumerate(jobs, start=1):
        protocol = Protocol("all") if size == 1 else Protocol("enroll", size)
        try:
            report = evaluate_protocol(embeddings, ids, protocol, rule)
        except DatasetError:
            if size == 1:
                raise
            continue
        if report.n_impostor * target_fmr < 1:
            if size == 1:
                raise DatasetError(
                    f"cannot calibrate at FMR {target_fmr:.3%}: the set gives "
                    f"{report.n_impostor:,} impostor comparisons, at least "
                    f"{math.ceil(1 / target_fmr):,} are needed; capture more fingers or "
                    "choose a higher target FMR"
                ) if target_fmr > 0 else DatasetError("cannot calibrate at FMR 0")
            continue
        threshold = threshold_at_fmr(report.impostor, target_fmr)
        points[_key(size, rule)] = OperatingPoint(
            size, rule, threshold, float(np.mean(report.genuine >= threshold)),
            report.n_genuine, ImpostorTable.from_scores(report.impostor))
        if progress:
            progress("calibrate", done, len(jobs))
    return Calibration(target_fmr, points, source)


def today() -> str:
    """The date a calibration is recorded with (UTC, ISO)."""
    return datetime.datetime.now(datetime.timezone.utc).date().isoformat()


_EMPTY = ImpostorTable((), (), 0)


def card_calibration(card: ModelCard) -> Calibration:
    """The calibration a card carries; a card without one (being built) is decided at its
    ``threshold`` for every comparison, with no FMR estimates."""
    if card.calibration:
        return Calibration.from_dict(card.calibration)
    point = OperatingPoint(1, "min", float(card.threshold), None, 0, _EMPTY)
    return Calibration(float(card.threshold_fmr), {"1": point}, None)


def legacy_calibration(threshold: float, target_fmr: float, impostor: Sequence[float],
                       template_thresholds: dict[str, float]) -> dict[str, Any]:
    """``card.calibration`` for a card exported before calibrations were recorded: its single
    threshold with its impostor quantiles, and its per-size ``min`` thresholds without tables
    (their decisions carry no FMR estimate). The source is unrecorded."""
    table = ImpostorTable.from_scores(impostor, points=len(impostor)) if len(impostor) else _EMPTY
    points = {"1": OperatingPoint(1, "min", float(threshold), None, 0, table)}
    for k, value in template_thresholds.items():
        points[_key(int(k), "min")] = OperatingPoint(int(k), "min", float(value), None, 0, _EMPTY)
    return Calibration(float(target_fmr), points, None).to_dict()


def with_calibration(card: ModelCard, calibration: Calibration) -> ModelCard:
    """A copy of ``card`` decided by ``calibration``: its headline ``threshold`` and
    ``threshold_fmr`` are the calibration's single-comparison point."""
    return card.with_changes(calibration=calibration.to_dict(), threshold=calibration.threshold,
                             threshold_fmr=calibration.target_fmr)

