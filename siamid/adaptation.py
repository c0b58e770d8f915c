"""Adaptive templates: a template that follows a changing face (or finger), never an impostor.

Appearance drifts (pose, light, a beard, glasses; a finger's dryness and pressure), so the
enrollment images of long ago match today's probes less and less. With
``Gallery.verify(..., adapt=True)`` an accepted probe may join its template as an *adapted*
signature. Every constant of the policy is here; the Gallery and bench/adaptive_templates.py
call these functions, so the benchmark measures exactly what the runtime does.

The policy. After an accepted decision the probe's signature joins the template only if

(a) its decision distance (the rule over the whole template) is below the *update threshold*:
    the calibration's threshold for a template of the *enrolled* size at ``UPDATE_FMR_FACTOR``
    times the unlock FMR, read from that operating point's impostor table. Where the table
    holds too few impostor attempts to observe that rate (fewer than ``1 / fmr``), there is no
    update threshold and no update: an unsupported number would be a guess;
(b) its distance to the **enrolled** signatures alone, under the same rule, is below the same
    update threshold (the anchor). Adapted signatures are never the reason another one gets in,
    so a chain of updates cannot walk the template away from the person who enrolled: the
    chance that one impostor attempt updates a template is at most ``UPDATE_FMR_FACTOR`` times
    the unlock FMR, whatever the adapted part already holds. Under the ``min`` rule (b) implies
    (a); (a) still says, in the reason given, whether the probe was close to the template;
(c) it is not a near-duplicate: its nearest template signature is at least
    ``NEAR_DUPLICATE_FRACTION`` of the single-comparison threshold away, so the same capture
    presented again adds nothing.

The adapted part is bounded: at most ``MAX_ADAPTED`` signatures, and never more than the
calibration can decide (below); the oldest adapted signature leaves first. Enrollment
signatures are kept for ever.

The decision of a template that holds adapted signatures. The calibration has thresholds for
templates of 1 to K signatures (K = ``Calibration.largest_size``; ``threshold_for`` would decide
a larger template at K's threshold, letting its FMR creep above the target). A template of
n = enrolled + adapted signatures is decided by the rule over all n signatures at

- the calibrated threshold for n, when n <= K: an adapted template is decided like an
  enrolled one of the same size;
- beyond K, under ``min`` only: the threshold at FMR ``target / ceil(n / K)`` on K's impostor
  table. Split into ceil(n / K) groups of at most K signatures, an impostor is accepted only if
  some group accepts them, so the template's FMR is at most the sum over groups (a union bound,
  no independence assumed), i.e. at most the target. Its FMR estimate is the same bound.
  Where K's table cannot support that rate (and always under ``mean``, whose mean of more
  signatures has no calibrated counterpart) the template does not grow beyond K.

A template with no adapted signature is decided exactly as before adaptation existed.
A threshold given to the Gallery by hand decides every template; the update threshold is then
the smaller of it and the calibrated one.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .calibration import Calibration
from .fusion import check_rule, template_distance
from .types import ADAPTED, MatchResult, SignatureOrigin, Template, TemplateUpdate

__all__ = [
    "MAX_ADAPTED",
    "NEAR_DUPLICATE_FRACTION",
    "UPDATE_FMR_FACTOR",
    "adapted_capacity",
    "decide",
    "decision_threshold",
    "enrolled_only",
    "propose_update",
    "update_threshold",
    "with_adapted",
]

#: The update threshold sits at this fraction of the unlock FMR: one tenth, so joining the
#: template is ten times harder for a stranger than being let in, while the genuine probes that
#: join are still the bulk of those accepted by a clear margin. (The shipped fingerprint card,
#: calibrated at FMR 0.1% on 1,360 three-image impostor attempts, cannot support 0.01%: it never
#: adapts until recalibrated on more fingers or at a higher unlock FMR; see docs/runtime.md.)
UPDATE_FMR_FACTOR = 0.1
#: At most this many adapted signatures per template; the oldest leaves first.
MAX_ADAPTED = 5
#: A probe whose nearest template signature is closer than this fraction of the
#: single-comparison threshold is a near-duplicate (the same capture again) and adds nothing.
NEAR_DUPLICATE_FRACTION = 0.2


def _groups(size: int, largest: int) -> int:
    return -(-size // largest)


def decision_threshold(calibration: Calibration, size: int, rule: str,
                       fmr: float | None = None) -> tuple[float, int] | None:
    """(threshold, groups) at which a template of ``size`` signatures that holds adapted ones
    is decided under ``rule`` at ``fmr`` (default: the calibration's target): the calibrated
    point up to the largest calibrated size (groups 1), the union bound over ``groups``
    beyond it (``min`` only). None where the calibration cannot support it."""
    check_rule(rule)
    fmr = calibration.target_fmr if fmr is None else fmr
    largest = calibration.largest_size(rule)
    if size <= largest:
        threshold = calibration.threshold_at(fmr, size, rule)
        return None if threshold is None else (threshold, 1)
    if rule != "min":
        return None
    groups = _groups(size, largest)
    bound = calibration.threshold_at(fmr / groups, largest, rule)
    if bound is None:
        return None
    at_largest = calibration.threshold_at(fmr, largest, rule)
    return (bound if at_largest is None else min(bound, at_largest)), groups


def adapted_capacity(calibration: Calibration, n_enrolled: int, rule: str,
                     fixed: float | None = None, max_adapted: int = MAX_ADAPTED) -> int:
    """How many adapted signatures a template of ``n_enrolled`` enrollment signatures may hold:
    ``max_adapted``, fewer where the calibration cannot decide the larger template (with a
    threshold given by hand, ``max_adapted``)."""
    if fixed is not None:
        return max_adapted
    for count in range(max_adapted, 0, -1):
        if decision_threshold(calibration, n_enrolled + count, rule) is not None:
            return count
    return 0


def update_threshold(calibration: Calibration, n_enrolled: int, rule: str,
                     fixed: float | None = None) -> float | None:
    """The distance a probe must beat, to the template and to its enrollment signatures, to
    join: the calibrated threshold for ``n_enrolled``-signature templates at
    ``UPDATE_FMR_FACTOR`` times the unlock FMR (and at most ``fixed``, a threshold given by
    hand). None where the calibration's table cannot support that FMR."""
    threshold = calibration.threshold_at(UPDATE_FMR_FACTOR * calibration.target_fmr,
                                         n_enrolled, rule)
    if threshold is None:
        return None
    return threshold if fixed is None else min(threshold, fixed)


def decide(template: Template, probe: np.ndarray, calibration: Calibration, rule: str = "min",
           fixed: float | None = None) -> MatchResult:
    """The decision for ``probe`` (D,) against ``template``: the rule over its signatures, at
    the threshold its size calls for (see the module notes; ``fixed``, a threshold given by
    hand, wins). A template with adapted signatures the calibration can no longer decide (it
    was recalibrated) is decided on its enrollment signatures and its newest adapted ones, as
    many as the calibration decides."""
    check_rule(rule)
    signatures = np.asarray(template.signatures)
    size = len(signatures)
    if template.n_adapted == 0:
        distance = template_distance(probe, signatures, rule)
        threshold = calibration.threshold_for(size, rule) if fixed is None else fixed
        return MatchResult(template.subject, distance, threshold, distance < threshold,
                           calibration.fmr_estimate(distance, size, rule))
    point = decision_threshold(calibration, size, rule)
    if point is None and fixed is None:
        room = adapted_capacity(calibration, template.n_enrolled, rule)
        mask = np.ones(size, bool)
        mask[np.flatnonzero(~template.enrolled_mask)[: template.n_adapted - room]] = False
        signatures, size = signatures[mask], int(mask.sum())
        point = decision_threshold(calibration, size, rule) or (
            calibration.threshold_for(size, rule), 1)
    threshold, groups = point or (fixed, 1)
    distance = template_distance(probe, signatures, rule)
    estimate = calibration.fmr_estimate(distance, size, rule)
    if estimate is not None and groups > 1:
        estimate = min(1.0, groups * estimate)
    threshold = threshold if fixed is None else fixed
    return MatchResult(template.subject, distance, threshold, distance < threshold, estimate)


def with_adapted(template: Template, probe: np.ndarray, distance: float, added: str | None,
                 evict: int = 0) -> Template:
    """``template`` with ``probe`` appended as an adapted signature accepted at ``distance`` and
    added at ``added`` (ISO 8601 UTC), after its ``evict`` oldest adapted signatures left."""
    keep = template.enrolled_mask
    adapted = np.flatnonzero(~keep)
    keep[adapted[evict:]] = True
    signatures = np.concatenate([np.asarray(template.signatures, np.float32)[keep],
                                 np.asarray(probe, np.float32)[None, :]])
    origins = tuple(o for o, k in zip(template.origins, keep) if k) + (
        SignatureOrigin(ADAPTED, added, float(distance)),)
    return dataclasses.replace(template, signatures=signatures, origins=origins)


def enrolled_only(template: Template) -> Template:
    """``template`` without its adapted signatures: what its enrollment made. The way back when
    an adapted signature is suspect (an impostor accepted once pulls the template towards them;
    the update policy cannot undo that itself)."""
    keep = template.enrolled_mask
    return dataclasses.replace(
        template, signatures=np.asarray(template.signatures, np.float32)[keep],
        origins=tuple(o for o, k in zip(template.origins, keep) if k))


def _no(reason: str, detail: str, **facts: object) -> tuple[TemplateUpdate, None]:
    return TemplateUpdate(False, reason, detail, **facts), None


def propose_update(template: Template, probe: np.ndarray, decision: MatchResult,
                   calibration: Calibration, rule: str = "min", added: str | None = None,
                   fixed: float | None = None, max_adapted: int = MAX_ADAPTED,
                   anchor: bool = True) -> tuple[TemplateUpdate, Template | None]:
    """Whether ``probe`` (D,), decided as ``decision`` against ``template``, joins it: the
    update record and, if it joins, the new template (to be stored by the caller). The guards
    run in the order of the module notes; the first that fails is the reason given.
    ``max_adapted`` and ``anchor=False`` (guard (b) off) exist to measure the policy
    (bench/adaptive_templates.py); the Gallery always uses the defaults."""
    check_rule(rule)
    if not decision.accepted:
        return _no("rejected", "the probe was rejected; only accepted probes join a template")
    target = UPDATE_FMR_FACTOR * calibration.target_fmr
    limit = update_threshold(calibration, template.n_enrolled, rule, fixed)
    if limit is None:
        table = calibration.point_for(template.n_enrolled, rule).table
        return _no("unsupported",
                   f"the model's calibration ({table.n_impostor:,} impostor attempts for "
                   f"{template.n_enrolled}-signature templates) cannot support the update FMR "
                   f"{target:.4%}; recalibrate on more fingers or at a higher FMR "
                   "(`siamid calibrate`)")
    facts: dict[str, object] = {"update_threshold": limit}
    if decision.distance >= limit:
        return _no("above_update_threshold",
                   f"distance {decision.distance:.4f} is not below the update threshold "
                   f"{limit:.4f} (FMR {target:.4%})", **facts)
    to_enrolled = template_distance(probe, template.enrolled, rule)
    facts["anchor_distance"] = to_enrolled
    if anchor and to_enrolled >= limit:
        return _no("off_anchor",
                   f"distance {to_enrolled:.4f} to the enrollment signatures is not below the update "
                   f"threshold {limit:.4f}: only probes close to the enrolled person join",
                   **facts)
    nearest = template_distance(probe, template.signatures, "min")
    facts["nearest"] = nearest
    duplicate = NEAR_DUPLICATE_FRACTION * calibration.threshold
    if nearest < duplicate:
        return _no("near_duplicate",
                   f"distance {nearest:.4f} to the closest template signature is below "
                   f"{duplicate:.4f}: a near-duplicate adds nothing", **facts)
    room = adapted_capacity(calibration, template.n_enrolled, rule, fixed, max_adapted)
    if room == 0:
        return _no("no_room",
                   f"the model's calibration cannot decide a template larger than its "
                   f"{template.n_enrolled} enrollment signatures", **facts)
    evict = max(0, template.n_adapted + 1 - room)
    updated = with_adapted(template, probe, decision.distance, added, evict)
    detail = (f"added as adapted signature {updated.n_adapted} of at most {room}"
              + (f", the oldest {evict} evicted" if evict else ""))
    return TemplateUpdate(True, "updated", detail, evicted=evict, **facts), updated

