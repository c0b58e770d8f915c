"""The authenticator: an Embedder runs an exported model, a Gallery enrolls, verifies, identifies.

Needs numpy and onnxruntime only, never torch, onnx or matplotlib: a device that only
authenticates does not install the training stack. Everything the Embedder does comes from the
ModelCard inside the model file: preprocessing, input shape, threshold, model id.

Decisions follow the one score convention: Euclidean distance between L2-normalised signatures
(0..2), accept iff distance < threshold.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import onnxruntime as ort

from .adaptation import decide, propose_update
from .calibration import Calibration, card_calibration
from .cardfile import CARD_METADATA_KEY, card_from_metadata
from .config import PreprocessConfig
from .errors import (
    ConfigError,
    ModelError,
    ModelMismatchError,
    QualityError,
    TemplateError,
)
from .fusion import check_rule
from .preprocess import Preprocessor
from .store import TemplateStore, iso_time
from .types import ENROLLED, MatchResult, ModelCard, SignatureOrigin, Template, TemplateUpdate

__all__ = [
    "CARD_METADATA_KEY",
    "EnrollResult",
    "Embedder",
    "Gallery",
    "default_model_path",
    "read_card",
    "unmatched_images",
]

# Images per onnxruntime call: bounds memory when enrolling or benchmarking many images.
_BATCH = 64


def default_model_path() -> Path:
    """The model shipped inside the package: ``siamid/models/default.onnx``."""
    return Path(__file__).resolve().parent / "models" / "default.onnx"


def read_card(path: str | Path) -> ModelCard:
    """The ModelCard inside an exported model file (.onnx, or .tflite); ModelError if missing,
    unreadable, malformed."""
    return _card_from_session(_open_session(Path(path), threads=1), Path(path))


def _open_session(path: Path, threads: int) -> ort.InferenceSession:
    if not path.is_file():
        raise ModelError(
            f"model file {path} not found; export one with `siamid export` or pass the path of "
            "an exported .onnx file"
        )
    if path.suffix.lower() == ".tflite":  # a microcontroller export, run in LiteRT
        from .tflite.session import TfliteSession

        return TfliteSession(path)
    options = ort.SessionOptions()
    options.intra_op_num_threads = max(int(threads), 1)
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # onnxruntime would otherwise print warnings itself
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types for unreadable files
        raise ModelError(f"cannot load model {path}: {exc}") from exc


def _card_from_session(session: ort.InferenceSession, path: Path) -> ModelCard:
    return card_from_metadata(session.get_modelmeta().custom_metadata_map, path)


@dataclass(frozen=True)
class EnrollResult:
    """The outcome of ``Gallery.enroll``.

    ``accepted`` are the indices of the images whose signatures form the template; ``rejected``
    pairs each refused image's index with the quality check's reason. ``spread`` is the largest
    distance between two enrollment signatures; ``threshold`` the enrollment threshold
    (``Calibration.enrollment_threshold``) every enrollment image matched another image at.
    """

    subject: str
    template: Template
    accepted: list[int]
    rejected: list[tuple[int, str]] = field(default_factory=list)
    spread: float = 0.0
    threshold: float = 0.0


class Embedder:
    """An exported model, ready to turn images into signatures.

    ``path`` is an exported .onnx file (None: the model shipped with the package), or a .tflite
    file of ``siamid export --format tflite`` (run in LiteRT, its int8 output normalised on the
    host; needs the ``mcu`` extra); ``threads`` the onnxruntime intra-op threads. The card inside the file sets everything else: its
    ``preprocessor``, and its ``calibration`` (the thresholds and FMR estimates of decisions).
    """

    def __init__(self, path: str | Path | None = None, threads: int = 1) -> None:
        self.path = Path(path) if path is not None else default_model_path()
        self._session = _open_session(self.path, threads)
        self.card: ModelCard = _card_from_session(self._session, self.path)
        self.model_id: str = self.card.model_id
        # Rebuilt from the card alone, so the model is fed what it was trained on.
        self.preprocessor = Preprocessor.from_card(self.card, str(self.path))
        self.preprocess_config: PreprocessConfig = self.preprocessor.config
        self._input = self._session.get_inputs()[0].name
        self._output = self._session.get_outputs()[0].name
        self._check_shapes()
        self.calibration: Calibration = card_calibration(self.card)

    @property
    def embedding_size(self) -> int:
        """D, the length of one signature."""
        return self.card.embedding_size

    @property
    def threshold(self) -> float:
        """The card's single-comparison distance threshold (accept iff distance < threshold)."""
        return self.calibration.threshold

    def prepare(self, image: np.ndarray, dpi: int = 500, check: bool = True) -> np.ndarray:
        """Raw image -> network input (C, H, W) float32, by the card's preprocessing.

        One pass of the card's ``Preprocessor``; the values are ``k / 255`` exactly as training
        fed them. With ``check``, a rejected image raises QualityError whose ``reason`` says why
        (too dark, too little ridge area, ...). An image outside the size limits, or of the
        wrong shape or dpi, raises QualityError even without ``check``.
        """
        result = self.preprocessor.process(image, dpi)
        if check and not result.quality.ok:
            reason = result.quality.reason
            raise QualityError(f"image rejected: {reason}", reason)
        return result.as_float()

    def embed_prepared(self, batch: np.ndarray) -> np.ndarray:
        """Network inputs (N, C, H, W) float32 -> signatures (N, D) float32."""
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        want = (self.card.channels, *self.card.input_size)
        if batch.ndim != 4 or batch.shape[1:] != want:
            raise ModelError(f"model {self.model_id} expects (N, {want}) inputs, got {batch.shape}")
        parts = [
            self._session.run([self._output], {self._input: batch[i : i + _BATCH]})[0]
            for i in range(0, len(batch), _BATCH)
        ]
        if not parts:
            return np.zeros((0, self.embedding_size), np.float32)
        return np.concatenate(parts).astype(np.float32, copy=False)

    def embed(
        self, images: Sequence[np.ndarray], dpi: int = 500, check: bool = True
    ) -> np.ndarray:
        """Raw images -> signatures (N, D); an image failing the check raises QualityError."""
        if len(images) == 0:
            return np.zeros((0, self.embedding_size), np.float32)
        return self.embed_prepared(np.stack([self.prepare(im, dpi, check) for im in images]))

    def embed_one(self, image: np.ndarray, dpi: int = 500, check: bool = True) -> np.ndarray:
        """One raw image -> its signature (D,)."""
        return self.embed([image], dpi, check)[0]

    def accepts_templates_of(self, model_id: str) -> bool:
        """Whether signatures made by ``model_id`` may be compared with this model's: its own
        id, or one its card lists as compatible (an fp32/int8 pair whose measured drift
        allows it)."""
        return model_id == self.model_id or model_id in self.card.compatible_ids

    def _check_shapes(self) -> None:
        shape = self._session.get_inputs()[0].shape
        want = [self.card.channels, *self.card.input_size]
        if len(shape) != 4 or list(shape[1:]) != want:
            raise ModelError(
                f"model {self.path} takes inputs of shape {shape} but its card says "
                f"(N, {', '.join(map(str, want))}); re-export the model"
            )
        out = self._session.get_outputs()[0].shape
        if len(out) != 2 or out[1] != self.card.embedding_size:
            raise ModelError(
                f"model {self.path} outputs shape {out} but its card says embedding size "
                f"{self.card.embedding_size}; re-export the model"
            )


