"""The one exception hierarchy. Every error siamid raises on purpose is a SiamidError.

Messages name the bad value and say what to do; the CLI maps these to exit code 3.
"""

from __future__ import annotations


class SiamidError(Exception):
    """Base of every error siamid raises on purpose."""


class ConfigError(SiamidError):
    """A configuration file or value is invalid (unknown key, wrong type, out of range)."""


class DatasetError(SiamidError):
    """A dataset folder is empty, unreadable, mixed-size, or cannot be split as asked."""


class QualityError(SiamidError):
    """An image was rejected by the quality check; ``reason`` says why."""

    def __init__(self, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason


class SensorError(SiamidError):
    """The fingerprint sensor did not answer, or answered with an error code.

    ``code`` is the sensor's confirmation code when the sensor itself reported the failure
    (for example 0x02, no finger on the sensor), and None when the failure is the link's:
    no answer in time, a corrupted packet, a lost port.
    """

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class TemplateError(SiamidError):
    """A stored template is malformed or cannot be used."""


class ModelError(SiamidError):
    """A model file is missing, unreadable, or lacks its ModelCard."""


class ModelMismatchError(ModelError, TemplateError):
    """A template or signature was made by another model than the one in use."""


class NotEnrolledError(SiamidError):
    """Verification was asked for a subject that has no template."""


class TrainingError(SiamidError):
    """Training cannot start or continue (bad run folder, nothing to learn from)."""
