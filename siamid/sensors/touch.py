"""What the touch-driven commands (``siamid.capture``, ``siamid.reader``) use of a sensor.

``siamid.sensors.R503`` has it; tests may pass any object that does.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np


class TouchSensor(Protocol):
    """Ring LED, capture on touch, image upload, and waiting for the finger to lift."""

    def set_led(self, mode: Any = ..., colour: Any = ..., speed: int = ...,
                cycles: int = ...) -> None: ...
    def capture(self, timeout: float = ..., poll: float = ...) -> None: ...
    def upload_image(self) -> np.ndarray: ...
    def wait_for_lift(self, timeout: float = ..., poll: float = ...) -> bool: ...


__all__ = ["TouchSensor"]