class Gallery:
    """Enrollment and matching over a TemplateStore, with one Embedder.

    ``threshold`` overrides the model's (a Euclidean distance; accept iff distance < threshold).
    Without it, each decision uses the threshold the model's calibration gives the template's
    size and rule (see ``threshold_for``), so that a 3-image template keeps the FMR the model was
    calibrated for; each decision's ``fmr_estimate`` comes from the same calibration. Templates
    made by another model (one the card does not list as compatible) are refused with
    ModelMismatchError, never compared: signatures of two models live in unrelated spaces.
    ``verify(..., adapt=True)`` lets accepted probes join their template under the policy of
    siamid/adaptation.py, which also says how templates holding adapted signatures are decided.
    """

    def __init__(
        self, embedder: Embedder, store: TemplateStore, threshold: float | None = None
    ) -> None:
        self.embedder = embedder
        self.store = store
        chosen = embedder.threshold if threshold is None else threshold
        if not np.isfinite(chosen) or not 0.0 < float(chosen) <= 2.0:
            raise ConfigError(
                f"threshold must be a distance in (0, 2] for unit-length signatures, got {chosen!r}"
            )
        self.threshold = float(chosen)
        self._fixed = threshold is not None

    def threshold_for(self, size: int, rule: str = "min") -> float:
        """The threshold a template of ``size`` signatures is decided at under ``rule``: the
        threshold given to the Gallery, if any, else the model's calibration's
        (``Calibration.threshold_for``)."""
        if self._fixed:
            return self.threshold
        return self.embedder.calibration.threshold_for(size, rule)

    def enroll(
        self,
        subject: str,
        images: Sequence[np.ndarray],
        dpi: int = 500,
        min_images: int = 3,
        replace: bool = False,
        poses: Sequence[str] | None = None,
    ) -> EnrollResult:
        """Store a template of ``subject`` made from the images that pass the quality check.

        ``poses`` (one per image, e.g. "front", "left") are recorded with the signatures.

        Raises TemplateError if ``subject`` is already enrolled and not ``replace``, and
        QualityError (saying why; nothing is stored) if fewer than ``min_images`` pass the
        quality check, if one image is given twice (same pixels, or signatures closer than a
        tiny epsilon), or if an image matches none of the others at the model's enrollment
        threshold (``Calibration.enrollment_threshold``; the Gallery's own threshold if it was
        given one): the images must all be of the same finger.
        """
        if not isinstance(subject, str) or not subject.strip():
            raise TemplateError(f"subject must be a non-empty name, got {subject!r}")
        if min_images < 1:
            raise ConfigError(f"min_images must be >= 1, got {min_images}")
        if not replace and subject in self.store:
            raise TemplateError(
                f"subject {subject!r} is already enrolled; pass replace=True (--replace) to "
                "re-enroll"
            )
        if poses is not None and len(poses) != len(images):
            raise ConfigError(f"{len(poses)} poses for {len(images)} images; give one pose per "
                              "image, in the same order")
        accepted: list[int] = []
        rejected: list[tuple[int, str]] = []
        inputs: list[np.ndarray] = []
        for index, image in enumerate(images):
            try:
                inputs.append(self.embedder.prepare(image, dpi, check=True))
                accepted.append(index)
            except QualityError as exc:
                rejected.append((index, exc.reason or str(exc)))
        if len(inputs) < min_images:
            reasons = "; ".join(f"image {i}: {r}" for i, r in rejected) or "no images given"
            raise QualityError(
                f"cannot enroll {subject!r}: {len(inputs)} of {len(images)} images passed the "
                f"quality check, {min_images} needed ({reasons}); capture more images",
                reasons,
            )
        signatures = self.embedder.embed_prepared(np.stack(inputs))
        distances = np.sqrt(((signatures[:, None, :] - signatures[None, :, :]) ** 2).sum(-1))
        threshold = self.threshold if self._fixed else self.embedder.calibration.enrollment_threshold()
        _check_enrollment(subject, [images[i] for i in accepted], accepted, distances, threshold)
        now = iso_time()
        origins = tuple(SignatureOrigin(ENROLLED, now, pose=None if poses is None else poses[i])
                        for i in accepted)
        template = Template(subject=subject, model_id=self.embedder.model_id,
                            signatures=signatures, origins=origins)
        self.store.put(template, replace=replace)
        return EnrollResult(subject, template, accepted, rejected, float(distances.max()),
                            threshold)

    def verify(
        self, subject: str, image: np.ndarray, dpi: int = 500, rule: str = "min",
        adapt: bool = False,
    ) -> MatchResult:
        """1:1 -- is ``image`` of ``subject``? NotEnrolledError if ``subject`` has no template.

        ``rule`` "min": the smallest distance to any template signature; "mean": the distance
        to the re-normalised mean of the template signatures.

        ``adapt``: after an accepted decision the probe's signature may join the template
        (siamid/adaptation.py: a stricter update threshold, the anchor on the enrollment
        signatures, no near-duplicates, a bounded adapted part evicted oldest first); the
        result's ``update`` says whether it did and why not. Without it nothing is written.
        """
        check_rule(rule)
        template = self.store.get(subject)
        self._check_model(template)
        probe = self.embedder.embed_one(image, dpi, check=True)
        result = self._decide(template, probe, rule)
        if not adapt:
            return result
        if template.model_id != self.embedder.model_id:
            update = TemplateUpdate(
                False, "other_model",
                f"the template was made by model {template.model_id}, a compatible one; only "
                f"signatures of the same model ({self.embedder.model_id}) join it")
            return dataclasses.replace(result, update=update)
        fixed = self.threshold if self._fixed else None
        update, adapted = propose_update(template, probe, result, self.embedder.calibration,
                                         rule, iso_time(), fixed)
        if adapted is not None and not self.store.replace_if_unchanged(template, adapted):
            update = TemplateUpdate(False, "changed",
                                    "the template changed while the probe was decided (it "
                                    "was re-enrolled or adapted meanwhile); nothing written",
                                    update.update_threshold, update.anchor_distance,
                                    update.nearest)
        return dataclasses.replace(result, update=update)

    def identify(
        self, image: np.ndarray, dpi: int = 500, rule: str = "min", top_k: int = 5
    ) -> list[MatchResult]:
        """1:N -- the ``top_k`` closest enrolled subjects, nearest first, each with its decision.

        An empty gallery gives an empty list. Any template of another model refuses the search.
        """
        check_rule(rule)
        if top_k < 1:
            raise ConfigError(f"top_k must be >= 1, got {top_k}")
        templates = self.store.all()
        for template in templates:
            self._check_model(template)
        if not templates:
            return []
        probe = self.embedder.embed_one(image, dpi, check=True)
        scored = sorted((self._decide(t, probe, rule) for t in templates),
                        key=lambda m: (m.distance, m.subject))
        return scored[:top_k]

    def _decide(self, template: Template, probe: np.ndarray, rule: str) -> MatchResult:
        return decide(template, probe, self.embedder.calibration, rule,
                      self.threshold if self._fixed else None)

    def _check_model(self, template: Template) -> None:
        if not self.embedder.accepts_templates_of(template.model_id):
            raise ModelMismatchError(
                f"template of {template.subject!r} was made by model {template.model_id} but "
                f"the model in use is {self.embedder.model_id}; signatures of different models "
                f"cannot be compared: re-enroll {template.subject!r} with this model"
            )
        if template.signatures.shape[1] != self.embedder.embedding_size:
            raise TemplateError(
                f"template of {template.subject!r} has signatures of length "
                f"{template.signatures.shape[1]}, model {self.embedder.model_id} makes "
                f"{self.embedder.embedding_size}; re-enroll {template.subject!r}"
            )


