"""The simulated R503: its options, its answers, its timing, and third-party clients over a pty."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from siamid.errors import SensorError
from siamid.sensors import (
    ALWAYS,
    R503,
    Faults,
    PtySimulator,
    SensorModel,
    SimulatorConfig,
    quantise,
)
from siamid.sensors.protocol import (
    Instruction,
    Packet,
    PacketType,
    command,
    decode,
    encode,
    unpack_pixels,
)
from siamid.sensors.simulator import Hangup, Send, fit_image

serial = pytest.importorskip("serial")

FAST = 0.15


def noise(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width), dtype=np.uint8)


def answers(model: SensorModel, data: bytes) -> list[Packet]:
    """The packets ``model`` sends for ``data`` (every Send split into frames)."""
    wire = b"".join(e.data for e in model.receive(data) if isinstance(e, Send))
    packets = []
    while wire:
        length = int.from_bytes(wire[7:9], "big")
        packets.append(decode(wire[:9 + length]))
        wire = wire[9 + length:]
    return packets


# -- options ---------------------------------------------------------------------------------


def test_url_options_configure_the_module(tmp_path):
    c = SimulatorConfig.from_url(
        f"r503sim://?images={tmp_path}&width=256&height=288&packet=32&baud=115200"
        "&password=0x1234&address=0xABCD0001&seed=5&impressions=2&info=0&wire=1"
        "&faults=checksum:2,nofinger:always,slow:0.25,password,disconnect,truncate:3")
    assert (c.width, c.height, c.packet_size, c.baud) == (256, 288, 32, 115200)
    assert (c.password, c.address, c.seed, c.impressions) == (0x1234, 0xABCD0001, 5, 2)
    assert c.images == tmp_path and not c.product_info and c.wire
    assert c.faults == Faults(checksum=2, truncate=3, no_finger=ALWAYS, slow=0.25,
                              wrong_password=True, disconnect=1)
    assert SimulatorConfig.from_url("r503sim://") == SimulatorConfig()


@pytest.mark.parametrize(("url", "words"), [
    ("r503sim://?colour=red", "unknown simulator option 'colour'"),
    ("r503sim://?faults=meltdown", "unknown simulator fault 'meltdown'"),
    ("r503sim://?packet=100", "packet size must be one of"),
    ("r503sim://?baud=57601", "9600 \\* N"),
    ("r503sim://?width=abc", "width must be a number, got 'abc'"),
    ("r503sim://?width=__import__('os')", "width must be a number"),
    ("r503sim://?width=3&height=3", "even number of pixels"),
    ("r503sim://?wire=maybe", "wire must be 1 or 0"),
    ("r503sim://?seed=1&seed=2", "given twice"),
    ("r503sim://?faults=password:3", "takes no value"),
    ("loop://", "not a simulator URL"),
])
def test_bad_options_are_refused_naming_the_value(url, words):
    with pytest.raises(SensorError, match=words):
        SimulatorConfig.from_url(url)


def test_a_missing_or_empty_image_folder_is_refused(tmp_path):
    with pytest.raises(SensorError, match="not found"):
        SensorModel(SimulatorConfig(images=tmp_path / "none"))
    with pytest.raises(SensorError, match="no PNG images"):
        SensorModel(SimulatorConfig(images=tmp_path))


# -- images ----------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(arrays(np.uint8, st.tuples(st.integers(1, 12), st.integers(1, 12))))
def test_served_levels_are_those_of_quantise(image):
    nibbles = fit_image(image, 12, 12)
    h, w = image.shape
    y, x = (12 - h) // 2, (12 - w) // 2
    window = nibbles[y:y + h, x:x + w] * 17
    assert np.array_equal(window, quantise(image / 255.0, 16))
    assert nibbles.max() <= 15


def test_images_are_centre_cropped_or_padded_with_white():
    image = np.zeros((4, 8), dtype=np.uint8)
    fitted = fit_image(image, 4, 6)
    assert fitted.shape == (6, 4)
    assert (fitted[1:5] == 0).all() and (fitted[0] == 15).all() and (fitted[5] == 15).all()


def test_png_folder_is_served_in_order_round_robin(tmp_path):
    for i in range(2):
        Image.fromarray(noise(192, 192, i)).save(tmp_path / f"{i}.png")
    model = SensorModel(SimulatorConfig(images=tmp_path))
    for i in range(3):
        assert answers(model, command(Instruction.GEN_IMG))[0].payload == b"\x00"
        assert np.array_equal(model.served[i], quantise(noise(192, 192, i % 2) / 255.0, 16))


def test_the_synthetic_finger_is_served_as_rendered():
    from siamid.synth import generate_finger

    with R503("r503sim://?seed=3&impressions=2", timeout=FAST) as sensor:
        first, second = sensor.read_image(timeout=5), sensor.read_image(timeout=5)
    image = first
    expected = generate_finger(3, 2, sensor="r503")[1]
    assert np.array_equal(first, expected[0]) and np.array_equal(second, expected[1])
    assert set(np.unique(image)) <= {17 * k for k in range(16)}


# -- answers ---------------------------------------------------------------------------------


def test_module_answers_the_documented_bytes():
    model = SensorModel(SimulatorConfig(), images=[noise(192, 192)])
    assert model.receive(command(Instruction.HANDSHAKE)) == [
        Send(bytes.fromhex("EF01 FFFFFFFF 07 0003 00 000A"), 0.0, 57600)]
    sysparams = answers(model, command(Instruction.READ_SYS_PARA))[0]
    assert sysparams.payload == bytes.fromhex("00 0000 0000 00C8 0003 FFFFFFFF 0002 0006")
    info = answers(model, command(Instruction.READ_PROD_INFO))[0]
    assert len(info.payload) == 47 and info.payload[39:43] == bytes.fromhex("00C0 00C0")


def test_upload_is_data_packets_of_the_packet_size_then_an_end_packet():
    model = SensorModel(SimulatorConfig(packet_size=64), images=[noise(192, 192)])
    answers(model, command(Instruction.GEN_IMG))
    packets = answers(model, command(Instruction.UP_IMAGE))
    ack, data = packets[0], packets[1:]
    assert ack.kind == PacketType.ACK and ack.payload == b"\x00"
    assert [p.kind for p in data] == [PacketType.DATA] * 287 + [PacketType.END]
    assert {len(p.payload) for p in data} == {64}
    image = unpack_pixels(b"".join(p.payload for p in data), 192, 192)
    assert np.array_equal(image, model.served[-1])


def test_a_command_with_a_bad_checksum_gets_code_1_and_garbage_is_skipped():
    model = SensorModel(SimulatorConfig(), images=[noise(192, 192)])
    bad = bytearray(command(Instruction.HANDSHAKE))
    bad[-1] ^= 1
    assert [p.payload for p in answers(model, bytes(bad))] == [b"\x01"]
    assert [p.payload for p in answers(model, b"\x00\xef\x55" + command(Instruction.HANDSHAKE))] \
        == [b"\x00"]
    # Byte by byte, as a slow UART delivers it.
    wire = command(Instruction.HANDSHAKE)
    events = [e for b in wire for e in model.receive(bytes((b,)))]
    assert len(events) == 1


def test_another_address_is_ignored_and_an_unknown_command_is_refused():
    model = SensorModel(SimulatorConfig(address=0x00000001), images=[noise(192, 192)])
    assert model.receive(command(Instruction.HANDSHAKE)) == []
    assert answers(model, command(Instruction.HANDSHAKE, address=1))[0].payload == b"\x00"
    assert answers(model, command(0x77, address=1))[0].payload == b"\xfc"


def test_a_password_must_be_verified_first():
    model = SensorModel(SimulatorConfig(password=42), images=[noise(192, 192)])
    assert answers(model, command(Instruction.GEN_IMG))[0].payload == b"\x21"
    assert answers(model, command(Instruction.VFY_PWD, (41).to_bytes(4, "big")))[0].payload == b"\x13"
    assert answers(model, command(Instruction.VFY_PWD, (42).to_bytes(4, "big")))[0].payload == b"\x00"
    assert answers(model, command(Instruction.GEN_IMG))[0].payload == b"\x00"


def test_register_writes_are_checked():
    model = SensorModel(SimulatorConfig(), images=[noise(192, 192)])
    assert answers(model, command(Instruction.SET_SYS_PARA, bytes((4, 13))))[0].payload == b"\x1b"
    assert answers(model, command(Instruction.SET_SYS_PARA, bytes((9, 1))))[0].payload == b"\x1a"
    assert answers(model, command(Instruction.SET_SYS_PARA, bytes((6, 3))))[0].payload == b"\x00"
    assert model.packet_size == 256
    assert answers(model, command(Instruction.SET_SYS_PARA, bytes((4, 2))))[0].payload == b"\x00"
    assert model.baud == 19200


def test_faults_fire_as_often_as_asked():
    model = SensorModel(SimulatorConfig(faults=Faults(no_finger=2, slow=0.1)),
                        images=[noise(192, 192)])
    codes = [answers(model, command(Instruction.GEN_IMG))[0].payload for _ in range(3)]
    assert codes == [b"\x02", b"\x02", b"\x00"]
    assert model.receive(command(Instruction.HANDSHAKE))[0].delay == pytest.approx(0.1)
    model.faults.disconnect = 1
    events = model.receive(command(Instruction.UP_IMAGE))
    assert isinstance(events[-1], Hangup) and len(events) == 1 + 72 + 1
    model.faults.truncate = 1
    events = model.receive(command(Instruction.UP_IMAGE))
    assert len(events) == 1 + 72 and all(isinstance(e, Send) for e in events)
    model.faults.checksum = 1
    corrupted = model.receive(command(Instruction.HANDSHAKE))[0].data
    with pytest.raises(SensorError, match="checksum"):
        decode(corrupted)


# -- the pyserial port -----------------------------------------------------------------------


def test_power_on_sends_the_ready_byte():
    from siamid.sensors.protocol_r503sim import register

    register()
    port = serial.serial_for_url("r503sim://", baudrate=57600, timeout=FAST)
    assert port.read(1) == b"\x55"
    port.write(command(Instruction.HANDSHAKE))
    assert port.in_waiting == 12
    assert decode(port.read(12)).payload == b"\x00"
    assert port.read(1) == b""  # nothing more: a read waits out its timeout
    port.close()


def test_wire_mode_takes_ten_bits_a_byte_at_the_baud_rate(tmp_path):
    Image.fromarray(noise(16, 16)).save(tmp_path / "0.png")
    url = f"r503sim://?images={tmp_path}&width=16&height=16&packet=32&baud=19200&wire=1"
    with R503(url, baudrate=19200, timeout=1.0) as sensor:
        sim = sensor.port.simulator
        before = sim.bytes_received + sim.bytes_sent
        t0 = time.monotonic()
        image = sensor.read_image(timeout=1.0)
        elapsed = time.monotonic() - t0
        wire = sim.bytes_received + sim.bytes_sent - before
    assert np.array_equal(image, sim.served[-1])
    # GenImg + ack, UpImage + ack, 4 data packets of 32 bytes: 24 + 24 + 4 * 43 bytes.
    assert wire == 24 + 24 + 4 * 43
    assert elapsed >= wire * 10 / 19200 * 0.95
    assert elapsed < wire * 10 / 19200 + 0.5


def test_a_port_at_another_baud_rate_is_not_heard():
    from siamid.sensors.protocol_r503sim import register

    register()
    port = serial.serial_for_url("r503sim://", baudrate=9600, timeout=0.05)
    port.reset_input_buffer()
    port.write(command(Instruction.HANDSHAKE))
    assert port.read(12) == b""
    port.baudrate = 57600
    port.write(command(Instruction.HANDSHAKE))
    assert decode(port.read(12)).payload == b"\x00"
    port.close()


# -- the pseudo-terminal, and clients that are not ours ---------------------------------------


def test_driver_end_to_end_over_a_pty():
    images = [noise(192, 192, 1), noise(192, 192, 2)]
    with PtySimulator(SimulatorConfig(packet_size=256), images=images) as sim, \
            R503(sim.path, timeout=1.0) as sensor:
        assert sensor.image_size == (192, 192)
        for i in range(2):
            image = sensor.read_image(timeout=1.0)
            assert np.array_equal(image, quantise(images[i] / 255.0, 16))
        sensor.set_led("flashing", "red", cycles=2)
        assert sim.model.led == (2, 128, 1, 2)


def test_pty_faults_reach_the_driver_and_it_goes_on():
    with PtySimulator(SimulatorConfig(), images=[noise(192, 192)]) as sim, \
            R503(sim.path, timeout=0.3) as sensor:
        sim.model.faults.truncate = 1
        sensor.capture(timeout=0.3)
        with pytest.raises(SensorError, match="image upload stopped"):
            sensor.upload_image()
        sensor.handshake()  # resynchronised
        sim.model.faults.checksum = 1
        with pytest.raises(SensorError, match="checksum"):
            sensor.handshake()
        assert np.array_equal(sensor.read_image(timeout=0.3), sim.model.served[-1])


def test_pty_disconnect_is_a_lost_port():
    config = SimulatorConfig(faults=Faults(disconnect=1))
    with PtySimulator(config, images=[noise(192, 192)]) as sim, \
            R503(sim.path, timeout=0.3) as sensor:
        sensor.capture(timeout=0.3)
        with pytest.raises(SensorError, match="(lost the connection|image upload stopped)"):
            sensor.upload_image()
        assert sim.hung_up
        with pytest.raises(SensorError):
            sensor.handshake()  # the terminal is gone for good, as an unplugged adapter


def test_adafruit_circuitpython_fingerprint_talks_to_the_simulator():
    adafruit_fingerprint = pytest.importorskip("adafruit_fingerprint")
    image = noise(192, 192, 4)
    with PtySimulator(SimulatorConfig(), images=[image]) as sim:
        uart = serial.Serial(sim.path, 57600, timeout=1)
        try:
            finger = adafruit_fingerprint.Adafruit_Fingerprint(uart)  # verifies, reads params
            assert (finger.library_size, finger.data_packet_size, finger.baudrate) == (200, 2, 6)
            assert finger.get_image() == adafruit_fingerprint.OK
            data = finger.get_fpdata("image")
            assert finger.set_led(color=3, mode=1) == adafruit_fingerprint.OK
        finally:
            uart.close()
    pixels = unpack_pixels(bytes(data), 192, 192)
    assert np.array_equal(pixels, sim.model.served[-1])
    assert np.array_equal(pixels, quantise(image / 255.0, 16))
    assert sim.model.led == (1, 128, 3, 0)


def test_pyfingerprint_talks_to_the_simulator(tmp_path: Path):
    pyfingerprint = pytest.importorskip("pyfingerprint.pyfingerprint")
    # pyfingerprint draws every image as 256 x 288, the older modules' size.
    image = noise(288, 256, 5)
    with PtySimulator(SimulatorConfig(width=256, height=288), images=[image]) as sim:
        finger = pyfingerprint.PyFingerprint(sim.path, 57600, 0xFFFFFFFF, 0)
        try:
            assert finger.verifyPassword()
            _status, _, capacity, security, address, packet_code, baud_n = \
                finger.getSystemParameters()
            assert (capacity, security, address, packet_code, baud_n) == (200, 3, 0xFFFFFFFF, 2, 6)
            assert finger.readImage()
            finger.downloadImage(str(tmp_path / "finger.png"))
        finally:
            del finger
    with Image.open(tmp_path / "finger.png") as im:
        pixels = np.asarray(im)
    assert np.array_equal(pixels, sim.model.served[-1])
    assert np.array_equal(pixels, quantise(image / 255.0, 16))


def test_pyfingerprint_sees_a_wrong_password():
    pyfingerprint = pytest.importorskip("pyfingerprint.pyfingerprint")
    with PtySimulator(SimulatorConfig(password=7), images=[noise(192, 192)]) as sim:
        finger = pyfingerprint.PyFingerprint(sim.path, 57600, 0xFFFFFFFF, 8)
        try:
            assert finger.verifyPassword() is False
        finally:
            del finger


def test_encode_of_the_model_matches_the_protocol():
    # The simulator frames with the same encoder the driver decodes with.
    model = SensorModel(SimulatorConfig(), images=[noise(192, 192)])
    ack = model.receive(command(Instruction.HANDSHAKE))[0].data
    assert ack == encode(Packet(PacketType.ACK, b"\x00"))


def test_a_pty_client_at_another_baud_rate_is_not_heard():
    with PtySimulator(SimulatorConfig(), images=[noise(192, 192)]) as sim:
        port = serial.Serial(sim.path, 115200, timeout=0.1)
        try:
            port.write(command(Instruction.HANDSHAKE))
            assert port.read(12) == b""
            port.baudrate = 57600
            port.write(command(Instruction.HANDSHAKE))
            assert decode(port.read(12)).payload == b"\x00"
        finally:
            port.close()
