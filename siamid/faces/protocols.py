"""Who is compared with whom on faces captured in several poses.

A take named ``<pose>_<k>`` (RAP3DF's ``front_1``, ``left_2``) is pose ``<pose>``
(``siamid.embedspace.pose_of``, which the signature-space pictures mark the same way). ``pose_trials`` is the enrollment protocol of a face unlock:
each person enrolls from their first take of ``enroll_pose`` (or the first ``k`` of them), every
other take probes it, and the trials come per probe pose so that a table can say how the
tower copes with a turned head or strong light.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..embedspace import pose_of
from ..errors import DatasetError
from ..pairs import natural_key
from ..types import SampleId, Trial


def pose_trials(ids: Sequence[SampleId], enroll_pose: str = "front",
                k: int = 1) -> dict[str, list[Trial]]:
    """{probe pose: trials}: each identity's first ``k`` takes of ``enroll_pose`` are its
    template; each of its other takes is a genuine trial of that take's pose, and an impostor
    trial against every other identity's template. Identities with fewer than ``k`` takes of
    ``enroll_pose`` enroll nothing; their takes are impostor probes only. DatasetError when no
    identity can enroll."""
    by_identity: dict[str, list[SampleId]] = {}
    for sample_id in ids:
        by_identity.setdefault(sample_id.identity, []).append(sample_id)
    templates: dict[str, tuple[SampleId, ...]] = {}
    probes: dict[str, list[SampleId]] = {}
    for identity, takes in by_identity.items():
        takes = sorted(takes, key=lambda s: natural_key(s.take))
        enroll = [s for s in takes if pose_of(s.take) == enroll_pose][:k]
        if len(enroll) == k:
            templates[identity] = tuple(enroll)
        probes[identity] = [s for s in takes if s not in templates.get(identity, ())]
    if not templates:
        raise DatasetError(f"no identity has {k} take(s) of pose {enroll_pose!r} to enroll "
                           "from; poses are the take names without their _<number> suffix")
    trials: dict[str, list[Trial]] = {}
    for owner, template in templates.items():
        for identity, takes in probes.items():
            for probe in takes:
                trials.setdefault(pose_of(probe.take), []).append(
                    Trial(template, probe, identity == owner))
    return dict(sorted(trials.items(), key=lambda item: natural_key(item[0])))


__all__ = ["pose_trials"]
