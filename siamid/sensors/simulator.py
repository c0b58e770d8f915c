"""An R503-class fingerprint module in software, speaking the module's own UART protocol.

``SensorModel`` is the module: bytes from the host go in (``receive``), timed answers come out
(``Send`` and ``Hangup`` events). Two transports carry it:

- the pyserial URL ``r503sim://?option=value&...`` (``protocol_r503sim.py``), in process, for
  the driver and the tests: ``serial.serial_for_url("r503sim://?width=256&height=288")``;
- a pseudo-terminal (``PtySimulator``), a real tty path that any program opens as it would open
  ``/dev/ttyUSB0``, for end-to-end runs with third-party clients.

It serves finger images from a folder of PNGs, from a list of arrays, or from the synthetic
generator (``siamid.synth``); sizes the image, packet size, baud rate, password and address as
configured; and switches on faults (``Faults``): corrupted checksums, truncated uploads, no
finger, slow answers, a rejected password, a disconnect in the middle of an upload.

URL options (all optional; every value is a plain number, word or path, never code):

=============== ===============================================================================
``images``      ``synth`` (default) or a folder of PNGs, served in sorted order, round robin
``seed``        seed of the synthetic finger (default 0); ``impressions``: how many (default 4)
``index``       which finger of that seed's synthetic set (default 0)
``lift``        GenImg polls answered "no finger" after each capture (default 0: the finger never
                leaves the glass; 1: it lifts, as between the touches of a person)
``width``       image width in pixels (default 192); ``height`` (default 192)
``packet``      data packet size in bytes: 32, 64, 128 (default) or 256
``baud``        the module's baud rate (default 57600); a port at another rate is not heard
``password``    the module's password (default 0: none needed), decimal or 0x hex
``address``     the module's address (default 0xFFFFFFFF)
``info``        1 (default): answers ReadProdInfo like an R503; 0: like an older module
``wire``        1: deliver bytes at the pace of the baud rate (10 bits a byte); 0 (default): at once
``faults``      comma-separated ``name`` or ``name:value`` (see ``Faults.parse``)
=============== ===============================================================================
"""

from __future__ import annotations

import os
import select
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Self
from urllib.parse import parse_qsl, urlsplit

import numpy as np

from ..errors import SensorError
from .protocol import (
    BAUD_MULTIPLES,
    BAUD_UNIT,
    DEFAULT_ADDRESS,
    HEADER_SIZE,
    MAX_PAYLOAD,
    PACKET_SIZES,
    READY_BYTE,
    START,
    Instruction,
    Packet,
    PacketType,
    Register,
    checksum,
    encode,
    pack_nibbles,
)

URL_SCHEME = "r503sim"
ALWAYS = -1  # a fault count that never runs out
# Seconds between the acknowledge of a soft reset and the ready byte.
RESET_TIME = 0.02


@dataclass
class Faults:
    """Faults the simulator injects; each count goes down as the fault fires (ALWAYS: never).

    - ``checksum``: corrupt the checksum of the next N packets sent;
    - ``truncate``: stop the next N image uploads halfway, with no end packet;
    - ``no_finger``: answer "no finger" (0x02) to the next N captures;
    - ``slow``: seconds of delay before every answer;
    - ``wrong_password``: reject every password (0x13);
    - ``disconnect``: drop the line halfway through the next N image uploads.
    """

    checksum: int = 0
    truncate: int = 0
    no_finger: int = 0
    slow: float = 0.0
    wrong_password: bool = False
    disconnect: int = 0

    NAMES = ("checksum", "truncate", "nofinger", "slow", "password", "disconnect")

    @classmethod
    def parse(cls, spec: str) -> Faults:
        """``"checksum,nofinger:3,slow:0.2,password,disconnect:always"`` -> Faults.

        A count fault without a value fires once; ``always`` never runs out. ``password`` takes
        no value; ``slow`` takes seconds (default 0.5). Unknown names are a SensorError.
        """
        faults = cls()
        for item in filter(None, (part.strip() for part in spec.split(","))):
            name, _, value = item.partition(":")
            name = name.strip().lower()
            value = value.strip().lower()
            if name == "password":
                if value:
                    raise SensorError(f"simulator fault 'password' takes no value, got {value!r}")
                faults.wrong_password = True
            elif name == "slow":
                faults.slow = _number("slow", value or "0.5", float, 0.0, 60.0)
            elif name in ("checksum", "truncate", "nofinger", "disconnect"):
                count = ALWAYS if value == "always" else _number(name, value or "1", int, 0, 10**6)
                setattr(faults, "no_finger" if name == "nofinger" else name, count)
            else:
                raise SensorError(
                    f"unknown simulator fault {name!r}; use {', '.join(cls.NAMES)}")
        return faults


