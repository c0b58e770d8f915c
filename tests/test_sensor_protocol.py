"""The R503 packet format: framing, checksums, pixel packing, the records modules report."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from siamid.errors import SensorError
from siamid.sensors import quantise
from siamid.sensors.protocol import (
    CONFIRMATION,
    DEFAULT_ADDRESS,
    Instruction,
    Packet,
    PacketType,
    checksum,
    command,
    decode,
    describe,
    encode,
    pack_nibbles,
    unpack_pixels,
)
from siamid.sensors.records import ProductInfo, SystemParameters

packets = st.builds(
    Packet,
    kind=st.sampled_from(list(PacketType)),
    payload=st.binary(max_size=256),
    address=st.integers(0, 0xFFFFFFFF),
)


def frame(text: str) -> bytes:
    """``"EF 01 FF ..."`` -> bytes."""
    return bytes.fromhex(text)


@given(packets)
def test_any_packet_round_trips(packet):
    wire = encode(packet)
    assert len(wire) == 11 + len(packet.payload)
    assert decode(wire) == packet
    assert decode(wire, packet.address) == packet


@given(packets, st.data())
def test_any_single_byte_corruption_is_detected(packet, data):
    wire = bytearray(encode(packet))
    i = data.draw(st.integers(0, len(wire) - 1), label="position")
    flip = data.draw(st.integers(1, 255), label="xor")
    wire[i] ^= flip
    # The checksum covers identifier, length and payload; a corrupted start code or length
    # breaks the framing; the address is checked against the one expected.
    with pytest.raises(SensorError):
        decode(bytes(wire), packet.address)


@given(st.integers(0, 0xFF), st.binary(max_size=300))
def test_checksum_is_the_byte_sum_of_identifier_length_and_payload_mod_65536(kind, payload):
    length = len(payload) + 2
    assert checksum(kind, payload) == (kind + length // 256 + length % 256 + sum(payload)) % 65536


@pytest.mark.parametrize(("built", "expected"), [
    (command(Instruction.GEN_IMG), "EF 01 FF FF FF FF 01 00 03 01 00 05"),
    (command(Instruction.UP_IMAGE), "EF 01 FF FF FF FF 01 00 03 0A 00 0E"),
    (command(Instruction.READ_SYS_PARA), "EF 01 FF FF FF FF 01 00 03 0F 00 13"),
    (command(Instruction.VFY_PWD, bytes(4)), "EF 01 FF FF FF FF 01 00 07 13 00 00 00 00 00 1B"),
    (command(Instruction.HANDSHAKE), "EF 01 FF FF FF FF 01 00 03 40 00 44"),
    (command(Instruction.READ_PROD_INFO), "EF 01 FF FF FF FF 01 00 03 3C 00 40"),
    (command(Instruction.SOFT_RESET), "EF 01 FF FF FF FF 01 00 03 3D 00 41"),
    # Breathing, speed 0x80, blue, for ever.
    (command(Instruction.AURA_LED_CONFIG, bytes((1, 0x80, 2, 0))),
     "EF 01 FF FF FF FF 01 00 07 35 01 80 02 00 00 C0"),
    # Baud register 4 = 12 (115200).
    (command(Instruction.SET_SYS_PARA, bytes((4, 12))), "EF 01 FF FF FF FF 01 00 05 0E 04 0C 00 24"),
    (command(Instruction.GEN_IMG, address=0x12345678), "EF 01 12 34 56 78 01 00 03 01 00 05"),
])
def test_command_bytes_match_hand_written_frames(built, expected):
    assert built == frame(expected)


def test_acknowledge_frames_decode():
    ok = decode(frame("EF 01 FF FF FF FF 07 00 03 00 00 0A"))
    assert (ok.kind, ok.payload, ok.address) == (PacketType.ACK, b"\x00", DEFAULT_ADDRESS)
    assert ok.code == 0
    no_finger = decode(frame("EF 01 FF FF FF FF 07 00 03 02 00 0C"))
    assert no_finger.code == 0x02


@pytest.mark.parametrize(("bad", "words"), [
    ("EF 02 FF FF FF FF 07 00 03 00 00 0A", "EF 01"),
    ("EF 01 FF FF FF FF 07 00 03 00 00 0B", "checksum"),
    ("EF 01 FF FF FF FF 07 00 04 00 00 0A", "length field"),
    ("EF 01 FF FF FF FF 07 00 01 00 00 0A", "below the 2 checksum bytes"),
    ("EF 01 FF FF", "cut short"),
])
def test_broken_frames_are_refused_with_a_reason(bad, words):
    with pytest.raises(SensorError, match=words) as info:
        decode(frame(bad))
    assert info.value.code is None


def test_another_modules_address_is_refused():
    wire = encode(Packet(PacketType.ACK, b"\x00", 0x00000001))
    with pytest.raises(SensorError, match="address 0x00000001, expected 0xFFFFFFFF"):
        decode(wire, DEFAULT_ADDRESS)


def test_every_confirmation_code_has_a_sentence():
    assert describe(0x02) == "no finger on the sensor"
    assert describe(0x13) == "wrong password"
    assert "0x77" in describe(0x77)
    assert all(isinstance(v, str) and v for v in CONFIRMATION.values())


def test_pixels_are_packed_two_a_byte_high_nibble_first():
    nibbles = np.array([[1, 15, 0, 7]], dtype=np.uint8)
    assert pack_nibbles(nibbles) == b"\x1f\x07"
    assert unpack_pixels(b"\x1f\x07", 4, 1).tolist() == [[17, 255, 0, 119]]


@settings(max_examples=50)
@given(st.integers(1, 12), st.integers(1, 12), st.data())
def test_unpacked_pixels_are_the_levels_of_quantise(half_w, h, data):
    w = 2 * half_w
    nibbles = np.array(data.draw(st.lists(st.integers(0, 15), min_size=w * h, max_size=w * h)),
                       dtype=np.uint8).reshape(h, w)
    pixels = unpack_pixels(pack_nibbles(nibbles), w, h)
    assert pixels.shape == (h, w) and pixels.dtype == np.uint8
    assert np.array_equal(pixels, nibbles * 17)
    assert np.array_equal(quantise(pixels / 255.0, 16), pixels)


def test_packing_refuses_what_does_not_fit():
    with pytest.raises(SensorError, match="two per byte"):
        pack_nibbles(np.zeros(3, dtype=np.uint8))
    with pytest.raises(SensorError, match="4-bit"):
        pack_nibbles(np.array([16, 0]))
    with pytest.raises(SensorError, match="not 4 x 4"):
        unpack_pixels(bytes(7), 4, 4)


def test_system_parameters_parse_in_plain_units():
    raw = frame("000C 0000 00C8 0003 FFFFFFFF 0002 0006")
    p = SystemParameters.from_payload(raw)
    assert (p.library_size, p.security_level, p.address) == (200, 3, 0xFFFFFFFF)
    assert (p.packet_size, p.baudrate) == (128, 57600)
    assert p.password_verified and p.image_ready and not p.busy
    with pytest.raises(SensorError, match="packet size code 7"):
        SystemParameters.from_payload(raw[:12] + b"\x00\x07" + raw[14:])
    with pytest.raises(SensorError, match="cut short"):
        SystemParameters.from_payload(raw[:10])


def test_product_info_parses_the_image_size():
    raw = (b"R503".ljust(16, b"\0") + b"B001" + b"SN000042" + bytes((2, 1))
           + b"FPC".ljust(8, b"\0") + frame("00C0 00C0 0600 00C8"))
    info = ProductInfo.from_payload(raw)
    assert (info.model, info.batch, info.serial, info.sensor_type) == ("R503", "B001", "SN000042", "FPC")
    assert (info.width, info.height, info.template_size, info.database_size) == (192, 192, 1536, 200)
    assert info.hardware_version == (2, 1)
    with pytest.raises(SensorError, match="0 x 192"):
        ProductInfo.from_payload(raw[:38] + b"\0\0" + raw[40:])
