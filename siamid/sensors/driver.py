"""The driver of R503-class UART fingerprint modules (R503, R30x, AS608, ZhianTec, GROW).

    from siamid.sensors import R503

    with R503("/dev/ttyUSB0") as sensor:          # or "r503sim://" for the simulator
        sensor.set_led("breathing", "blue")
        image = sensor.read_image(timeout=10)      # uint8 (height, width), values k * 17

The port is anything pyserial opens: a device path, ``COM3``, or a pyserial URL. Every failure
is a ``SensorError`` whose message says what happened and what to do; ``code`` carries the
module's confirmation code where the module reported the failure. After a failure (no answer,
a corrupted packet, a truncated upload, a pulled cable) the next command first brings the link
back: it reopens a lost port, flushes stale bytes and resynchronises on a ReadSysPara answer,
so one bad exchange never poisons the ones after it.

pyserial is imported only when a port is opened: ``pip install 'siamid[sensor]'`` brings it.
"""

from __future__ import annotations

import time
from types import ModuleType
from typing import Any, Self

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
    PacketType,
    Register,
    command,
    decode,
    describe,
    unpack_pixels,
)
from .records import (
    KNOWN_IMAGE_SIZES,
    LedColour,
    LedMode,
    ProductInfo,
    SystemParameters,
)

DEFAULT_BAUD = 57600
# Rates tried, in order, when the baud rate is not given: the factory default, the fastest,
# then the others from fast to slow.
PROBE_BAUDS = (DEFAULT_BAUD, 115200, *(BAUD_UNIT * n for n in reversed(BAUD_MULTIPLES)
                                       if BAUD_UNIT * n not in (DEFAULT_BAUD, 115200)))
# How long one port read may block: short, so that deadlines are kept to within this.
_POLL = 0.02


def pyserial() -> ModuleType:
    """The ``serial`` module, or a SensorError saying how to install it."""
    try:
        import serial
        import serial.tools.list_ports
    except ImportError:
        raise SensorError(
            "the sensor driver needs pyserial: pip install 'siamid[sensor]'") from None
    from .protocol_r503sim import register

    register()
    return serial


def available_ports() -> str:
    """A sentence listing the serial ports on this machine, for error messages."""
    serial = pyserial()
    ports = sorted(serial.tools.list_ports.comports(), key=lambda p: p.device)
    if not ports:
        return ("No serial port found on this machine: is the USB-serial adapter plugged in, "
                "and may this user open it (the dialout group on Linux)?")
    listed = ", ".join(
        p.device + (f" ({p.description})" if p.description and p.description != "n/a" else "")
        for p in ports)
    return f"Serial ports on this machine: {listed}."


