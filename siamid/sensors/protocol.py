"""The packet format of R503-class UART fingerprint modules (R30x, AS608, ZhianTec, GROW).

Every exchange is a packet::

    EF 01 | address (4) | identifier (1) | length (2) | payload (length - 2) | checksum (2)

all big-endian. ``length`` counts the payload and the checksum; the checksum is the sum of the
identifier, the two length bytes and the payload bytes, modulo 65536. The host sends command
packets (identifier 0x01) whose first payload byte is the instruction code; the module answers
with an acknowledge packet (0x07) whose first payload byte is a confirmation code, and streams
bulk data (an image) as data packets (0x02) closed by an end-of-data packet (0x08).

This module owns the bytes only: encoding, decoding with the checksum verified, the instruction
and confirmation codes, and the human sentence for each confirmation code. The driver
(``driver.py``) and the simulator (``simulator.py``) both build on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from ..errors import SensorError

START_CODE = 0xEF01
START = START_CODE.to_bytes(2, "big")
DEFAULT_ADDRESS = 0xFFFFFFFF
# Start code, address, identifier and length: what must be read before the length is known.
HEADER_SIZE = 9
# The largest payload any answer carries: a 256-byte data packet.
MAX_PAYLOAD = 256
# The byte a module sends once it is ready, after power-on or a soft reset.
READY_BYTE = 0x55


class PacketType(IntEnum):
    """The packet identifier (the byte after the address)."""

    COMMAND = 0x01
    DATA = 0x02
    ACK = 0x07
    END = 0x08


class Instruction(IntEnum):
    """Instruction codes: the first payload byte of a command packet."""

    GEN_IMG = 0x01  # capture a finger image into the image buffer
    UP_IMAGE = 0x0A  # upload the image buffer to the host
    SET_SYS_PARA = 0x0E  # write one system register
    READ_SYS_PARA = 0x0F  # read the system parameters
    VFY_PWD = 0x13  # verify the 4-byte password
    AURA_LED_CONFIG = 0x35  # ring LED (R503)
    READ_PROD_INFO = 0x3C  # model, serial, image size (R503)
    SOFT_RESET = 0x3D  # restart; the module sends READY_BYTE when it is back
    HANDSHAKE = 0x40  # "are you there"; confirmation 0x00 when the module works


class Register(IntEnum):
    """System registers that SetSysPara writes."""

    BAUD = 4  # N: baud rate = 9600 * N, N in 1..12
    SECURITY = 5  # matching threshold level 1..5
    PACKET_SIZE = 6  # 0: 32, 1: 64, 2: 128, 3: 256 bytes


PACKET_SIZES = (32, 64, 128, 256)
BAUD_UNIT = 9600
BAUD_MULTIPLES = range(1, 13)

#: The confirmation code of a capture that found no finger on the glass.
NO_FINGER = 0x02

# Confirmation codes, as the R503 / R30x user manuals list them.
CONFIRMATION: dict[int, str] = {
    0x00: "command executed",
    0x01: "the module reports an error receiving the packet",
    NO_FINGER: "no finger on the sensor",
    0x03: "the module failed to capture the finger image",
    0x06: "the image is too messy to extract features",
    0x07: "the image has too few features (finger too small or too dry)",
    0x08: "the fingers do not match",
    0x09: "no matching finger in the library",
    0x0A: "the feature files could not be combined",
    0x0B: "the page number is outside the finger library",
    0x0C: "the template could not be read, or is invalid",
    0x0D: "the template upload failed",
    0x0E: "the module cannot receive the following data packets",
    0x0F: "the image upload failed (no image in the buffer?)",
    0x10: "the template could not be deleted",
    0x11: "the finger library could not be cleared",
    0x13: "wrong password",
    0x15: "no valid image in the buffer",
    0x18: "error writing the module's flash",
    0x19: "undefined error",
    0x1A: "invalid register number",
    0x1B: "invalid register value",
    0x1C: "wrong notepad page number",
    0x1D: "the module failed to operate its communication port",
    0x1F: "the finger library is full",
    0x20: "wrong address code",
    0x21: "the password must be verified first",
    0x22: "the template is empty",
    0x24: "the finger library is empty",
    0x26: "the module timed out",
    0x27: "the finger is already enrolled",
    0x29: "sensor hardware error",
    0xFC: "unsupported command",
    0xFD: "hardware error",
    0xFE: "command execution failure",
}


def describe(code: int) -> str:
    """The human sentence for confirmation ``code`` (unknown codes say so, with the number)."""
    return CONFIRMATION.get(code, f"unknown confirmation code 0x{code:02X}")


@dataclass(frozen=True)
class Packet:
    """One packet: its identifier (``PacketType``), payload bytes and module address."""

    kind: int
    payload: bytes = b""
    address: int = DEFAULT_ADDRESS

    def __post_init__(self) -> None:
        if not 0 <= self.kind <= 0xFF:
            raise SensorError(f"packet identifier must be one byte, got {self.kind}")
        if not 0 <= self.address <= 0xFFFFFFFF:
            raise SensorError(f"module address must be 4 bytes, got {self.address}")
        if len(self.payload) > 0xFFFF - 2:
            raise SensorError(f"packet payload of {len(self.payload)} bytes is too long")

    @property
    def code(self) -> int | None:
        """The first payload byte: the confirmation code of an ACK, the instruction of a command."""
        return self.payload[0] if self.payload else None


def checksum(kind: int, payload: bytes) -> int:
    """Sum of the identifier, both length bytes and the payload, modulo 65536."""
    length = len(payload) + 2
    return (kind + (length >> 8) + (length & 0xFF) + sum(payload)) & 0xFFFF


def encode(packet: Packet) -> bytes:
    """The bytes on the wire for ``packet``."""
    length = len(packet.payload) + 2
    return b"".join((
        START,
        packet.address.to_bytes(4, "big"),
        bytes((packet.kind,)),
        length.to_bytes(2, "big"),
        bytes(packet.payload),
        checksum(packet.kind, packet.payload).to_bytes(2, "big"),
    ))


def command(instruction: int, params: bytes = b"", address: int = DEFAULT_ADDRESS) -> bytes:
    """The bytes of a command packet: ``instruction`` followed by ``params``."""
    return encode(Packet(PacketType.COMMAND, bytes((instruction,)) + bytes(params), address))


def parse_header(header: bytes) -> tuple[int, int, int]:
    """(address, identifier, length) of the first HEADER_SIZE bytes of a frame.

    Raises SensorError for a wrong start code or a length that no packet can have.
    """
    if len(header) < HEADER_SIZE:
        raise SensorError(f"packet header cut short: {len(header)} of {HEADER_SIZE} bytes")
    if header[:2] != START:
        raise SensorError(f"packet does not start with EF 01 but with {header[:2].hex(' ').upper()}")
    address = int.from_bytes(header[2:6], "big")
    length = int.from_bytes(header[7:9], "big")
    if length < 2:
        raise SensorError(f"packet length field {length} is below the 2 checksum bytes")
    return address, header[6], length


def decode(frame: bytes, address: int | None = None) -> Packet:
    """The packet in ``frame`` (exactly one whole frame), its checksum verified.

    Raises SensorError for a bad start code, a frame whose size disagrees with its length
    field, a checksum mismatch, or (when ``address`` is given) another module's address: the
    checksum does not cover the address, so only this comparison catches a corrupted one.
    """
    frame = bytes(frame)
    sender, kind, length = parse_header(frame)
    if len(frame) != HEADER_SIZE + length:
        raise SensorError(
            f"packet of {len(frame)} bytes, but its length field says {HEADER_SIZE + length}")
    payload = frame[HEADER_SIZE:-2]
    received = int.from_bytes(frame[-2:], "big")
    expected = checksum(kind, payload)
    if received != expected:
        raise SensorError(
            f"corrupted packet: checksum {received:04X}, computed {expected:04X} "
            "(electrical noise, a wrong baud rate, or a loose wire)")
    if address is not None and sender != address:
        raise SensorError(f"packet from module address 0x{sender:08X}, expected 0x{address:08X}")
    return Packet(kind, payload, sender)


def pack_nibbles(nibbles: np.ndarray) -> bytes:
    """4-bit pixel values (0..15), row by row -> bytes of two pixels each, high nibble first."""
    flat = np.asarray(nibbles).ravel()
    if flat.size % 2:
        raise SensorError(f"an image of {flat.size} pixels cannot be packed two per byte")
    if flat.size and (flat.min() < 0 or flat.max() > 15):
        raise SensorError("pixel values must be 4-bit (0..15) to pack")
    flat = flat.astype(np.uint8)
    return ((flat[0::2] << 4) | flat[1::2]).tobytes()


def unpack_pixels(data: bytes, width: int, height: int) -> np.ndarray:
    """Uploaded image bytes -> uint8 (height, width) with values ``k * 17`` (k = 0..15).

    These are the values ``siamid.sensors.quantise(gray, 16)`` gives, so an uploaded image and
    the R503 view of a dataset image live on the same 16 levels.
    """
    if len(data) * 2 != width * height:
        raise SensorError(
            f"{len(data)} image bytes hold {len(data) * 2} pixels, not {width} x {height}")
    packed = np.frombuffer(bytes(data), dtype=np.uint8)
    pixels = np.empty(packed.size * 2, dtype=np.uint8)
    pixels[0::2] = packed >> 4
    pixels[1::2] = packed & 0x0F
    return (pixels * 17).reshape(height, width)
