"""What an R503-class module reports about itself, and the ring LED's settings.

``SystemParameters`` is the answer to ReadSysPara (every R30x/AS608-class module);
``ProductInfo`` the answer to ReadProdInfo (R503 and newer: model, serial, image size).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from ..errors import SensorError
from .protocol import BAUD_UNIT, PACKET_SIZES

# Image sizes of modules that do not report theirs, by the number of bytes they upload.
KNOWN_IMAGE_SIZES: dict[int, tuple[int, int]] = {
    192 * 192 // 2: (192, 192),  # R503 and other small round sensors
    256 * 288 // 2: (256, 288),  # R30x, AS608, ZFM-20 and the like
}


class LedMode(IntEnum):
    """AuraLedConfig control codes of the R503's ring LED."""

    BREATHING = 1
    FLASHING = 2
    ON = 3
    OFF = 4
    FADE_IN = 5  # gradually on
    FADE_OUT = 6  # gradually off


class LedColour(IntEnum):
    """AuraLedConfig colour indices: 1-3 on every R503, 4-7 on newer modules only."""

    RED = 1
    BLUE = 2
    PURPLE = 3
    GREEN = 4
    YELLOW = 5
    CYAN = 6
    WHITE = 7


@dataclass(frozen=True)
class SystemParameters:
    """The module's system parameters (ReadSysPara), in plain units.

    ``packet_size`` is in bytes (the module reports a code 0..3 for 32..256) and ``baudrate`` in
    bits per second (the module reports N for 9600 * N).
    """

    status: int
    system_id: int
    library_size: int
    security_level: int
    address: int
    packet_size: int
    baudrate: int

    SIZE = 16  # payload bytes after the confirmation code

    @property
    def busy(self) -> bool:
        """Status bit 0: the module is executing a command."""
        return bool(self.status & 0x01)

    @property
    def password_verified(self) -> bool:
        """Status bit 2: the handshake password has been verified."""
        return bool(self.status & 0x04)

    @property
    def image_ready(self) -> bool:
        """Status bit 3: the image buffer holds a valid image."""
        return bool(self.status & 0x08)

    @classmethod
    def from_payload(cls, data: bytes) -> SystemParameters:
        """Parse the 16 bytes that follow the confirmation code."""
        if len(data) < cls.SIZE:
            raise SensorError(f"system parameters cut short: {len(data)} of {cls.SIZE} bytes")

        def word(i: int) -> int:
            return int.from_bytes(data[i:i + 2], "big")

        packet_code, baud_n = word(12), word(14)
        if packet_code >= len(PACKET_SIZES):
            raise SensorError(f"the sensor reports an unknown packet size code {packet_code}")
        return cls(
            status=word(0),
            system_id=word(2),
            library_size=word(4),
            security_level=word(6),
            address=int.from_bytes(data[8:12], "big"),
            packet_size=PACKET_SIZES[packet_code],
            baudrate=BAUD_UNIT * baud_n,
        )


@dataclass(frozen=True)
class ProductInfo:
    """What an R503-class module says it is (ReadProdInfo); image size in pixels."""

    model: str
    batch: str
    serial: str
    hardware_version: tuple[int, int]
    sensor_type: str
    width: int
    height: int
    template_size: int
    database_size: int

    SIZE = 46  # payload bytes after the confirmation code

    @classmethod
    def from_payload(cls, data: bytes) -> ProductInfo:
        """Parse the 46 bytes that follow the confirmation code."""
        if len(data) < cls.SIZE:
            raise SensorError(f"product information cut short: {len(data)} of {cls.SIZE} bytes")

        def text(a: int, b: int) -> str:
            return data[a:b].split(b"\0", 1)[0].decode("ascii", "replace").strip()

        def word(i: int) -> int:
            return int.from_bytes(data[i:i + 2], "big")

        width, height = word(38), word(40)
        if width < 2 or height < 2:
            raise SensorError(f"the sensor reports an image of {width} x {height} pixels")
        return cls(
            model=text(0, 16),
            batch=text(16, 20),
            serial=text(20, 28),
            hardware_version=(data[28], data[29]),
            sensor_type=text(30, 38),
            width=width,
            height=height,
            template_size=word(42),
            database_size=word(44),
        )
