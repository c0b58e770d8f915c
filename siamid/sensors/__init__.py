"""Image sources: what a sensor delivers. Today: the R503 view of any 500 dpi-class image.

The UART driver for R503-class sensors and its simulator will live here too (DESIGN.md).
"""

from __future__ import annotations

from .r503 import R503_DPI, R503_GRAY_LEVELS, R503_SIDE, quantise, r503_view

__all__ = ["R503_DPI", "R503_GRAY_LEVELS", "R503_SIDE", "quantise", "r503_view"]
