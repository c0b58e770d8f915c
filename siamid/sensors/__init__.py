"""Image sources: what a sensor delivers.

- ``r503_view``: the R503 view of any 500 dpi-class image (192 x 192, 16 gray levels);
- ``R503``: the driver of R503-class UART fingerprint modules (R503, R30x, AS608, ZhianTec,
  GROW) over a serial port or any pyserial URL; needs ``pip install 'siamid[sensor]'``;
- ``SensorModel`` / ``PtySimulator``: such a module in software, reachable as the pyserial URL
  ``r503sim://?...`` or through a pseudo-terminal, with switchable faults (docs/sensor.md).

The packet format lives in ``protocol.py``; pyserial is imported only when a port is opened.
"""

from __future__ import annotations

from .driver import R503, available_ports
from .protocol import CONFIRMATION, describe
from .r503 import R503_DPI, R503_GRAY_LEVELS, R503_SIDE, quantise, r503_view
from .records import LedColour, LedMode, ProductInfo, SystemParameters
from .simulator import ALWAYS, Faults, PtySimulator, SensorModel, SimulatorConfig

__all__ = [
    "ALWAYS",
    "CONFIRMATION",
    "R503",
    "R503_DPI",
    "R503_GRAY_LEVELS",
    "R503_SIDE",
    "Faults",
    "LedColour",
    "LedMode",
    "ProductInfo",
    "PtySimulator",
    "SensorModel",
    "SimulatorConfig",
    "SystemParameters",
    "available_ports",
    "describe",
    "quantise",
    "r503_view",
]