@dataclass(frozen=True)
class SimulatorConfig:
    """What the simulated module is: image size, packet size, baud rate, credentials, images."""

    width: int = 192
    height: int = 192
    packet_size: int = 128
    baud: int = 57600
    password: int = 0
    address: int = DEFAULT_ADDRESS
    images: Path | None = None  # a folder of PNGs; None: the synthetic generator
    seed: int = 0
    index: int = 0
    impressions: int = 4
    lift: int = 0
    product_info: bool = True
    wire: bool = False
    library_size: int = 200
    security_level: int = 3
    faults: Faults = field(default_factory=Faults, compare=False)

    def __post_init__(self) -> None:
        for name in ("width", "height"):
            value = getattr(self, name)
            if not 2 <= value <= 4096:
                raise SensorError(f"simulator {name} must be 2 to 4096 pixels, got {value}")
        if self.width * self.height % 2:
            raise SensorError("simulator image must have an even number of pixels (two a byte)")
        if self.packet_size not in PACKET_SIZES:
            raise SensorError(
                f"simulator packet size must be one of {PACKET_SIZES}, got {self.packet_size}")
        if self.baud % BAUD_UNIT or self.baud // BAUD_UNIT not in BAUD_MULTIPLES:
            raise SensorError(f"simulator baud must be 9600 * N, N in 1..12, got {self.baud}")
        for name in ("password", "address"):
            if not 0 <= getattr(self, name) <= 0xFFFFFFFF:
                raise SensorError(f"simulator {name} must fit 4 bytes, got {getattr(self, name)}")
        if self.impressions < 1:
            raise SensorError(f"simulator impressions must be at least 1, got {self.impressions}")
        if self.index < 0 or self.lift < 0:
            raise SensorError("simulator index and lift must be 0 or more, got "
                              f"{self.index} and {self.lift}")

    @classmethod
    def from_url(cls, url: str) -> SimulatorConfig:
        """The configuration an ``r503sim://?...`` URL asks for (see the module docstring)."""
        parts = urlsplit(url)
        if parts.scheme.lower() != URL_SCHEME:
            raise SensorError(f"not a simulator URL (expected {URL_SCHEME}://...): {url!r}")
        options: dict[str, object] = {}
        seen: set[str] = set()
        for key, value in parse_qsl(parts.query, keep_blank_values=True):
            key = key.lower()
            if key in seen:
                raise SensorError(f"simulator option {key!r} given twice in {url!r}")
            seen.add(key)
            if key in _INT_OPTIONS:
                name, low, high = _INT_OPTIONS[key]
                options[name] = _number(key, value, int, low, high)
            elif key == "images":
                options["images"] = None if value in ("", "synth") else Path(value)
            elif key == "info":
                options["product_info"] = _flag(key, value)
            elif key == "wire":
                options["wire"] = _flag(key, value)
            elif key == "faults":
                options["faults"] = Faults.parse(value)
            else:
                known = ", ".join([*_INT_OPTIONS, "images", "info", "wire", "faults"])
                raise SensorError(f"unknown simulator option {key!r} in {url!r}; use {known}")
        return cls(**options)  # type: ignore[arg-type]


_INT_OPTIONS = {  # URL option -> (field, lowest, highest)
    "width": ("width", 2, 4096),
    "height": ("height", 2, 4096),
    "packet": ("packet_size", 32, 256),
    "baud": ("baud", 9600, 115200),
    "password": ("password", 0, 0xFFFFFFFF),
    "address": ("address", 0, 0xFFFFFFFF),
    "seed": ("seed", 0, 2**63),
    "impressions": ("impressions", 1, 1000),
    "index": ("index", 0, 10**6),
    "lift": ("lift", 0, 1000),
}


