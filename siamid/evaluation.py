"""Scores -> error rates: FMR/FNMR curves, EER, FMR100/FMR1000/FMR10000, ZeroFMR, ROC AUC.

Compute only (numpy only, no plotting; ``plots.py`` draws what this returns). Conventions, per
ISO/IEC 19795-1 and the rest of siamid:

* A score is a Euclidean distance between signatures: lower = more alike.
* A comparison is accepted iff ``distance < threshold``. So at threshold ``t``
  FMR(t) = fraction of impostor distances ``< t`` and FNMR(t) = fraction of genuine distances
  ``>= t``. Both are fractions, never percentages.
* The rates are step functions of ``t`` that only change at observed scores, so evaluating them at
  every distinct score (plus one point above the largest) gives every operating point there is.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from .errors import ConfigError, DatasetError
from .fusion import template_distances
from .pairs import MAX_IMPOSTOR, Protocol
from .types import EvalReport, Pair, SampleId, Trial

__all__ = [
    "evaluate_scores",
    "evaluate_embeddings",
    "evaluate_trials",
    "evaluate_protocol",
    "classifier_view",
    "roc_auc",
    "report_to_dict",
    "curve_points",
]

# FMR100 / FMR1000 / FMR10000: (name, target FMR, impostor comparisons needed to observe it).
# The counts are integers on purpose: 1 / 0.001 is not exactly 1000 in every float path.
_FMR_LEVELS = (("fmr100", 0.01, 100), ("fmr1000", 0.001, 1000), ("fmr10000", 0.0001, 10000))


def _scores(values: ArrayLike, name: str) -> np.ndarray:
    """A 1-D float64 copy of ``values``; DatasetError naming ``name`` if empty or not finite."""
    try:
        array = np.asarray(values, dtype=np.float64).ravel()
    except (TypeError, ValueError) as exc:
        raise DatasetError(f"{name} scores are not numbers: {exc}") from exc
    if array.size == 0:
        raise DatasetError(
            f"no {name} scores: the pair list has no {name} comparisons; "
            "check the pair list (FVC genuine pairs need at least two impressions per identity, "
            "impostor pairs at least two identities)"
        )
    bad = ~np.isfinite(array)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise DatasetError(
            f"{name} scores contain {int(bad.sum())} non-finite value(s) "
            f"(first at index {first}: {array[first]!r}); the model produced NaN/inf signatures, "
            "check the model and its inputs"
        )
    return array


def _rates(
    genuine_sorted: np.ndarray, impostor_sorted: np.ndarray, thresholds: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """FMR and FNMR at each threshold, for accept iff distance < threshold."""
    accepted_impostors = np.searchsorted(impostor_sorted, thresholds, side="left")
    accepted_genuine = np.searchsorted(genuine_sorted, thresholds, side="left")
    fmr = accepted_impostors / impostor_sorted.size
    fnmr = 1.0 - accepted_genuine / genuine_sorted.size
    return fmr, fnmr


def _eer(thresholds: np.ndarray, fmr: np.ndarray, fnmr: np.ndarray) -> tuple[float, float]:
    """EER and its threshold where the FMR and FNMR curves cross.

    ``thresholds[i]`` stands for every threshold in ``(thresholds[i-1], thresholds[i]]`` (the rates
    are constant there). The curves start at FMR 0 / FNMR 1 and end at FMR 1 / FNMR 0, so
    ``d = FNMR - FMR`` changes sign exactly once. If it hits zero, FMR = FNMR is attained and the
    threshold is the middle of the whole interval where it is (for perfectly separated scores:
    halfway between the largest genuine and the smallest impostor distance). Otherwise the EER is
    where the straight ROC segment between the two neighbouring operating points meets the line
    FMR = FNMR, and the threshold is interpolated with the same weight.
    """
    d = fnmr - fmr
    k = int(np.argmax(d <= 0))  # first operating point with FMR >= FNMR; k >= 1 since d[0] = 1
    if d[k] == 0:
        j = k
        while j + 1 < d.size and d[j + 1] == 0:
            j += 1
        return float(fmr[k]), float((thresholds[k - 1] + thresholds[j]) / 2.0)
    weight = d[k - 1] / (d[k - 1] - d[k])
    eer = fmr[k - 1] + weight * (fmr[k] - fmr[k - 1])
    threshold = thresholds[k - 1] + weight * (thresholds[k] - thresholds[k - 1])
    return float(eer), float(threshold)


def _lowest_fnmr_at(fmr: np.ndarray, fnmr: np.ndarray, target: float) -> float:
    """Lowest FNMR over the operating points with FMR <= target (fmr[0] is always 0)."""
    # FNMR falls as the threshold rises, so the last admissible point has the lowest FNMR.
    last = int(np.searchsorted(fmr, target, side="right")) - 1
    return float(fnmr[last])


def roc_auc(genuine: ArrayLike, impostor: ArrayLike) -> float:
    """Area under the ROC curve: the probability that a random genuine distance is smaller than
    a random impostor distance, ties counting 1/2 (the Mann-Whitney U statistic, normalised).

    Equals ``sklearn.metrics.roc_auc_score`` with genuine as positive and ``-distance`` as score.
    """
    g = _scores(genuine, "genuine")
    i = np.sort(_scores(impostor, "impostor"))
    right = np.searchsorted(i, g, side="right")
    left = np.searchsorted(i, g, side="left")
    greater = float(np.sum(i.size - right, dtype=np.float64))
    ties = float(np.sum(right - left, dtype=np.float64))
    return (greater + 0.5 * ties) / (g.size * i.size)


def evaluate_scores(genuine: ArrayLike, impostor: ArrayLike) -> EvalReport:
    """All error rates of one matcher from its genuine and impostor distances.

    The report's ``thresholds`` are every distinct score plus one just above the largest, so
    ``fmr``/``fnmr`` hold every operating point: the first is FMR 0 / FNMR 1, the last FMR 1 /
    FNMR 0. FMR100/FMR1000/FMR10000 are None where there are fewer than 100/1000/10000 impostor
    comparisons (a rate of 1 in N cannot be observed with fewer than N trials). Raises
    DatasetError if either list is empty or holds a non-finite score.
    """
    g = np.sort(_scores(genuine, "genuine"))
    i = np.sort(_scores(impostor, "impostor"))
    distinct = np.unique(np.concatenate([g, i]))
    # One point above everything: every comparison accepted (FMR 1, FNMR 0).
    top = np.nextafter(distinct[-1], np.inf)
    thresholds = np.append(distinct, top)
    fmr, fnmr = _rates(g, i, thresholds)
    eer, eer_threshold = _eer(thresholds, fmr, fnmr)
    levels = {
        name: (_lowest_fnmr_at(fmr, fnmr, target) if i.size >= needed else None)
        for name, target, needed in _FMR_LEVELS
    }
    return EvalReport(
        thresholds=thresholds,
        fmr=fmr,
        fnmr=fnmr,
        eer=eer,
        eer_threshold=eer_threshold,
        fmr100=levels["fmr100"],
        fmr1000=levels["fmr1000"],
        fmr10000=levels["fmr10000"],
        zero_fmr=_lowest_fnmr_at(fmr, fnmr, 0.0),
        roc_auc=roc_auc(g, i),
        n_genuine=int(g.size),
        n_impostor=int(i.size),
        genuine=g,
        impostor=i,
    )


def classifier_view(genuine: ArrayLike, impostor: ArrayLike, threshold: float) -> dict[str, Any]:
    """The seed tutorial's view at one threshold (accept iff distance < threshold).

    Returns ``accuracy`` (all comparisons decided right; dominated by impostors when they
    outnumber genuine ones), ``match_accuracy`` (genuine accepted = 1 - FNMR),
    ``nomatch_accuracy`` (impostors rejected = 1 - FMR), ``balanced_accuracy`` (their mean),
    ``fmr``, ``fnmr``, ``roc_auc``, ``threshold`` and ``counts`` (true_accept, false_reject,
    false_accept, true_reject, n_genuine, n_impostor).
    """
    g = _scores(genuine, "genuine")
    i = _scores(impostor, "impostor")
    t = float(threshold)
    if math.isnan(t):
        raise DatasetError("threshold is NaN; pass a distance threshold such as the EER threshold")
    true_accept = int(np.count_nonzero(g < t))
    false_accept = int(np.count_nonzero(i < t))
    false_reject = int(g.size - true_accept)
    true_reject = int(i.size - false_accept)
    match_accuracy = true_accept / g.size
    nomatch_accuracy = true_reject / i.size
    return {
        "threshold": t,
        "accuracy": (true_accept + true_reject) / (g.size + i.size),
        "match_accuracy": match_accuracy,
        "nomatch_accuracy": nomatch_accuracy,
        "balanced_accuracy": (match_accuracy + nomatch_accuracy) / 2.0,
        "fmr": false_accept / i.size,
        "fnmr": false_reject / g.size,
        "roc_auc": roc_auc(g, i),
        "counts": {
            "true_accept": true_accept,
            "false_reject": false_reject,
            "false_accept": false_accept,
            "true_reject": true_reject,
            "n_genuine": int(g.size),
            "n_impostor": int(i.size),
        },
    }


def curve_points(report: EvalReport, max_points: int = 500) -> dict[str, np.ndarray]:
    """``thresholds``, ``fmr``, ``fnmr`` thinned to at most ``max_points`` operating points.

    Half the budget is spread evenly over the points, half over FMR on a log scale, so the
    low-FMR end that DET plots and FMR1000 live in keeps its detail; the first and last points
    (FMR 0 / FNMR 1 and FMR 1 / FNMR 0) are always kept.
    """
    if max_points < 2:
        raise ConfigError(f"max_points must be at least 2, got {max_points}")
    n = report.thresholds.size
    if n <= max_points:
        keep = np.arange(n)
    else:
        even = np.linspace(0, n - 1, max_points // 2).round().astype(np.int64)
        low = 1.0 / max(report.n_impostor, 1)
        targets = np.geomspace(low, 1.0, max_points - even.size)
        by_fmr = np.clip(np.searchsorted(report.fmr, targets, side="right") - 1, 0, n - 1)
        keep = np.unique(np.concatenate([even, by_fmr, [0, n - 1]]))
        if keep.size > max_points:  # duplicates were few: drop evenly, keeping both ends
            keep = keep[np.linspace(0, keep.size - 1, max_points).round().astype(np.int64)]
    return {
        "thresholds": report.thresholds[keep],
        "fmr": report.fmr[keep],
        "fnmr": report.fnmr[keep],
    }


def report_to_dict(report: EvalReport, threshold: float | None = None) -> dict[str, Any]:
    """The report as JSON-ready plain types: ``summary`` (the scalar numbers), ``classifier``
    (``classifier_view`` at ``threshold``, default the EER threshold) and ``curves``
    (thresholds/fmr/fnmr, at most 500 points)."""
    t = report.eer_threshold if threshold is None else float(threshold)
    curves = curve_points(report, 500)
    return {
        "summary": {k: (None if v is None else (int(v) if k.startswith("n_") else float(v)))
                    for k, v in report.summary().items()},
        "classifier": classifier_view(report.genuine, report.impostor, t),
        "curves": {k: [float(x) for x in v] for k, v in curves.items()},
    }


def _rows(embeddings: np.ndarray, ids: Sequence[SampleId]) -> tuple[np.ndarray, dict[SampleId, int]]:
    """Check that ``embeddings`` row ``r`` can be ``ids[r]``; the array and the id -> row index."""
    e = np.asarray(embeddings)
    if e.ndim != 2:
        raise DatasetError(f"embeddings must be a 2-D (samples, size) array, got shape {e.shape}")
    if e.shape[0] != len(ids):
        raise DatasetError(
            f"{e.shape[0]} embedding rows but {len(ids)} sample ids: row r must be ids[r]"
        )
    row: dict[SampleId, int] = {}
    for r, sample_id in enumerate(ids):
        if sample_id in row:
            raise DatasetError(f"sample id {sample_id} appears twice (rows {row[sample_id]}, {r})")
        row[sample_id] = r
    return e, row


def evaluate_embeddings(
    embeddings: np.ndarray, ids: Sequence[SampleId], pairs: Sequence[Pair],
    probes: np.ndarray | None = None,
) -> EvalReport:
    """Evaluate signatures on a pair list: the Euclidean distance of each pair, split into
    genuine (``is_match``) and impostor comparisons, then ``evaluate_scores``.

    ``embeddings`` row ``r`` is the signature of ``ids[r]``. With ``probes`` (the same images'
    signatures made by another model file, e.g. its int8 twin), each pair's second sample is
    taken from ``probes``: what a template of one file meets from probes of the other. Raises
    DatasetError if the shapes disagree, an id repeats, or a pair names a sample that has no row.
    """
    e, row = _rows(embeddings, ids)
    p, _ = _rows(embeddings if probes is None else probes, ids)
    if len(pairs) == 0:
        raise DatasetError("the pair list is empty: nothing to evaluate")
    try:
        a = np.fromiter((row[p.a] for p in pairs), dtype=np.int64, count=len(pairs))
        b = np.fromiter((row[p.b] for p in pairs), dtype=np.int64, count=len(pairs))
    except KeyError as exc:
        raise DatasetError(
            f"pair names sample {exc.args[0]} that has no embedding; "
            "the pair list was made for another set of samples"
        ) from None
    match = np.fromiter((bool(p.is_match) for p in pairs), dtype=bool, count=len(pairs))
    distances = np.linalg.norm(e.astype(np.float64)[a] - p.astype(np.float64)[b], axis=1)
    return evaluate_scores(distances[match], distances[~match])


def evaluate_trials(
    embeddings: np.ndarray, ids: Sequence[SampleId], trials: Sequence[Trial], rule: str = "min"
) -> EvalReport:
    """Evaluate signatures on verification attempts with k-image templates (``enrollK``).

    Each attempt's distance is the probe's distance to its template under ``rule`` (the
    Gallery's rules, see ``fusion``), split into genuine and impostor, then ``evaluate_scores``.
    Raises DatasetError as ``evaluate_embeddings`` does.
    """
    e, row = _rows(embeddings, ids)
    if len(trials) == 0:
        raise DatasetError("the trial list is empty: nothing to evaluate")
    genuine: list[np.ndarray] = []
    impostor: list[np.ndarray] = []
    try:
        # Trials come grouped by template: score each run of one template in one call.
        runs = itertools.groupby(trials, key=lambda t: (t.template, t.is_match))
        for (template, is_match), run in runs:
            probes = e[[row[t.probe] for t in run]]
            d = template_distances(probes, e[[row[s] for s in template]], rule)
            (genuine if is_match else impostor).append(d)
    except KeyError as exc:
        raise DatasetError(
            f"trial names sample {exc.args[0]} that has no embedding; "
            "the trial list was made for another set of samples"
        ) from None
    return evaluate_scores(np.concatenate(genuine) if genuine else [],
                           np.concatenate(impostor) if impostor else [])


def evaluate_protocol(
    embeddings: np.ndarray, ids: Sequence[SampleId], protocol: Protocol, rule: str = "min",
    max_impostor: int = MAX_IMPOSTOR,
) -> EvalReport:
    """Evaluate signatures under ``protocol``: its pairs (fvc, all) or its K-image template
    trials (enrollK, compared by ``rule``). Impostors beyond ``max_impostor`` are sampled."""
    if not isinstance(protocol, Protocol):
        raise ConfigError(f"expected a Protocol, got {protocol!r}; use Protocol.parse(name)")
    compared = protocol.comparisons(list(ids), max_impostor=max_impostor)
    if protocol.uses_templates:
        return evaluate_trials(embeddings, ids, compared, rule)
    return evaluate_embeddings(embeddings, ids, compared)