class R503:
    """One R503-class module on a serial port. Not thread-safe: one caller at a time.

    ``port``: a device path, a pyserial URL (``r503sim://...`` is the simulator), or an already
    open pyserial port. ``baudrate``: the module's rate (57600 from the factory); None tries
    each rate the module can have. ``password`` and ``address``: the module's (factory: 0 and
    0xFFFFFFFF). ``timeout``: seconds to wait for each answer. ``image_size``: (width, height)
    for a module that does not report it (ReadProdInfo is R503 and newer); None asks the module
    and otherwise goes by the upload's size.
    """

    def __init__(self, port: str | Any, *, baudrate: int | None = DEFAULT_BAUD,
                 password: int = 0, address: int = DEFAULT_ADDRESS, timeout: float = 1.0,
                 image_size: tuple[int, int] | None = None) -> None:
        if baudrate is not None and baudrate not in PROBE_BAUDS:
            raise SensorError(f"baud rate must be 9600 * N with N in 1..12, got {baudrate}")
        for name, value in (("password", password), ("address", address)):
            if not isinstance(value, int) or not 0 <= value <= 0xFFFFFFFF:
                raise SensorError(f"sensor {name} must be a 4-byte number, got {value!r}")
        if not timeout > 0:
            raise SensorError(f"sensor timeout must be positive seconds, got {timeout}")
        if image_size is not None and (len(image_size) != 2 or min(image_size) < 2):
            raise SensorError(f"image_size must be (width, height), got {image_size!r}")
        self.password = password
        self.address = address
        self.timeout = float(timeout)
        self.baudrate = baudrate
        self.parameters: SystemParameters | None = None
        self.info: ProductInfo | None = None
        self._image_size = tuple(image_size) if image_size else None
        self._name = port if isinstance(port, str) else str(getattr(port, "port", port))
        self._port: Any = None if isinstance(port, str) else port
        self._lost = False  # the port failed: reopen before the next command
        self._unsynced = False  # the link may hold stale bytes: resync before the next command
        self._verify_after_sync = False

    # -- connection ------------------------------------------------------------------------

    @classmethod
    def open(cls, port: str | Any, **kwargs: Any) -> R503:
        """``R503(port, **kwargs)``, connected."""
        return cls(port, **kwargs).connect()

    @property
    def port(self) -> Any:
        """The pyserial port (None before ``connect``)."""
        return self._port

    @property
    def image_size(self) -> tuple[int, int] | None:
        """(width, height) of the module's images: given, or as the module reports them."""
        if self._image_size is not None:
            return self._image_size  # type: ignore[return-value]
        if self.info is not None:
            return self.info.width, self.info.height
        return None

    def connect(self, wait_ready: float = 0.0) -> R503:
        """Open the port, find the module, verify the password and read what it reports.

        ``wait_ready``: seconds to wait for the ready byte a module sends after power-on (use
        it right after powering the module up; a module already running sends none).
        """
        self._open_port()
        if wait_ready > 0:
            self.wait_ready(wait_ready)
        self._find_module()
        self.parameters = self.read_system_parameters()
        if self._image_size is None:
            try:
                self.info = self.read_product_info()
            except SensorError:
                self.info = None  # an older module: the image size comes from the upload
        return self

    def close(self) -> None:
        """Close the port (if this driver opened it or was given it)."""
        if self._port is not None and self._port.is_open:
            self._port.close()

    def __enter__(self) -> Self:
        if self._port is None or not self._port.is_open or self.parameters is None:
            self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _open_port(self) -> None:
        serial = pyserial()
        baud = self.baudrate or DEFAULT_BAUD
        if self._port is not None:
            if not self._port.is_open:
                self._reopen()
            self._port.timeout = _POLL
            if self.baudrate is not None:
                self._port.baudrate = baud
            return
        try:
            self._port = serial.serial_for_url(
                self._name, baudrate=baud, timeout=_POLL, write_timeout=self.timeout)
        except SensorError:
            raise
        except (OSError, ValueError) as e:
            raise SensorError(f"cannot open the sensor port {self._name!r}: {e}. "
                              f"{available_ports()}") from None

    def _reopen(self) -> None:
        try:
            if self._port.is_open:
                self._port.close()
            self._port.open()
        except SensorError:
            raise
        except (OSError, ValueError) as e:
            raise SensorError(f"cannot reopen the sensor port {self._name!r}: {e}. "
                              f"{available_ports()}") from None
        self._lost = False
        self._unsynced = True
        self._verify_after_sync = True

    def _find_module(self) -> None:
        """Verify the password at the given baud rate, or find the rate that gets an answer."""
        if self.baudrate is not None:
            self.verify_password()
            return
        saved = self.timeout
        self.timeout = min(saved, 0.25)
        try:
            for baud in PROBE_BAUDS:
                self._port.baudrate = baud
                try:
                    self.verify_password()
                except SensorError as e:
                    if e.code is not None:  # the module answered: wrong password or the like
                        self.baudrate = baud
                        raise
                    self._unsynced = False  # nothing was said at this rate: nothing stale
                    continue
                self.baudrate = baud
                return
        finally:
            self.timeout = saved
        raise SensorError(
            f"no fingerprint module answers on {self._name} at any baud rate from 9600 to "
            "115200: check the power (3.3 V), that the module's TX goes to the adapter's RX "
            "and RX to TX, and the module address")

    # -- commands --------------------------------------------------------------------------

    def verify_password(self) -> None:
        """VfyPwd: SensorError with code 0x13 if the module's password is another one."""
        self._checked(Instruction.VFY_PWD, self.password.to_bytes(4, "big"),
                      what="password verification")
        self._verify_after_sync = False

    def handshake(self) -> None:
        """Handshake: SensorError unless the module says it works normally."""
        self._checked(Instruction.HANDSHAKE, what="handshake")

    def read_system_parameters(self) -> SystemParameters:
        """ReadSysPara: status, library size, security level, address, packet size, baud."""
        payload = self._checked(Instruction.READ_SYS_PARA, answer=1 + SystemParameters.SIZE,
                                what="reading the system parameters")
        return SystemParameters.from_payload(payload[1:])

    def read_product_info(self) -> ProductInfo:
        """ReadProdInfo (R503 and newer): model, serial, hardware version, image size."""
        payload = self._checked(Instruction.READ_PROD_INFO, answer=1 + ProductInfo.SIZE,
                                what="reading the product information")
        return ProductInfo.from_payload(payload[1:])

    def capture(self, timeout: float = 10.0, poll: float = 0.05) -> None:
        """GenImg until a finger is on the sensor: the image is then in the module's buffer.

        Polls every ``poll`` seconds; SensorError with code 0x02 when no finger came within
        ``timeout`` seconds, or with the module's code when the capture failed.
        """
        deadline = time.monotonic() + timeout
        while True:
            code = self._transact(Instruction.GEN_IMG)[0]
            if code == 0x00:
                return
            if code != 0x02:
                raise SensorError(f"capture failed: {describe(code)} (code 0x{code:02X})", code)
            left = deadline - time.monotonic()
            if left <= 0:
                raise SensorError(f"no finger on the sensor within {timeout:g} s: place a "
                                  "finger flat on the sensor and try again", 0x02)
            time.sleep(min(poll, left))

    def wait_for_lift(self, timeout: float = 5.0, poll: float = 0.05) -> bool:
        """GenImg until the module reports no finger (0x02): whether the finger lifted within
        ``timeout`` seconds. The module has no other way to tell a resting finger from a new
        touch, so callers wait for a lift between touches; a GenImg that finds the finger
        still there overwrites the image buffer (upload before waiting)."""
        deadline = time.monotonic() + timeout
        while True:
            code = self._transact(Instruction.GEN_IMG)[0]
            if code == 0x02:
                return True
            if code != 0x00:
                raise SensorError(f"capture failed: {describe(code)} (code 0x{code:02X})", code)
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(poll, left))

    def upload_image(self) -> np.ndarray:
        """UpImage: the image in the module's buffer as uint8 (height, width), values k * 17.

        SensorError if the module has no image, if data packets fail their checksum, or if the
        upload stops or has a size the module did not announce.
        """
        self._checked(Instruction.UP_IMAGE, what="image upload")
        data = bytearray()
        packets = corrupted = 0
        try:
            while True:
                try:
                    frame = self._read_frame(time.monotonic() + self.timeout)
                except SensorError as e:
                    raise SensorError(f"image upload stopped after {len(data)} bytes in "
                                      f"{packets} packets: {e}") from None
                kind = frame[6]
                if kind not in (PacketType.DATA, PacketType.END):
                    raise SensorError(f"image upload interrupted by a packet of type 0x{kind:02X}")
                packets += 1
                try:
                    data += decode(frame, self.address).payload
                except SensorError:
                    corrupted += 1
                    data += frame[HEADER_SIZE:-2]  # keep counting bytes; the image is refused
                if kind == PacketType.END:
                    break
        except SensorError:
            self._unsynced = True
            raise
        if corrupted:
            raise SensorError(f"image upload corrupted: {corrupted} of {packets} packets failed "
                              "their checksum (noise on the line?); capture again")
        return self._to_image(bytes(data))

    def read_image(self, timeout: float = 10.0) -> np.ndarray:
        """``capture(timeout)`` then ``upload_image()``."""
        self.capture(timeout)
        return self.upload_image()

    def set_led(self, mode: LedMode | int | str = LedMode.ON,
                colour: LedColour | int | str = LedColour.BLUE,
                speed: int = 128, cycles: int = 0) -> None:
        """AuraLedConfig: the R503's ring LED. ``mode`` and ``colour`` by enum, code or name
        (``"breathing"``, ``"purple"``); ``speed`` 0-255 (lower is faster); ``cycles`` 0-255
        (0: repeat for ever) for breathing and flashing."""
        m, c = _enum(LedMode, mode, "LED mode"), _enum(LedColour, colour, "LED colour")
        for name, value in (("speed", speed), ("cycles", cycles)):
            if not isinstance(value, int) or not 0 <= value <= 255:
                raise SensorError(f"LED {name} must be 0 to 255, got {value!r}")
        self._checked(Instruction.AURA_LED_CONFIG, bytes((m, speed, c, cycles)),
                      what="setting the LED")

    def set_baudrate(self, baudrate: int) -> None:
        """SetSysPara register 4: move module and port to ``baudrate`` (9600 * N, N 1..12).

        The module keeps the rate across power cycles: connect with that rate next time (or
        with ``baudrate=None``). If the new rate does not work, the port goes back to the old
        one and SensorError says so.
        """
        if baudrate % BAUD_UNIT or baudrate // BAUD_UNIT not in BAUD_MULTIPLES:
            raise SensorError(f"baud rate must be 9600 * N with N in 1..12, got {baudrate}")
        old = self._port.baudrate if self._port is not None else self.baudrate
        self._checked(Instruction.SET_SYS_PARA, bytes((Register.BAUD, baudrate // BAUD_UNIT)),
                      what="setting the baud rate")
        try:
            self._port.baudrate = baudrate
        except (OSError, ValueError) as e:
            raise SensorError(f"this serial port cannot run at {baudrate} baud ({e}); the "
                              f"module now expects {baudrate}: reconnect with that rate "
                              "on another adapter") from None
        self.baudrate = baudrate
        try:
            self.parameters = self._read_parameters_retrying()
        except SensorError as e:
            self._port.baudrate = old
            self.baudrate = old
            self._unsynced = True
            raise SensorError(f"the module stopped answering after the switch to {baudrate} "
                              f"baud ({e}); the port is back at {old} baud") from None

    def negotiate_baudrate(self, rates: tuple[int, ...] = (115200, DEFAULT_BAUD)) -> int:
        """Move to the first of ``rates`` that works (115200 when possible); returns it."""
        for rate in rates:
            if rate == self._port.baudrate:
                return rate
            try:
                self.set_baudrate(rate)
                return rate
            except SensorError:
                continue
        raise SensorError(f"none of the baud rates {rates} works with this module")

    def set_packet_size(self, size: int) -> None:
        """SetSysPara register 6: the data packet size in bytes, 32, 64, 128 or 256."""
        if size not in PACKET_SIZES:
            raise SensorError(f"packet size must be one of {PACKET_SIZES}, got {size}")
        self._checked(Instruction.SET_SYS_PARA,
                      bytes((Register.PACKET_SIZE, PACKET_SIZES.index(size))),
                      what="setting the packet size")
        self.parameters = self.read_system_parameters()

    def soft_reset(self, timeout: float = 2.0) -> None:
        """SoftReset, then wait for the ready byte 0x55; the password is verified again."""
        self._checked(Instruction.SOFT_RESET, what="soft reset")
        if not self.wait_ready(timeout):
            self._unsynced = True
            raise SensorError(f"the module did not come back within {timeout:g} s of a soft "
                              "reset (no ready byte 0x55)")
        if self.password:
            self.verify_password()

    def wait_ready(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the ready byte 0x55; whether it came."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            byte = self._io(self._port.read, 1)
            if byte and byte[0] == READY_BYTE:
                return True
        return False

    # -- exchanges -------------------------------------------------------------------------

    def _checked(self, instruction: int, params: bytes = b"", answer: int = 1,
                 what: str = "") -> bytes:
        """``_transact``, then SensorError unless the confirmation code is 0x00."""
        payload = self._transact(instruction, params, answer)
        if payload[0] != 0x00:
            code = payload[0]
            raise SensorError(f"{what or 'command'} failed: {describe(code)} (code 0x{code:02X})",
                              code)
        return payload

    def _transact(self, instruction: int, params: bytes = b"", answer: int = 1) -> bytes:
        """Send one command, return its acknowledge payload (confirmation code first).

        ``answer`` is the payload size of a successful acknowledge; an error answer (a non-zero
        code alone) is accepted too, and packets that fit neither are stale and skipped.
        """
        self._recover()
        try:
            self._io(self._port.reset_input_buffer)
            self._io(self._port.write, command(instruction, params, self.address))
            return self._read_ack(answer)
        except SensorError:
            self._unsynced = True
            raise

    def _read_ack(self, answer: int) -> bytes:
        deadline = time.monotonic() + self.timeout
        while True:
            packet = decode(self._read_frame(deadline), self.address)
            if packet.kind != PacketType.ACK:
                continue  # the rest of an earlier upload
            size = len(packet.payload)
            if size == answer or (size == 1 and packet.payload[0] != 0x00):
                return packet.payload

    def _read_frame(self, deadline: float) -> bytes:
        """One whole frame from the port (checksum not yet checked); skips bytes before EF 01."""
        while True:
            window = b""
            while window != START:
                window = (window + self._read_exact(1, deadline))[-2:]
            header = START + self._read_exact(HEADER_SIZE - 2, deadline)
            length = int.from_bytes(header[7:9], "big")
            if 2 <= length <= MAX_PAYLOAD + 2:
                return header + self._read_exact(length, deadline)
            # No packet has that length: EF 01 was noise; hunt for the next start code.

    def _read_exact(self, n: int, deadline: float) -> bytes:
        data = b""
        while len(data) < n:
            if time.monotonic() >= deadline and data == b"":
                raise self._no_answer()
            chunk = self._io(self._port.read, n - len(data))
            data += chunk
            if not chunk and time.monotonic() >= deadline:
                raise self._no_answer(len(data), n)
        return data

    def _no_answer(self, got: int = 0, wanted: int = 0) -> SensorError:
        cut = f" (a packet stopped after {got} of {wanted} bytes)" if got else ""
        baud = getattr(self._port, "baudrate", self.baudrate)
        return SensorError(
            f"no answer from the sensor on {self._name} within {self.timeout:g} s{cut}: is it "
            f"powered, wired TX to RX, and set to {baud} baud?")

    def _io(self, call: Any, *args: Any) -> Any:
        """``call(*args)`` on the port; a port error loses the port (the next command reopens it)."""
        if self._port is None:
            raise SensorError("the sensor is not connected: call connect() first")
        try:
            return call(*args)
        except OSError as e:  # pyserial's SerialException is an OSError
            self._lost = True
            try:
                self._port.close()
            except OSError:
                pass
            raise SensorError(f"lost the connection to the sensor on {self._name} ({e}): check "
                              "the cable; the next command reopens the port") from None

    def _recover(self) -> None:
        """Before a command: reopen a lost port, then resynchronise a link that may be stale."""
        if self._port is None:
            raise SensorError("the sensor is not connected: call connect() first")
        if self._lost or not self._port.is_open:
            self._reopen()
        if self._unsynced:
            self._resync()
        if self._verify_after_sync:
            self._verify_after_sync = False  # verify_password comes back through here
            try:
                self.verify_password()
            except SensorError:
                self._verify_after_sync = True
                raise

    def _resync(self) -> None:
        """Flush, ask for the system parameters, and skip every packet before their answer.

        The module answers commands in order, so whatever still comes from an earlier command
        (a late acknowledge, the rest of an image) arrives before this answer and is dropped.
        Tried twice: the answer itself may be the packet that noise corrupts.
        """
        try:
            self._sync_once()
        except SensorError:
            if self._lost:
                raise
            self._sync_once()
        self._unsynced = False

    def _sync_once(self) -> None:
        self._io(self._port.reset_input_buffer)
        self._io(self._port.write, command(Instruction.READ_SYS_PARA, b"", self.address))
        deadline = time.monotonic() + self.timeout
        # Stale packets extend the wait, but not for ever: an image at 9600 baud takes 40 s.
        give_up = time.monotonic() + max(60.0, self.timeout)
        while True:
            try:
                frame = self._read_frame(min(deadline, give_up))
            except SensorError as e:
                raise SensorError(f"the sensor is out of step and does not answer: {e}") from None
            try:
                packet = decode(frame, self.address)
            except SensorError:
                continue
            deadline = time.monotonic() + self.timeout  # stale packets: keep listening
            if packet.kind != PacketType.ACK:
                continue
            if len(packet.payload) == 1 + SystemParameters.SIZE and packet.payload[0] == 0:
                self.parameters = SystemParameters.from_payload(packet.payload[1:])
                break
            if packet.payload == b"\x21":  # the module wants the password (it was restarted)
                self._verify_after_sync = True
                break

    def _read_parameters_retrying(self) -> SystemParameters:
        """ReadSysPara, retried for up to ``timeout`` (a module may need a moment to switch)."""
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                return self.read_system_parameters()
            except SensorError:
                if time.monotonic() >= deadline:
                    raise
                self._unsynced = False  # a retry, not a stale link
                time.sleep(0.05)

    def _to_image(self, data: bytes) -> np.ndarray:
        size = self.image_size or KNOWN_IMAGE_SIZES.get(len(data))
        if size is None:
            raise SensorError(
                f"the module uploaded {len(data)} image bytes and did not report its image "
                "size: pass image_size=(width, height) to R503")
        width, height = size
        if len(data) * 2 != width * height:
            raise SensorError(f"the module uploaded {len(data) * 2} pixels but reports a "
                              f"{width} x {height} image; capture again")
        return unpack_pixels(data, width, height)


def _enum(kind: type, value: Any, what: str) -> int:
    """An IntEnum member from itself, its number or its (case-insensitive) name."""
    try:
        if isinstance(value, str):
            return kind[value.strip().upper().replace("-", "_").replace(" ", "_")]
        return kind(value)
    except (KeyError, ValueError):
        names = ", ".join(m.name.lower() for m in kind)
        raise SensorError(f"unknown {what} {value!r}; use one of {names}") from None