def _number(name: str, text: str, kind: type, low: float, high: float) -> int | float:
    """``text`` as an int (decimal or 0x hex) or float within [low, high]; SensorError if not."""
    try:
        value = int(text, 0) if kind is int else float(text)
    except ValueError:
        raise SensorError(f"simulator {name} must be a number, got {text!r}") from None
    if not low <= value <= high:
        raise SensorError(f"simulator {name} must be {low} to {high}, got {text!r}")
    return value


def _flag(name: str, text: str) -> bool:
    """``1/yes/true/on`` or ``0/no/false/off``; SensorError otherwise."""
    if text.lower() in ("1", "yes", "true", "on"):
        return True
    if text.lower() in ("0", "no", "false", "off"):
        return False
    raise SensorError(f"simulator {name} must be 1 or 0, got {text!r}")


# ---------------------------------------------------------------------------------------------
# Images


def fit_image(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Any gray image -> the (height, width) 4-bit values (0..15) a module would upload.

    Centre-cropped or padded with white (the bare glass), then rounded to 16 levels exactly as
    ``siamid.sensors.quantise`` does, so ``nibbles * 17`` equals ``quantise(image / 255, 16)``.
    """
    pixels = np.asarray(image)
    if pixels.ndim == 3:
        pixels = pixels.mean(axis=2)
    if pixels.ndim != 2 or pixels.size == 0:
        raise SensorError(f"simulator images must be 2-D gray, got shape {pixels.shape}")
    if pixels.dtype != np.uint8:
        pixels = np.clip(np.round(pixels), 0, 255).astype(np.uint8)
    canvas = np.full((height, width), 255, dtype=np.uint8)
    h, w = min(height, pixels.shape[0]), min(width, pixels.shape[1])
    sy, sx = (pixels.shape[0] - h) // 2, (pixels.shape[1] - w) // 2
    dy, dx = (height - h) // 2, (width - w) // 2
    canvas[dy:dy + h, dx:dx + w] = pixels[sy:sy + h, sx:sx + w]
    return ((canvas.astype(np.uint16) * 15 + 127) // 255).astype(np.uint8)


class ImageSource:
    """The finger images a simulator serves, one per capture, round robin.

    From a list of arrays, a folder of PNGs (sorted by path), or the synthetic generator
    (one finger, ``impressions`` impressions, rendered as an R503 would for 192 x 192 and
    as a 500 dpi optical sensor for other sizes, then fitted).
    """

    def __init__(self, config: SimulatorConfig, images: Sequence[np.ndarray] | None = None) -> None:
        self.config = config
        self._arrays = list(images) if images is not None else None
        self._files: list[Path] | None = None
        self._synth: list[np.ndarray] | None = None
        if self._arrays is not None and not self._arrays:
            raise SensorError("the simulator needs at least one image")
        if self._arrays is None and config.images is not None:
            folder = config.images
            if not folder.is_dir():
                raise SensorError(f"simulator image folder not found: {folder}")
            self._files = sorted(p for p in folder.rglob("*") if p.suffix.lower() == ".png")
            if not self._files:
                raise SensorError(f"no PNG images in the simulator folder {folder}")

    def image(self, index: int) -> np.ndarray:
        """The 4-bit (height, width) image of capture number ``index``."""
        c = self.config
        if self._arrays is not None:
            raw = self._arrays[index % len(self._arrays)]
        elif self._files is not None:
            from PIL import Image

            path = self._files[index % len(self._files)]
            try:
                with Image.open(path) as im:
                    raw = np.asarray(im.convert("L"))
            except OSError as e:
                raise SensorError(f"simulator cannot read {path}: {e}") from None
        else:
            if self._synth is None:
                from ..synth import generate_finger

                sensor = "r503" if (c.width, c.height) == (192, 192) else "500dpi"
                self._synth = generate_finger(c.seed, c.impressions, sensor=sensor,
                                              index=c.index)[1]
            raw = self._synth[index % len(self._synth)]
        return fit_image(raw, c.width, c.height)


# ---------------------------------------------------------------------------------------------
# The module


@dataclass(frozen=True)
class Send:
    """Bytes the module sends ``delay`` seconds after its previous event, at ``baud``."""

    data: bytes
    delay: float = 0.0
    baud: int = 57600


@dataclass(frozen=True)
class Hangup:
    """The line goes dead ``delay`` seconds after the previous event (a pulled cable)."""

    delay: float = 0.0


Event = Send | Hangup


class SensorModel:
    """The module's behaviour: host bytes in, timed events out. Not thread-safe; one per link.

    ``served`` lists every image captured (uint8 values k * 17), so tests can compare what a
    client received with what was served; ``bytes_received`` / ``bytes_sent`` count the wire.
    """

    def __init__(self, config: SimulatorConfig | None = None,
                 images: Sequence[np.ndarray] | None = None) -> None:
        self.config = config or SimulatorConfig()
        self.faults = replace(self.config.faults)
        self.source = ImageSource(self.config, images)
        self.baud = self.config.baud
        self.packet_size = self.config.packet_size
        self.security_level = self.config.security_level
        self.served: list[np.ndarray] = []
        self.led: tuple[int, int, int, int] | None = None  # control, speed, colour, cycles
        self.led_history: list[tuple[int, int, int, int]] = []  # every LED setting, in order
        self.bytes_received = 0
        self.bytes_sent = 0
        self.commands: list[int] = []  # instruction codes, in the order received
        self._rx = bytearray()
        self._image: np.ndarray | None = None
        self._verified = False
        self._away = 0  # GenImg polls left before the lifted finger comes back

    # -- life cycle ------------------------------------------------------------------------

    def power_on(self) -> list[Event]:
        """Start (or restart) the module: buffers cleared, then the ready byte."""
        self._rx.clear()
        self._image = None
        self._verified = False
        return [self._raw(bytes((READY_BYTE,)))]

    def receive(self, data: bytes) -> list[Event]:
        """Bytes from the host -> the module's answers to every whole command among them.

        Bytes before a start code are skipped; a command with a bad checksum is answered with
        confirmation 0x01, as the module does; packets for another address are ignored.
        """
        self.bytes_received += len(data)
        self._rx += data
        events: list[Event] = []
        while True:
            start = self._rx.find(START)
            if start < 0:
                del self._rx[:-1 if self._rx.endswith(START[:1]) else len(self._rx)]
                return events
            del self._rx[:start]
            if len(self._rx) < HEADER_SIZE:
                return events
            address = int.from_bytes(self._rx[2:6], "big")
            kind, length = self._rx[6], int.from_bytes(self._rx[7:9], "big")
            if length < 2 or length > MAX_PAYLOAD + 2:
                del self._rx[:2]  # not a packet after all: look for the next start code
                continue
            if len(self._rx) < HEADER_SIZE + length:
                return events
            frame = bytes(self._rx[:HEADER_SIZE + length])
            del self._rx[:HEADER_SIZE + length]
            if address != self.config.address or kind != PacketType.COMMAND:
                continue
            payload = frame[HEADER_SIZE:-2]
            if int.from_bytes(frame[-2:], "big") != checksum(kind, payload) or not payload:
                events.append(self._ack(0x01))
                continue
            self.commands.append(payload[0])
            events.extend(self._execute(payload[0], payload[1:]))

    # -- answers ---------------------------------------------------------------------------

    def _execute(self, instruction: int, params: bytes) -> list[Event]:
        c = self.config
        if c.password and not self._verified and instruction not in (
                Instruction.VFY_PWD, Instruction.HANDSHAKE):
            return self._answer(self._ack(0x21))
        if instruction == Instruction.VFY_PWD:
            if len(params) != 4:
                return self._answer(self._ack(0x01))
            ok = int.from_bytes(params, "big") == c.password and not self.faults.wrong_password
            self._verified = ok
            return self._answer(self._ack(0x00 if ok else 0x13))
        if instruction == Instruction.HANDSHAKE:
            return self._answer(self._ack(0x00))
        if instruction == Instruction.READ_SYS_PARA:
            return self._answer(self._ack(0x00, self._system_parameters()))
        if instruction == Instruction.READ_PROD_INFO and c.product_info:
            return self._answer(self._ack(0x00, self._product_info()))
        if instruction == Instruction.SET_SYS_PARA:
            return self._answer(*self._set_register(params))
        if instruction == Instruction.GEN_IMG:
            if _fire(self.faults, "no_finger"):
                return self._answer(self._ack(0x02))
            if self._away:
                self._away -= 1
                return self._answer(self._ack(0x02))
            self._image = self.source.image(len(self.served))
            self.served.append(self._image * np.uint8(17))
            self._away = c.lift
            return self._answer(self._ack(0x00))
        if instruction == Instruction.UP_IMAGE:
            return self._answer(*self._upload())
        if instruction == Instruction.AURA_LED_CONFIG:
            if len(params) != 4 or not 1 <= params[0] <= 6 or not 1 <= params[2] <= 7:
                return self._answer(self._ack(0x01))
            self.led = (params[0], params[1], params[2], params[3])
            self.led_history.append(self.led)
            return self._answer(self._ack(0x00))
        if instruction == Instruction.SOFT_RESET:
            ack = self._ack(0x00)
            ready = self.power_on()[0]
            return self._answer(ack, replace(ready, delay=RESET_TIME))
        return self._answer(self._ack(0xFC))

    def _answer(self, *events: Event) -> list[Event]:
        """Events of one answer, the first delayed by the ``slow`` fault."""
        out = list(events)
        if out and self.faults.slow:
            out[0] = replace(out[0], delay=out[0].delay + self.faults.slow)
        return out

    def _packet(self, kind: int, payload: bytes) -> Send:
        frame = encode(Packet(kind, payload, self.config.address))
        if _fire(self.faults, "checksum"):
            frame = frame[:-1] + bytes((frame[-1] ^ 0xFF,))
        return self._raw(frame)

    def _raw(self, data: bytes) -> Send:
        self.bytes_sent += len(data)
        return Send(data, 0.0, self.baud)

    def _ack(self, code: int, data: bytes = b"") -> Send:
        return self._packet(PacketType.ACK, bytes((code,)) + data)

    def _system_parameters(self) -> bytes:
        c = self.config
        status = (0x04 if self._verified else 0) | (0x08 if self._image is not None else 0)
        return b"".join((
            status.to_bytes(2, "big"),
            (0x0000).to_bytes(2, "big"),  # system identifier code
            c.library_size.to_bytes(2, "big"),
            self.security_level.to_bytes(2, "big"),
            c.address.to_bytes(4, "big"),
            PACKET_SIZES.index(self.packet_size).to_bytes(2, "big"),
            (self.baud // BAUD_UNIT).to_bytes(2, "big"),
        ))

    def _product_info(self) -> bytes:
        c = self.config
        return b"".join((
            b"R503SIM".ljust(16, b"\0"),  # module model
            b"0001",  # batch number
            b"00000001",  # serial number
            bytes((1, 0)),  # hardware version: main, sub
            b"SIM".ljust(8, b"\0"),  # sensor type
            c.width.to_bytes(2, "big"),
            c.height.to_bytes(2, "big"),
            (1536).to_bytes(2, "big"),  # template size
            c.library_size.to_bytes(2, "big"),  # fingerprint database size
        ))

    def _set_register(self, params: bytes) -> list[Send]:
        if len(params) != 2:
            return [self._ack(0x01)]
        register, value = params
        if register == Register.BAUD:
            if value not in BAUD_MULTIPLES:
                return [self._ack(0x1B)]
            ack = self._ack(0x00)  # sent at the old rate; the new one applies after it
            self.baud = value * BAUD_UNIT
            return [ack]
        if register == Register.SECURITY:
            if not 1 <= value <= 5:
                return [self._ack(0x1B)]
            self.security_level = value
            return [self._ack(0x00)]
        if register == Register.PACKET_SIZE:
            if value >= len(PACKET_SIZES):
                return [self._ack(0x1B)]
            self.packet_size = PACKET_SIZES[value]
            return [self._ack(0x00)]
        return [self._ack(0x1A)]

    def _upload(self) -> list[Event]:
        if self._image is None:
            return [self._ack(0x0F)]
        data = pack_nibbles(self._image)
        chunks = [data[i:i + self.packet_size] for i in range(0, len(data), self.packet_size)]
        events: list[Event] = [self._ack(0x00)]
        if _fire(self.faults, "truncate"):
            return events + [self._packet(PacketType.DATA, ch) for ch in chunks[:len(chunks) // 2]]
        if _fire(self.faults, "disconnect"):
            sent = [self._packet(PacketType.DATA, ch) for ch in chunks[:len(chunks) // 2]]
            return events + sent + [Hangup()]
        for i, chunk in enumerate(chunks):
            last = i == len(chunks) - 1
            events.append(self._packet(PacketType.END if last else PacketType.DATA, chunk))
        return events


def _fire(faults: Faults, name: str) -> bool:
    """Whether count fault ``name`` fires now; uses one count up unless it is ALWAYS."""
    count = getattr(faults, name)
    if count == 0:
        return False
    if count > 0:
        setattr(faults, name, count - 1)
    return True


# ---------------------------------------------------------------------------------------------
# The pseudo-terminal transport


def _termios_bauds() -> dict[int, int]:
    """termios speed constants -> baud (imported here: termios exists on POSIX only)."""
    import termios

    return {getattr(termios, f"B{b}"): b for b in (BAUD_UNIT * n for n in BAUD_MULTIPLES)
            if hasattr(termios, f"B{b}")}


class PtySimulator:
    """The simulated module behind a pseudo-terminal: ``path`` opens like ``/dev/ttyUSB0``.

    A background thread answers whatever a client writes. ``wire`` (from the config) paces the
    answers at the baud rate; a client whose port is set to another baud rate is not heard
    (the module would see noise). A ``disconnect`` fault closes the terminal for good, as a
    pulled USB adapter removes its device: ``hung_up`` then says so and clients get I/O errors.

    Use as a context manager, or call ``start()`` and ``stop()``.
    """

    def __init__(self, config: SimulatorConfig | None = None,
                 images: Sequence[np.ndarray] | None = None) -> None:
        self.model = SensorModel(config, images)
        self.hung_up = False
        self._master = -1
        self._slave = -1
        self._path = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._bauds: dict[int, int] = {}

    @property
    def path(self) -> str:
        """The terminal's path, for example ``/dev/pts/7``."""
        if not self._path:
            raise SensorError("the pty simulator is not started; call start() first")
        return self._path

    def start(self) -> str:
        """Open the pseudo-terminal and start answering; returns its path."""
        if self._thread is not None:
            return self._path
        import tty  # POSIX only, like pseudo-terminals themselves

        self._bauds = _termios_bauds()
        self._master, self._slave = os.openpty()
        # Raw mode: no echo and no line editing, every byte passes as it is, as on a UART.
        tty.setraw(self._slave)
        os.set_blocking(self._master, False)
        self._path = os.ttyname(self._slave)
        # The ready byte goes out before any client can open the terminal, as a module powered
        # before the host opens its port: pyserial's open() flushes it, so no client is
        # surprised by a stray 0x55 in front of its first answer.
        self._emit(self.model.power_on())
        self._thread = threading.Thread(target=self._run, name="r503-pty-simulator", daemon=True)
        self._thread.start()
        return self._path

    def stop(self) -> None:
        """Stop answering and close the terminal."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._close()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _close(self) -> None:
        with self._lock:
            for fd in (self._master, self._slave):
                if fd >= 0:
                    try:
                        os.close(fd)
                    except OSError:
                        pass
            self._master = self._slave = -1

    def _client_baud(self) -> int | None:
        """The baud rate the client set on its end of the terminal, if one of the module's."""
        import termios

        try:
            return self._bauds.get(termios.tcgetattr(self._slave)[5])
        except (termios.error, OSError):
            return None

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                ready, _, _ = select.select([self._master], [], [], 0.05)
                if not ready:
                    continue
                try:
                    data = os.read(self._master, 4096)
                except BlockingIOError:
                    continue
                baud = self._client_baud()
                if baud is not None and baud != self.model.baud:
                    continue  # noise to the module at its own rate
                if not self._emit(self.model.receive(data)):
                    return
        except OSError:
            return  # the terminal was closed under us (stop() raced a read)

    def _emit(self, events: list[Event]) -> bool:
        """Carry out ``events``; False once the line is hung up or the simulator stops."""
        for event in events:
            if event.delay and self._stop.wait(event.delay):
                return False
            if isinstance(event, Hangup):
                self.hung_up = True
                self._close()
                return False
            if not self._write(event.data, event.baud):
                return False
        return True

    def _write(self, data: bytes, baud: int) -> bool:
        step = max(1, baud // 10 // 100) if self.model.config.wire else len(data)
        for i in range(0, len(data), step):
            chunk = memoryview(data)[i:i + step]
            while chunk:
                if self._stop.is_set():
                    return False
                _, writable, _ = select.select([], [self._master], [], 0.05)
                if writable:
                    written = os.write(self._master, chunk)
                    chunk = chunk[written:]
            if self.model.config.wire:
                time.sleep(min(step, len(data) - i) * 10 / baud)
        return True
