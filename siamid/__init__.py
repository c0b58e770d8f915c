"""siamid: biometric authentication with learned signatures.

The public API. Heavy layers load lazily: ``import siamid`` never imports torch, so a device that
only authenticates (``Embedder``, ``Gallery``) runs without PyTorch installed.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

from .config import Config, load_config  # noqa: E402
from .errors import SiamidError  # noqa: E402
from .types import EvalReport, MatchResult, ModelCard, Pair, Sample, SampleId, Template  # noqa: E402

_LAZY = {
    "Embedder": "runtime",
    "Gallery": "runtime",
    "TemplateStore": "store",
    "train": "training",
    "evaluate_scores": "evaluation",
    "scan_dataset": "dataset",
    "generate_dataset": "synth",
}

__all__ = [
    "__version__", "Config", "load_config", "SiamidError", "SampleId", "Sample", "Pair",
    "ModelCard", "Template", "MatchResult", "EvalReport", *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'siamid' has no attribute {name!r}")
