"""The R503 driver against the simulator: commands, image upload, and recovery from every fault."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from siamid.errors import SensorError
from siamid.sensors import ALWAYS, R503, LedColour, LedMode

pytest.importorskip("serial")

# Answers come at once from the simulator: short timeouts keep the failing paths fast.
FAST = 0.15


@pytest.fixture(scope="module")
def png_folders(tmp_path_factory) -> dict[tuple[int, int], Path]:
    """Folders of two random gray PNGs each, at 192 x 192 and 256 x 288 (width x height)."""
    rng = np.random.default_rng(7)
    folders = {}
    for width, height in [(192, 192), (256, 288), (100, 100)]:
        folder = tmp_path_factory.mktemp(f"png{width}x{height}")
        for i in range(2):
            pixels = rng.integers(0, 256, (height, width), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"{i}.png")
        folders[width, height] = folder
    return folders


def sim_url(folder: Path, **options: object) -> str:
    """A simulator URL serving the PNGs in ``folder``, with more ``options``."""
    query = "&".join([f"images={folder}", *(f"{k}={v}" for k, v in options.items())])
    return f"r503sim://?{query}"


def expected_pixels(png: Path) -> np.ndarray:
    """What the module should upload for ``png``: 16 levels, k * 17, as quantise gives."""
    from siamid.sensors import quantise

    with Image.open(png) as im:
        return quantise(np.asarray(im) / 255.0, 16)


@pytest.fixture
def sensor(png_folders):
    with R503(sim_url(png_folders[192, 192]), timeout=FAST) as s:
        yield s


def test_connect_reads_parameters_and_product_info(sensor):
    p = sensor.parameters
    assert (p.packet_size, p.baudrate, p.library_size, p.address) == (128, 57600, 200, 0xFFFFFFFF)
    assert sensor.info.model == "R503SIM"
    assert sensor.image_size == (192, 192)


@pytest.mark.parametrize("packet", [32, 64, 128, 256])
@pytest.mark.parametrize("size", [(192, 192), (256, 288)])
def test_upload_returns_exactly_the_pixels_served(png_folders, packet, size):
    width, height = size
    url = sim_url(png_folders[size], packet=packet, width=width, height=height)
    with R503(url, timeout=FAST) as s:
        assert s.image_size == size and s.parameters.packet_size == packet
        sim = s.port.simulator
        for i in range(2):
            image = s.read_image(timeout=FAST)
            assert image.shape == (height, width) and image.dtype == np.uint8
            assert np.array_equal(image, sim.served[-1])
            assert np.array_equal(image, expected_pixels(png_folders[size] / f"{i}.png"))


def test_image_size_of_an_older_module_comes_from_the_upload(png_folders):
    url = sim_url(png_folders[256, 288], width=256, height=288, info=0)
    with R503(url, timeout=FAST) as s:
        assert s.info is None and s.image_size is None
        assert s.read_image(timeout=FAST).shape == (288, 256)


def test_an_unknown_size_needs_image_size(png_folders):
    url = sim_url(png_folders[100, 100], width=100, height=100, info=0)
    with R503(url, timeout=FAST) as s, pytest.raises(SensorError, match="image_size="):
        s.read_image(timeout=FAST)
    with R503(url, timeout=FAST, image_size=(100, 100)) as s:
        assert np.array_equal(s.read_image(timeout=FAST), s.port.simulator.served[-1])


def test_driver_sends_the_documented_bytes(sensor):
    sent: list[bytes] = []
    port = sensor.port
    write = port.write
    port.write = lambda data: (sent.append(bytes(data)), write(data))[1]
    sensor.capture(timeout=FAST)
    sensor.upload_image()
    sensor.set_led(LedMode.BREATHING, LedColour.BLUE, speed=0x80, cycles=0)
    sensor.handshake()
    assert sent == [bytes.fromhex(h) for h in (
        "EF01 FFFFFFFF 01 0003 01 0005",
        "EF01 FFFFFFFF 01 0003 0A 000E",
        "EF01 FFFFFFFF 01 0007 35 01 80 02 00 00C0",
        "EF01 FFFFFFFF 01 0003 40 0044",
    )]


def test_capture_polls_until_a_finger_comes(sensor):
    sim = sensor.port.simulator
    sim.faults.no_finger = 3
    sim.commands.clear()
    sensor.capture(timeout=1.0, poll=0.001)
    assert sim.commands == [0x01] * 4
    assert sensor.upload_image().shape == (192, 192)


def test_no_finger_times_out_with_code_2_and_the_driver_goes_on(sensor):
    sim = sensor.port.simulator
    sim.faults.no_finger = ALWAYS
    t0 = time.monotonic()
    with pytest.raises(SensorError, match="no finger on the sensor within 0.1 s") as info:
        sensor.capture(timeout=0.1, poll=0.01)
    assert info.value.code == 0x02
    assert time.monotonic() - t0 < 1.0
    sim.faults.no_finger = 0
    assert np.array_equal(sensor.read_image(timeout=FAST), sim.served[-1])


def test_corrupted_acknowledge_is_refused_then_the_driver_goes_on(sensor):
    sim = sensor.port.simulator
    sim.faults.checksum = 1
    with pytest.raises(SensorError, match="corrupted packet: checksum") as info:
        sensor.handshake()
    assert info.value.code is None
    sensor.handshake()
    assert sensor.read_system_parameters().library_size == 200


def test_corrupted_upload_acknowledge_then_the_stale_image_is_skipped(sensor):
    sim = sensor.port.simulator
    sensor.capture(timeout=FAST)
    sim.faults.checksum = 1  # the acknowledge of UpImage; its 144 data packets still follow
    with pytest.raises(SensorError, match="corrupted packet: checksum"):
        sensor.upload_image()
    assert np.array_equal(sensor.read_image(timeout=FAST), sim.served[-1])


def test_corrupted_data_packets_are_counted_then_the_driver_goes_on(sensor):
    sim = sensor.port.simulator
    sensor.capture(timeout=FAST)
    # Let the acknowledge through, corrupt the first two data packets.
    original = sim._packet
    calls = {"n": 0}

    def corrupt_after_ack(kind, payload):
        calls["n"] += 1
        sim.faults.checksum = 1 if calls["n"] in (2, 3) else 0
        return original(kind, payload)

    sim._packet = corrupt_after_ack
    with pytest.raises(SensorError, match="2 of 144 packets failed their checksum"):
        sensor.upload_image()
    sim._packet = original
    assert np.array_equal(sensor.read_image(timeout=FAST), sim.served[-1])


def test_truncated_upload_then_the_driver_goes_on(sensor):
    sim = sensor.port.simulator
    sensor.capture(timeout=FAST)
    sim.faults.truncate = 1
    with pytest.raises(SensorError, match="image upload stopped after 9216 bytes in 72 packets"):
        sensor.upload_image()
    assert np.array_equal(sensor.read_image(timeout=FAST), sim.served[-1])


def test_slow_answers_time_out_then_the_late_answer_is_not_taken_for_the_next(sensor):
    sim = sensor.port.simulator
    sim.faults.slow = 0.3
    t0 = time.monotonic()
    with pytest.raises(SensorError, match="no answer from the sensor") as info:
        sensor.capture(timeout=FAST)
    assert info.value.code is None
    assert time.monotonic() - t0 < 0.3
    sim.faults.slow = 0.0
    # The late GenImg acknowledge is still on its way; the driver must skip it.
    sensor.timeout = 1.0
    assert sensor.read_system_parameters().packet_size == 128
    assert np.array_equal(sensor.read_image(timeout=1.0), sim.served[-1])


def test_slow_answers_within_the_timeout_are_fine(png_folders):
    with R503(sim_url(png_folders[192, 192], faults="slow:0.05"), timeout=0.5) as s:
        assert np.array_equal(s.read_image(timeout=0.5), s.port.simulator.served[-1])


def test_wrong_password_then_the_right_one(png_folders):
    url = sim_url(png_folders[192, 192], password="0x1234ABCD")
    with pytest.raises(SensorError, match="wrong password") as info:
        R503(url, timeout=FAST).connect()
    assert info.value.code == 0x13
    with R503(url, timeout=FAST, password=0x1234ABCD) as s:
        assert s.parameters.password_verified
        assert s.read_image(timeout=FAST).shape == (192, 192)


def test_password_fault_then_the_driver_goes_on(sensor):
    sim = sensor.port.simulator
    sim.faults.wrong_password = True
    with pytest.raises(SensorError, match=r"password verification failed: wrong password \(code 0x13\)"):
        sensor.verify_password()
    sim.faults.wrong_password = False
    sensor.verify_password()
    sensor.handshake()


def test_disconnect_mid_upload_then_the_port_is_reopened(sensor):
    sim = sensor.port.simulator
    sensor.capture(timeout=FAST)
    sim.faults.disconnect = 1
    with pytest.raises(SensorError, match="lost the connection .* check the cable") as info:
        sensor.upload_image()
    assert info.value.code is None
    assert not sensor.port.is_open
    # The module restarted (its image buffer is empty); the next command reopens and resyncs.
    assert np.array_equal(sensor.read_image(timeout=FAST), sim.served[-1])
    assert sensor.port.is_open


def test_upload_without_a_capture_reports_the_modules_code(sensor):
    sensor.soft_reset(timeout=1.0)  # empties the image buffer
    with pytest.raises(SensorError, match="image upload failed") as info:
        sensor.upload_image()
    assert info.value.code == 0x0F
    sensor.handshake()


def test_soft_reset_waits_for_the_ready_byte(sensor):
    sim = sensor.port.simulator
    sim.commands.clear()
    t0 = time.monotonic()
    sensor.soft_reset(timeout=1.0)
    assert time.monotonic() - t0 >= 0.015  # the simulator's reset time
    assert sim.commands == [0x3D]
    sensor.handshake()


def test_led_by_enum_number_or_name(sensor):
    sim = sensor.port.simulator
    sensor.set_led("breathing", "purple", speed=10, cycles=3)
    assert sim.led == (1, 10, 3, 3)
    sensor.set_led(LedMode.OFF, LedColour.WHITE)
    assert sim.led == (4, 128, 7, 0)
    sensor.set_led(2, 4)
    assert sim.led == (2, 128, 4, 0)
    with pytest.raises(SensorError, match="unknown LED colour 'pink'; use one of red, blue"):
        sensor.set_led("on", "pink")
    with pytest.raises(SensorError, match="LED speed must be 0 to 255"):
        sensor.set_led("on", "red", speed=300)


def test_baud_negotiation_moves_module_and_port_to_115200(sensor):
    sim = sensor.port.simulator
    assert sensor.negotiate_baudrate() == 115200
    assert sim.baud == 115200 and sensor.port.baudrate == 115200
    assert sensor.parameters.baudrate == 115200
    assert np.array_equal(sensor.read_image(timeout=FAST), sim.served[-1])
    sensor.set_baudrate(57600)
    assert sim.baud == 57600 and sensor.read_system_parameters().baudrate == 57600
    with pytest.raises(SensorError, match="9600 \\* N"):
        sensor.set_baudrate(100000)


def test_unknown_baud_rate_is_found(png_folders):
    with R503(sim_url(png_folders[192, 192], baud=115200), baudrate=None, timeout=FAST) as s:
        assert s.baudrate == 115200 and s.parameters.baudrate == 115200


def test_packet_size_can_be_changed(sensor):
    sensor.set_packet_size(32)
    assert sensor.parameters.packet_size == 32
    assert np.array_equal(sensor.read_image(timeout=FAST), sensor.port.simulator.served[-1])
    with pytest.raises(SensorError, match="packet size must be one of"):
        sensor.set_packet_size(100)


def test_a_wrong_baud_rate_gets_no_answer(png_folders):
    with pytest.raises(SensorError, match="no answer .* set to 115200 baud") as info:
        R503(sim_url(png_folders[192, 192]), baudrate=115200, timeout=FAST).connect()
    assert info.value.code is None


def test_a_missing_port_lists_the_ports_there_are(tmp_path):
    with pytest.raises(SensorError, match="cannot open the sensor port .*(Serial ports on this "
                                          "machine|No serial port found)"):
        R503(str(tmp_path / "ttyUSB9")).connect()


def test_bad_arguments_are_refused_before_any_port_is_opened():
    with pytest.raises(SensorError, match="baud rate"):
        R503("r503sim://", baudrate=12345)
    with pytest.raises(SensorError, match="password"):
        R503("r503sim://", password=-1)
    with pytest.raises(SensorError, match="not connected"):
        R503("r503sim://").handshake()


def test_the_driver_prints_nothing(sensor, capsys):
    sensor.read_image(timeout=FAST)
    sensor.port.simulator.faults.truncate = 1
    with pytest.raises(SensorError):
        sensor.read_image(timeout=FAST)
    assert capsys.readouterr() == ("", "")


def test_without_pyserial_the_package_imports_and_the_driver_says_what_to_install():
    code = (
        "import sys; sys.modules['serial'] = None\n"
        "import siamid.sensors as s\n"
        "from siamid.errors import SensorError\n"
        "try:\n"
        "    s.R503('/dev/ttyUSB0').connect()\n"
        "except SensorError as e:\n"
        "    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "pip install 'siamid[sensor]'" in out.stdout