def unmatched_images(distances: np.ndarray, threshold: float) -> list[int]:
    """The enrollment images (rows of the (k, k) signature ``distances``) that come within
    ``threshold`` of no other image: the rule that refuses an enrollment of mixed fingers.
    A single image has nothing to agree with and is never unmatched."""
    k = len(distances)
    if k < 2:
        return []
    return [a for a in range(k)
            if not any(distances[a, b] < threshold for b in range(k) if b != a)]


# Enrollment signatures closer than this come from the same image (a copy, or a re-encoding):
# two captures of a finger differ by far more, even on a toy model.
_SAME_IMAGE_DISTANCE = 1e-5


def _check_enrollment(
    subject: str,
    images: Sequence[np.ndarray],
    indices: list[int],
    distances: np.ndarray,
    threshold: float,
) -> None:
    """QualityError unless the enrollment images are distinct captures of one finger.

    ``images`` passed the quality check; ``indices`` are their positions among the images given
    (the numbers a user sees); ``distances`` the (k, k) distances between their signatures.
    """
    k = len(indices)
    for a in range(k):
        for b in range(a + 1, k):
            same = distances[a, b] < _SAME_IMAGE_DISTANCE or (
                images[a].shape == images[b].shape and np.array_equal(images[a], images[b])
            )
            if same:
                reason = f"images {indices[a]} and {indices[b]} are the same image given twice"
                raise QualityError(
                    f"cannot enroll {subject!r}: {reason}; give {k} different captures of "
                    "the finger",
                    reason,
                )
    lonely = unmatched_images(distances, threshold)
    if not lonely:
        return
    names = ", ".join(str(indices[a]) for a in lonely)
    subject_of = "image" if len(lonely) == 1 else "images"
    verb = "matches" if len(lonely) == 1 else "match"
    details = "; ".join(
        f"image {indices[a]} distances "
        + ", ".join(f"{distances[a, b]:.4f} to {indices[b]}" for b in range(k) if b != a)
        for a in lonely
    )
    reason = (f"{subject_of} {names} {verb} none of the others at the enrollment threshold "
              f"{threshold:.4f} ({details})")
    raise QualityError(
        f"cannot enroll {subject!r}: the images are not of one finger (or face): {reason}; "
        "capture the same finger (or face) again (or leave out the image that does not belong)",
        reason,
    )
