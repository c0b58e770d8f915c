"""The authenticator: an Embedder runs an exported model, a Gallery enrolls, verifies, identifies.

Needs numpy and onnxruntime only, never torch, onnx or matplotlib: a device that only
authenticates does not install the training stack. Everything the Embedder does comes from the
ModelCard inside the model file: preprocessing, input shape, threshold, model id.

Decisions follow the one score convention: Euclidean distance between L2-normalised signatures
(0..2), accept iff distance < threshold.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import onnxruntime as ort

from .config import PreprocessConfig, from_dict
from .errors import (
    ConfigError,
    ModelError,
    ModelMismatchError,
    QualityError,
    TemplateError,
)
from .fusion import check_rule, template_distance
from .preprocess import check_quality, preprocess
from .store import TemplateStore
from .types import ModelCard, MatchResult, Template

__all__ = [
    "CARD_METADATA_KEY",
    "EnrollResult",
    "Embedder",
    "Gallery",
    "default_model_path",
    "read_card",
]

#: Key of the ModelCard JSON in an ONNX file's metadata_props.
CARD_METADATA_KEY = "siamid.model_card"
# Images per onnxruntime call: bounds memory when enrolling or benchmarking many images.
_BATCH = 64


def default_model_path() -> Path:
    """The model shipped inside the package: ``siamid/models/default.onnx``."""
    return Path(__file__).resolve().parent / "models" / "default.onnx"


def read_card(path: str | Path) -> ModelCard:
    """The ModelCard inside an exported ONNX file; ModelError if missing, unreadable, malformed."""
    return _card_from_session(_open_session(Path(path), threads=1), Path(path))


def _open_session(path: Path, threads: int) -> ort.InferenceSession:
    if not path.is_file():
        raise ModelError(
            f"model file {path} not found; export one with `siamid export` or pass the path of "
            "an exported .onnx file"
        )
    options = ort.SessionOptions()
    options.intra_op_num_threads = max(int(threads), 1)
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # onnxruntime would otherwise print warnings itself
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types for unreadable files
        raise ModelError(f"cannot load model {path}: {exc}") from exc


def _card_from_session(session: ort.InferenceSession, path: Path) -> ModelCard:
    meta = session.get_modelmeta().custom_metadata_map
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


@dataclass(frozen=True)
class EnrollResult:
    """The outcome of ``Gallery.enroll``.

    ``accepted`` are the indices of the images whose signatures form the template; ``rejected``
    pairs each refused image's index with the quality check's reason. ``spread`` is the largest
    distance between two enrollment signatures: near or above the threshold suggests the images
    are not all of the same finger.
    """

    subject: str
    template: Template
    accepted: list[int]
    rejected: list[tuple[int, str]] = field(default_factory=list)
    spread: float = 0.0


class Embedder:
    """An exported model, ready to turn images into signatures.

    ``path`` is an exported .onnx file (None: the model shipped with the package); ``threads`` the
    onnxruntime intra-op threads. The card inside the file sets everything else.
    """

    def __init__(self, path: str | Path | None = None, threads: int = 1) -> None:
        self.path = Path(path) if path is not None else default_model_path()
        self._session = _open_session(self.path, threads)
        self.card: ModelCard = _card_from_session(self._session, self.path)
        self.model_id: str = self.card.model_id
        try:
            self.preprocess_config: PreprocessConfig = from_dict(
                PreprocessConfig, self.card.preprocess, f"{self.path} ModelCard.preprocess"
            )
        except ConfigError as exc:
            raise ModelError(
                f"{exc}; the model was exported by another siamid version, upgrade siamid or "
                "re-export the model"
            ) from exc
        self._input = self._session.get_inputs()[0].name
        self._output = self._session.get_outputs()[0].name
        self._check_shapes()
        impostor = np.asarray(self.card.calibration_impostor, dtype=np.float64)
        # Sorted again: the card promises it, but a search on unsorted data is silently wrong.
        self._impostor = np.sort(impostor) if impostor.size else None

    @property
    def embedding_size(self) -> int:
        """D, the length of one signature."""
        return self.card.embedding_size

    @property
    def threshold(self) -> float:
        """The card's distance threshold (accept iff distance < threshold)."""
        return self.card.threshold

    def prepare(self, image: np.ndarray, dpi: int = 500, check: bool = True) -> np.ndarray:
        """Raw image -> network input (C, H, W) float32, by the card's preprocessing.

        With ``check``, the quality check runs first and a rejected image raises QualityError
        whose ``reason`` says why (too dark, too little ridge area, ...).
        """
        cfg = self.preprocess_config
        if check:
            verdict = check_quality(image, dpi, cfg)
            if not verdict.ok:
                raise QualityError(f"image rejected: {verdict.reason}", verdict.reason)
        x = preprocess(image, dpi, cfg)
        want = (self.card.channels, *self.card.input_size)
        if x.shape != want:
            raise ModelError(
                f"preprocessing gives {x.shape} but model {self.model_id} expects {want}; "
                "the card's preprocess.size/channels disagree with its input size: re-export"
            )
        return x

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

    def fmr_estimate(self, distance: float) -> float | None:
        """Fraction of the card's calibration impostor distances <= ``distance``; None without them.

        The chance that a stranger's image would come at least this close.
        """
        if self._impostor is None:
            return None
        return float(np.searchsorted(self._impostor, distance, side="right") / self._impostor.size)

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

    ``threshold`` overrides the card's (a Euclidean distance; accept iff distance < threshold).
    Without it, each decision uses the card's threshold for the template's size (see
    ``threshold_for``), so that a 3-image template keeps the FMR the model was calibrated for.
    Templates made by another model are refused with ModelMismatchError, never compared:
    signatures of two models live in unrelated spaces.
    """

    def __init__(
        self, embedder: Embedder, store: TemplateStore, threshold: float | None = None
    ) -> None:
        self.embedder = embedder
        self.store = store
        chosen = embedder.card.threshold if threshold is None else threshold
        if not np.isfinite(chosen) or not 0.0 < float(chosen) <= 2.0:
            raise ConfigError(
                f"threshold must be a distance in (0, 2] for unit-length signatures, got {chosen!r}"
            )
        self.threshold = float(chosen)
        self._fixed = threshold is not None

    def threshold_for(self, size: int, rule: str = "min") -> float:
        """The threshold a template of ``size`` signatures is decided at under ``rule``.

        The threshold given to the Gallery, if any; otherwise, for the ``min`` rule, the card's
        threshold for the largest template size it knows that is not above ``size`` (an
        impostor gets one try per signature, so bigger templates need a lower threshold; above
        the largest size the card knows, the FMR creeps above its target); otherwise the card's
        single-comparison threshold.
        """
        if self._fixed or rule != "min":
            return self.threshold
        known = {int(k): float(v) for k, v in self.embedder.card.template_thresholds.items()}
        fitting = [k for k in known if k <= size]
        return known[max(fitting)] if fitting else self.threshold

    def enroll(
        self,
        subject: str,
        images: Sequence[np.ndarray],
        dpi: int = 500,
        min_images: int = 3,
        replace: bool = False,
    ) -> EnrollResult:
        """Store a template of ``subject`` made from the images that pass the quality check.

        Raises TemplateError if ``subject`` is already enrolled and not ``replace``, and
        QualityError (naming each rejected image's reason) if fewer than ``min_images`` pass.
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
        template = Template(subject=subject, model_id=self.embedder.model_id, signatures=signatures)
        self.store.put(template, replace=replace)
        diffs = signatures[:, None, :] - signatures[None, :, :]
        spread = float(np.sqrt((diffs**2).sum(-1)).max())
        return EnrollResult(subject, template, accepted, rejected, spread)

    def verify(
        self, subject: str, image: np.ndarray, dpi: int = 500, rule: str = "min"
    ) -> MatchResult:
        """1:1 -- is ``image`` of ``subject``? NotEnrolledError if ``subject`` has no template.

        ``rule`` "min": the smallest distance to any enrollment signature; "mean": the distance
        to the re-normalised mean of the enrollment signatures.
        """
        check_rule(rule)
        template = self.store.get(subject)
        self._check_model(template)
        probe = self.embedder.embed_one(image, dpi, check=True)
        return self._decide(subject, template_distance(probe, template.signatures, rule),
                            self.threshold_for(len(template.signatures), rule))

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
        scored = [(template_distance(probe, t.signatures, rule), t.subject,
                   self.threshold_for(len(t.signatures), rule)) for t in templates]
        scored.sort()
        return [self._decide(subject, d, thr) for d, subject, thr in scored[:top_k]]

    def _decide(self, subject: str, distance: float, threshold: float) -> MatchResult:
        return MatchResult(
            subject=subject,
            distance=distance,
            threshold=threshold,
            accepted=distance < threshold,
            fmr_estimate=self.embedder.fmr_estimate(distance),
        )

    def _check_model(self, template: Template) -> None:
        if template.model_id != self.embedder.model_id:
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
