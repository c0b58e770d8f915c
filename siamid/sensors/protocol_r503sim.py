"""pyserial's handler for ``r503sim://`` URLs: a serial port with a simulated R503 behind it.

pyserial finds this module by name (``<package>.protocol_<scheme>``) once ``siamid.sensors`` is
in ``serial.protocol_handler_packages``; ``register()`` puts it there and the driver calls it.
Then ``serial.serial_for_url("r503sim://?width=256&height=288&faults=nofinger:3")`` gives a port
whose ``simulator`` attribute is the ``SensorModel`` answering on it (options: simulator.py).

Time is simulated without threads: a write runs the module at once and schedules its answer
bytes; a read returns the bytes whose time has come, waiting for them up to the port timeout.
With ``wire=1`` each byte takes 10 bits at the baud rate, in both directions; a port set to a
baud rate other than the module's is not heard. Closing and reopening the port keeps the module
(and its faults' remaining counts) but power-cycles it, like unplugging and replugging it.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

import serial
from serial.serialutil import PortNotOpenError, SerialBase, SerialException

from .simulator import Event, Hangup, SensorModel, SimulatorConfig

PACKAGE = "siamid.sensors"


def register() -> None:
    """Make ``serial.serial_for_url`` understand ``r503sim://`` (idempotent)."""
    if PACKAGE not in serial.protocol_handler_packages:
        serial.protocol_handler_packages.append(PACKAGE)


@dataclass
class _Burst:
    """Bytes that arrive one every ``interval`` seconds, the first at ``start + interval``."""

    data: bytes
    start: float
    interval: float
    taken: int = 0

    def ready(self, now: float) -> int:
        """How many bytes of this burst have arrived by ``now``, read or not."""
        if now < self.start:
            return 0
        if self.interval <= 0:
            return len(self.data)
        return min(len(self.data), int((now - self.start) / self.interval))

    def next_time(self) -> float:
        """When the next unread byte arrives."""
        return self.start + (self.taken + 1) * self.interval


class Serial(SerialBase):
    """A pyserial port whose far end is a simulated R503-class module."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        self.simulator: SensorModel | None = None
        self._url: str | None = None
        self._bursts: deque[_Burst] = deque()
        self._rx_free = 0.0  # when the module's line is free to send again
        self._tx_free = 0.0  # when the host's line is free to send again
        self._hangup_at: float | None = None
        self._wire = False
        super().__init__(*args, **kwargs)

    # -- life cycle ------------------------------------------------------------------------

    def open(self) -> None:
        """Power the module on (creating it from the URL the first time)."""
        if self._port is None:
            raise SerialException("Port must be configured before it can be used.")
        if self.is_open:
            raise SerialException("Port is already open.")
        if self.simulator is None or self._url != self._port:
            config = SimulatorConfig.from_url(self._port)
            self.simulator = SensorModel(config)
            self._url = self._port
            self._wire = config.wire
        self._bursts.clear()
        now = time.monotonic()
        self._rx_free = self._tx_free = now
        self._hangup_at = None
        self.is_open = True
        self._schedule(self.simulator.power_on(), now)

    def close(self) -> None:
        """Close the port; the module keeps its state for the next open."""
        self.is_open = False
        self._bursts.clear()

    def _reconfigure_port(self, *args: object, **kwargs: object) -> None:
        """Nothing to configure: the baud rate is read at each write."""

    # -- data ------------------------------------------------------------------------------

    def _check(self, now: float) -> None:
        if not self.is_open:
            raise PortNotOpenError()
        if self._hangup_at is not None and now >= self._hangup_at:
            raise SerialException("simulated R503 disconnected (the cable was pulled)")

    def _schedule(self, events: list[Event], after: float) -> None:
        t = max(after, self._rx_free)
        for event in events:
            t += event.delay
            if isinstance(event, Hangup):
                self._hangup_at = t
                break
            interval = 10.0 / event.baud if self._wire else 0.0
            self._bursts.append(_Burst(event.data, t, interval))
            t += len(event.data) * interval
        self._rx_free = t

    def write(self, data: bytes) -> int:
        """Send ``data`` to the module; its answers are scheduled, not yet readable."""
        now = time.monotonic()
        self._check(now)
        data = bytes(data)
        assert self.simulator is not None
        start = max(now, self._tx_free)
        self._tx_free = start + (len(data) * 10.0 / self._baudrate if self._wire else 0.0)
        if self._baudrate == self.simulator.baud:
            self._schedule(self.simulator.receive(data), self._tx_free)
        return len(data)

    def _take(self, size: int, now: float) -> bytes:
        out = bytearray()
        while self._bursts and len(out) < size:
            burst = self._bursts[0]
            n = min(burst.ready(now) - burst.taken, size - len(out))
            if n <= 0:
                break
            out += burst.data[burst.taken:burst.taken + n]
            burst.taken += n
            if burst.taken == len(burst.data):
                self._bursts.popleft()
        return bytes(out)

    def read(self, size: int = 1) -> bytes:
        """Up to ``size`` bytes, waiting for them up to the port timeout."""
        start = time.monotonic()
        deadline = None if self._timeout is None else start + self._timeout
        out = bytearray()
        while len(out) < size:
            now = time.monotonic()
            if self._hangup_at is not None and now >= self._hangup_at and not out:
                self._check(now)
            out += self._take(size - len(out), now)
            if len(out) >= size or (deadline is not None and now >= deadline):
                break
            wake = self._bursts[0].next_time() if self._bursts else None
            if self._hangup_at is not None:
                wake = self._hangup_at if wake is None else min(wake, self._hangup_at)
            if deadline is not None:
                wake = deadline if wake is None else min(wake, deadline)
            if wake is None:
                wake = now + 0.05  # no timeout and nothing coming: block, as a port would
            if wake > now:
                time.sleep(wake - now)
        return bytes(out)

    @property
    def in_waiting(self) -> int:
        """Bytes that have arrived and are not read yet."""
        now = time.monotonic()
        self._check(now)
        return sum(b.ready(now) - b.taken for b in self._bursts)

    def reset_input_buffer(self) -> None:
        """Drop the bytes that have arrived; bytes still on their way keep coming."""
        now = time.monotonic()
        self._check(now)
        self._take(1 << 62, now)

    def reset_output_buffer(self) -> None:
        """Nothing waits to be sent: writes reach the module at once."""

    @property
    def out_waiting(self) -> int:
        """Always 0: see ``reset_output_buffer``."""
        return 0

    def _update_break_state(self) -> None:
        """Breaks mean nothing to the module."""

    def _update_rts_state(self) -> None:
        """The module has no flow control."""

    def _update_dtr_state(self) -> None:
        """The module has no flow control."""

    @property
    def cts(self) -> bool:
        """Clear to send: always."""
        return True

    @property
    def dsr(self) -> bool:
        """Data set ready: always."""
        return True

    @property
    def ri(self) -> bool:
        """Ring indicator: never."""
        return False

    @property
    def cd(self) -> bool:
        """Carrier detect: always."""
        return True
