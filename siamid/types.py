"""Records passed between pipeline stages. Frozen dataclasses with documented units.

Pairs carry ``is_match: bool``, never 0/1 labels: the convention of 1 = match in one seed and
0 = match in another is exactly where published Siamese code got the sign wrong.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

#: Version of a stored template's payload. 1: signatures only; 2: each signature's origin
#: (enrolled or adapted, when it was added, the distance an adapted one was accepted at).
TEMPLATE_FORMAT_VERSION = 2
#: The origins a template signature may have: captured at enrollment (kept for ever), or a probe
#: added after an accepted decision (siamid/adaptation.py; bounded, evicted oldest first).
ENROLLED, ADAPTED = "enrolled", "adapted"


@dataclass(frozen=True, order=True)
class SampleId:
    """Who and which take: ``subject`` (a person), ``trait`` (``left/index``, ``face``), ``take``."""

    subject: str
    trait: str
    take: str

    @property
    def identity(self) -> str:
        """The identity label ``subject/trait``: each finger is its own identity."""
        return f"{self.subject}/{self.trait}"

    def __str__(self) -> str:
        return f"{self.subject}/{self.trait}/{self.take}"


@dataclass(frozen=True, eq=False)
class Sample:
    """One image. ``pixels`` is uint8 (H, W) or (H, W, C); ``dpi`` its resolution in dots per inch."""

    pixels: np.ndarray
    dpi: int
    id: SampleId
    path: Path | None = None
    quality: float | None = None


@dataclass(frozen=True)
class Pair:
    """Two samples and whether they are of the same identity (a genuine comparison)."""

    a: SampleId
    b: SampleId
    is_match: bool


@dataclass(frozen=True)
class Trial:
    """One verification attempt: ``probe`` against the template enrolled from ``template``.

    ``is_match`` says whether the probe is of the template's identity (a genuine attempt).
    """

    template: tuple[SampleId, ...]
    probe: SampleId
    is_match: bool


@dataclass(frozen=True)
class ModelCard:
    """Everything needed to use an exported tower correctly; embedded in the model file.

    ``preprocess`` holds the full preprocessing parameters (PreprocessConfig as a dict): the runtime
    rebuilds preprocessing from it, so training and run time cannot drift apart. ``threshold`` is
    the single-comparison Euclidean distance threshold (accept iff distance < threshold) chosen at
    ``threshold_fmr`` (a fraction); ``calibration`` (see ``siamid.calibration``) holds it with the
    thresholds for K-image templates under each comparison rule, the impostor tables behind
    per-decision FMR estimates and where the calibration set came from. ``compatible_ids`` lists
    other model ids whose templates this model may be compared with (an int8 file and its fp32
    original, when their measured drift allows it).
    """

    model_id: str
    architecture: str
    embedding_size: int
    input_size: tuple[int, int]
    channels: int
    preprocess: dict[str, Any]
    threshold: float
    threshold_fmr: float
    quantization: str = "fp32"
    trained_on: str = ""
    versions: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    calibration: dict[str, Any] = field(default_factory=dict)
    compatible_ids: tuple[str, ...] = ()

    def to_json(self) -> str:
        """Serialise to a JSON string (what goes into the model file's metadata)."""
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "ModelCard":
        """Parse what ``to_json`` wrote; raises ModelError on a malformed card.

        Cards written before calibrations were recorded (``calibration_impostor`` and
        ``template_thresholds`` beside the threshold) are read into ``calibration``.
        """
        from .errors import ModelError

        try:
            data = json.loads(text)
            if not isinstance(data, dict):
                raise TypeError(f"expected a JSON object, got {type(data).__name__}")
            impostor = data.pop("calibration_impostor", None)
            per_size = data.pop("template_thresholds", None)
            if not data.get("calibration") and (impostor or per_size):
                from .calibration import legacy_calibration

                data["calibration"] = legacy_calibration(
                    data["threshold"], data["threshold_fmr"], impostor or (), per_size or {})
            return cls._build(data)
        except (ValueError, KeyError, TypeError) as exc:
            raise ModelError(f"malformed ModelCard: {exc}") from exc

    @classmethod
    def _build(cls, data: dict[str, Any]) -> "ModelCard":
        data["input_size"] = tuple(data["input_size"])
        data["compatible_ids"] = tuple(data.get("compatible_ids", ()))
        return cls(**data)

    def with_changes(self, **changes: Any) -> "ModelCard":
        """A copy with some fields replaced (cards are frozen)."""
        data = asdict(self)
        data.update(changes)
        return ModelCard._build(data)


@dataclass(frozen=True)
class SignatureOrigin:
    """Where one template signature came from.

    ``kind`` is ``"enrolled"`` (an enrollment image, kept for ever) or ``"adapted"`` (a probe
    added after an accepted decision). ``added`` is when it joined the template, ISO 8601 UTC
    (``2026-03-01T09:30:00Z``), or None where that is unknown. ``distance`` is, for an adapted
    signature, the decision distance at which its probe was accepted (None for enrolled ones).
    ``pose`` is what the enrollment said of its image (a face's "front", "left"...; a finger's
    placement), None where nothing was said.
    """

    kind: str = ENROLLED
    added: str | None = None
    distance: float | None = None
    pose: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {"kind": self.kind, "added": self.added, "distance": self.distance}
        if self.pose is not None:
            out["pose"] = self.pose
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SignatureOrigin":
        distance, pose = data.get("distance"), data.get("pose")
        return cls(str(data["kind"]), data.get("added"),
                   None if distance is None else float(distance),
                   None if pose is None else str(pose))


@dataclass(frozen=True, eq=False)
class Template:
    """A subject's template: ``signatures`` float32 (k, embedding_size) made by ``model_id``.

    ``origins`` says, row by row, where each signature came from (``SignatureOrigin``); left
    empty, every signature is an enrollment signature of unknown date. Enrolled rows come first,
    then the adapted ones, oldest first.
    """

    subject: str
    model_id: str
    signatures: np.ndarray
    format_version: int = TEMPLATE_FORMAT_VERSION
    origins: tuple[SignatureOrigin, ...] = ()

    def __post_init__(self) -> None:
        if not self.origins:
            count = len(self.signatures) if np.ndim(self.signatures) >= 1 else 0
            object.__setattr__(self, "origins", (SignatureOrigin(),) * count)
        else:
            object.__setattr__(self, "origins", tuple(self.origins))

    @property
    def enrolled_mask(self) -> np.ndarray:
        """Bool (k,): which rows are enrollment signatures."""
        return np.array([o.kind == ENROLLED for o in self.origins], bool)

    @property
    def enrolled(self) -> np.ndarray:
        """The enrollment signatures alone (the anchor adaptation never moves away from)."""
        return np.asarray(self.signatures)[self.enrolled_mask]

    @property
    def n_enrolled(self) -> int:
        return int(self.enrolled_mask.sum())

    @property
    def n_adapted(self) -> int:
        return len(self.origins) - self.n_enrolled

    @property
    def newest(self) -> str | None:
        """When the newest signature of known date was added (ISO 8601 UTC), None if none is."""
        dates = [o.added for o in self.origins if o.added]
        return max(dates) if dates else None


@dataclass(frozen=True)
class MatchResult:
    """One decision. ``distance`` < ``threshold`` means ``accepted``.

    ``fmr_estimate`` is the fraction of the model's calibration impostor attempts (for the
    template's size and rule) at least this close: the chance that a stranger would score this
    well; None where the calibration kept no table for that size.
    """

    subject: str
    distance: float
    threshold: float
    accepted: bool
    fmr_estimate: float | None = None
    #: With ``Gallery.verify(..., adapt=True)``: whether the probe joined the template and why
    #: not; None when adaptation was not asked for.
    update: "TemplateUpdate | None" = None


@dataclass(frozen=True)
class TemplateUpdate:
    """What adaptation did with one verified probe (siamid/adaptation.py).

    ``updated``: the probe's signature joined the template. ``reason``: a short code
    (``updated``, ``rejected``, ``unsupported``, ``above_update_threshold``, ``off_anchor``,
    ``near_duplicate``, ``no_room``, ``other_model``, ``changed``), and ``detail`` the
    sentence a person reads. ``update_threshold`` is the stricter distance a probe must beat to
    join (None where the calibration cannot support it), ``anchor_distance`` the probe's
    distance to the enrollment signatures alone under the rule, ``nearest`` its distance to the
    closest signature already in the template, ``evicted`` how many adapted signatures left to
    make room (oldest first).
    """

    updated: bool
    reason: str
    detail: str
    update_threshold: float | None = None
    anchor_distance: float | None = None
    nearest: float | None = None
    evicted: int = 0


@dataclass(frozen=True, eq=False)
class EvalReport:
    """Error rates of one matcher on one pair list. Rates are fractions.

    ``thresholds`` ascending; ``fmr[i]`` = fraction of impostor distances < thresholds[i],
    ``fnmr[i]`` = fraction of genuine distances >= thresholds[i]. ``fmr100`` etc. are the lowest FNMR
    with FMR <= 1% / 0.1% / 0.01%, None where the impostor count cannot support that FMR.
    """

    thresholds: np.ndarray
    fmr: np.ndarray
    fnmr: np.ndarray
    eer: float
    eer_threshold: float
    fmr100: float | None
    fmr1000: float | None
    fmr10000: float | None
    zero_fmr: float
    roc_auc: float
    n_genuine: int
    n_impostor: int
    genuine: np.ndarray
    impostor: np.ndarray

    def summary(self) -> dict[str, Any]:
        """The scalar numbers, JSON-ready."""
        return {
            "eer": self.eer,
            "eer_threshold": self.eer_threshold,
            "fmr100": self.fmr100,
            "fmr1000": self.fmr1000,
            "fmr10000": self.fmr10000,
            "zero_fmr": self.zero_fmr,
            "roc_auc": self.roc_auc,
            "n_genuine": self.n_genuine,
            "n_impostor": self.n_impostor,
        }
