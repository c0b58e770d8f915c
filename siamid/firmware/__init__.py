"""The firmware side of siamid: a portable C99 reference and its Python mirrors.

``siamid_ref.h`` / ``siamid_ref.c`` (package data beside this file) preprocess an image with the
integer stages of ``siamid.fixedpoint``, judge its quality, turn the model's int8 output into a
unit signature and decide it against an enrolled template; ``signatures`` is the Python mirror of
the C signature arithmetic, ``vectors`` writes test vectors that ``siamid_check.c`` (a test
harness with a ``main``) checks the C against. ``siamid.cexport`` writes a model's files.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["CHECK_SOURCE", "REFERENCE_SOURCES", "source_dir"]

#: The reference library: copied beside a model's generated files by ``siamid.cexport``.
REFERENCE_SOURCES = ("siamid_ref.h", "siamid_ref.c")
#: The test harness: reads a test vector file, runs the reference, reports mismatches.
CHECK_SOURCE = "siamid_check.c"


def source_dir() -> Path:
    """The folder holding the C sources (inside the installed package)."""
    return Path(__file__).resolve().parent
