"""The C reference (siamid/firmware) against Python: compiled with gcc -std=c99 -pedantic, fed
test vectors written by Python, bit-identical network inputs, scores and verdicts, signatures,
distances and decisions; and the files write_c_export generates for a model."""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from siamid.adaptation import decide as runtime_decide
from siamid.calibration import card_calibration
from siamid.cexport import Decision, write_c_export, write_test_vectors
from siamid.config import PreprocessConfig
from siamid.errors import ConfigError, ModelError
from siamid.firmware import CHECK_SOURCE, REFERENCE_SOURCES, source_dir
from siamid.firmware.signatures import (
    decide,
    signature_from_int8,
    template_distance,
    threshold_table,
)
from siamid.fixedpoint import (
    FRAC_BITS,
    MAX_BLOCK,
    MAX_CROP,
    MAX_TAPS,
    VERDICTS,
    IntegerParams,
    IntegerScores,
)
from siamid.fusion import template_distance as runtime_distance
from siamid.types import Template

CFLAGS = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-O1"]
CFG = PreprocessConfig()


def compiler() -> str:
    found = shutil.which(os.environ.get("CC", "gcc")) or shutil.which("cc")
    if not found:
        pytest.skip("no C compiler (gcc or cc, or $CC) found: the C reference is not checked")
    return found


def compile_c(out: Path, sources: list[Path], include: Path) -> Path:
    result = subprocess.run([compiler(), *CFLAGS, f"-I{include}", *map(str, sources), "-lm",
                             "-o", str(out)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture(scope="module")
def check(tmp_path_factory) -> Path:
    """The compiled siamid_check harness."""
    folder = tmp_path_factory.mktemp("cref")
    src = source_dir()
    return compile_c(folder / "siamid_check", [src / CHECK_SOURCE, src / "siamid_ref.c"], src)


def run_check(check: Path, vectors: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(check), str(vectors)], capture_output=True, text=True,
                          timeout=120)


def assert_all_pass(check: Path, vectors: Path) -> str:
    result = run_check(check, vectors)
    assert result.returncode == 0, result.stdout + result.stderr
    assert " 0 mismatches" in result.stdout
    return result.stdout


@pytest.fixture(scope="module")
def synth_prints() -> list[np.ndarray]:
    from siamid.synth import generate_finger

    images = [im for seed in (0, 1, 2) for im in generate_finger(seed, 2, "r503")[1]]
    # harsh touches: partial, smudged prints the verdict refuses
    images += generate_finger(3, 3, "r503", harshness=1.0)[1]
    return images


def edge_images() -> list[tuple[str, np.ndarray]]:
    """Images that reach the corners of the definitions: blank, dark, noise, a finger in a
    corner (window outside the image, negative origin), odd sizes, saturated levels."""
    rng = np.random.default_rng(7)
    corner = np.full((250, 230), 235, np.uint8)
    corner[:90, :80] = rng.integers(0, 120, (90, 80))
    odd = rng.integers(0, 256, (193, 301)).astype(np.uint8)
    odd[50:150, 60:200] = (np.indices((100, 140)).sum(axis=0) % 9 * 28).astype(np.uint8)
    return [
        ("blank", np.full((192, 192), 250, np.uint8)),
        ("black", np.zeros((192, 192), np.uint8)),
        ("white", np.full((192, 192), 255, np.uint8)),
        ("noise", rng.integers(0, 256, (192, 192)).astype(np.uint8)),
        ("corner", corner),
        ("odd", odd),
        ("small", rng.integers(0, 256, (70, 90)).astype(np.uint8)),
    ]


# Configurations the integer stages run: each changes a different stage.
CONFIGS = {
    "default": CFG,
    "no_balance": replace(CFG, balance=False),
    "centred": replace(CFG, center_on_foreground=False),
    "sharpen3_size80": replace(CFG, sharpen_amount=3, size=80),  # 192 -> 80: unequal cells
    "no_sharpen_size64": replace(CFG, sharpen_amount=0, size=64),
    "block8_sigma05": replace(CFG, block=8, quality_sigma=0.5, ridge_std=0.2),
    "crop160_size160": replace(CFG, crop=160, size=160, balance_border=0),
    "block32_sigma0": replace(CFG, block=32, quality_sigma=0.0, pad_quantile=0.5),
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_c_preprocessing_is_bit_identical_on_synthetic_prints(check, synth_prints, tmp_path,
                                                              name) -> None:
    cfg = CONFIGS[name]
    images = [(f"synth{i}", im) for i, im in enumerate(synth_prints)] + edge_images()
    vectors = write_test_vectors(tmp_path / "v.txt", cfg, images,
                                 sharpen_images=[("step", images[0][1])])
    out = assert_all_pass(check, vectors)
    assert f"passed {len(images) + 1} of {len(images) + 1}" in out


def test_vectors_cover_accepted_and_rejected_prints(synth_prints) -> None:
    from siamid.fixedpoint import prepare

    params = IntegerParams.from_config(replace(CFG, integer=True))
    verdicts = {VERDICTS[prepare(im, params).scores.verdict]
                for im in synth_prints + [im for _, im in edge_images()]}
    assert "ok" in verdicts and len(verdicts) >= 4, verdicts


def test_the_check_fails_when_the_c_differs(check, synth_prints, tmp_path) -> None:
    vectors = write_test_vectors(tmp_path / "v.txt", CFG, [("a", synth_prints[0])])
    tokens = vectors.read_text().split("\n")
    # the network input line follows the expect line: change its first byte
    at = next(i for i, line in enumerate(tokens) if line.startswith("expect")) + 1
    first, rest = tokens[at].split(" ", 1)
    tokens[at] = f"{(int(first) + 1) % 256} {rest}"
    bad = tmp_path / "bad.txt"
    bad.write_text("\n".join(tokens))
    result = run_check(check, bad)
    assert result.returncode == 1 and "FAIL prep a: network input byte 0" in result.stdout


def test_sharpen_writes_a_separate_buffer_checked_on_a_known_pattern(check, tmp_path) -> None:
    from test_fixedpoint import in_place_sharpen, step_pattern

    from siamid.fixedpoint import sharpen
    from siamid.preprocess import sharpen_kernel

    kernel, shift = sharpen_kernel(1)
    img = step_pattern()
    # the pattern tells the two apart: an in-place C would fail this record
    assert not np.array_equal(in_place_sharpen(img, kernel, shift), sharpen(img, kernel, shift))
    vectors = write_test_vectors(tmp_path / "v.txt", CFG, sharpen_images=[("step", img)])
    assert_all_pass(check, vectors)  # the harness also checks that an in-place call is refused
    # and the record fails against the in-place result
    text = vectors.read_text()
    want = " ".join(str(v) for v in sharpen(img, kernel, shift).ravel())
    wrong = " ".join(str(v) for v in in_place_sharpen(img, kernel, shift).ravel())
    bad = tmp_path / "inplace.txt"
    bad.write_text(text.replace(f"expect {want}", f"expect {wrong}"))
    assert run_check(check, bad).returncode == 1


REAL_SETS = [("fvc2000/DB1_B", "*.tif"), ("upek", "*.png"), ("r30x_captures", "**/*.png")]


@pytest.mark.parametrize("folder, pattern", REAL_SETS)
def test_c_preprocessing_is_bit_identical_on_real_prints(check, shared_data, tmp_path,
                                                         folder, pattern) -> None:
    from siamid.dataset import load_image

    paths = sorted((shared_data / folder).glob(pattern))[:6]
    if not paths:
        pytest.skip(f"no {pattern} images in {shared_data / folder}")
    images = [(f"{i}", load_image(p)) for i, p in enumerate(paths)]
    vectors = write_test_vectors(tmp_path / "v.txt", CFG, images)
    assert_all_pass(check, vectors)


# ----------------------------------------------------------------------------- decisions


@pytest.fixture(scope="module")
def tiny_card():
    from siamid.runtime import default_model_path, read_card

    return read_card(default_model_path().with_name("tiny.onnx"))


def int8_outputs(rng, identities: int, takes: int, dim: int, spread: float):
    """int8 model outputs: per identity a centre, per take the centre plus noise."""
    centres = rng.normal(0, 40, (identities, dim))
    noise = rng.normal(0, spread, (identities, takes, dim))
    return np.clip(np.round(centres[:, None, :] + noise + 3), -128, 127).astype(np.int8)


def test_c_signatures_distances_and_decisions_are_identical(check, tiny_card, tmp_path) -> None:
    rng = np.random.default_rng(11)
    dim, scale, zero_point = tiny_card.embedding_size, 0.0230917744, 3
    q = int8_outputs(rng, 6, 6, dim, spread=7.0)
    sigs = np.array([[signature_from_int8(t, scale, zero_point) for t in ident] for ident in q])
    calibration = card_calibration(tiny_card)
    tables = {rule: threshold_table(calibration, rule) for rule in ("min", "mean")}
    decisions, expected = [], []
    for a in range(6):
        for b in range(6):
            for k in (1, 2, 3, 5):
                for rule in ("min", "mean"):
                    enrolled, probe = sigs[a, :k], sigs[b, 5]
                    decisions.append((f"t{a}p{b}k{k}{rule}",
                                      Decision(probe, enrolled, rule, tables[rule])))
                    expected.append((a, b, k, rule, enrolled, probe))
    # a mean template that cancels out: the C reports SIAMID_E_TEMPLATE
    opposite = np.stack([sigs[0, 0], -sigs[0, 0]])
    decisions.append(("cancel", Decision(sigs[1, 0], opposite, "mean", tables["mean"])))
    outputs = [(f"q{a}_{t}", q[a, t]) for a in range(6) for t in range(6)]
    outputs.append(("zero", np.full(dim, zero_point, np.int8)))  # all at the zero point
    vectors = write_test_vectors(tmp_path / "v.txt", CFG, outputs=outputs, output_scale=scale,
                                 output_zero_point=zero_point, decisions=decisions)
    assert_all_pass(check, vectors)

    # The mirror decides as the runtime does, at the runtime's thresholds.
    accepted = 0
    for (a, b, k, rule, enrolled, probe) in expected:
        ours, distance = decide(probe, enrolled, rule, tables[rule])
        template = Template(f"s{a}", tiny_card.model_id, enrolled)
        theirs = runtime_decide(template, probe, calibration, rule)
        assert ours == theirs.accepted and distance == pytest.approx(theirs.distance, abs=1e-12)
        assert abs(distance - theirs.threshold) > 1e-9  # no decision rests on the last bit
        assert distance == pytest.approx(runtime_distance(probe, enrolled, rule), abs=1e-12)
        accepted += ours
    assert 0 < accepted < len(expected)  # both outcomes are exercised


def test_signature_matches_numpy_normalisation() -> None:
    q = np.array([10, -20, 30, 0, 5], np.int8)
    sig = signature_from_int8(q, 0.5, 2)
    v = 0.5 * (q.astype(np.float64) - 2)
    np.testing.assert_allclose(sig, v / np.linalg.norm(v), rtol=1e-7)
    assert sig.dtype == np.float32
    assert not signature_from_int8(np.full(5, 2, np.int8), 0.5, 2).any()  # no direction: zeros


def test_mirror_distance_matches_runtime_on_float_signatures() -> None:
    rng = np.random.default_rng(2)
    sigs = rng.normal(size=(4, 32)).astype(np.float32)
    sigs /= np.linalg.norm(sigs, axis=1, keepdims=True)
    for rule in ("min", "mean"):
        assert template_distance(sigs[0], sigs[1:], rule) == pytest.approx(
            runtime_distance(sigs[0], sigs[1:], rule), abs=1e-12)


# ----------------------------------------------------------------------------- the C sources


def test_c_header_constants_and_struct_match_python() -> None:
    header = (source_dir() / "siamid_ref.h").read_text()

    def define(name: str) -> int:
        return int(re.search(rf"#define {name} (\d+)", header).group(1))

    assert define("SIAMID_FRAC_BITS") == FRAC_BITS and define("SIAMID_MAX_TAPS") == MAX_TAPS
    assert define("SIAMID_MAX_CROP") == MAX_CROP and define("SIAMID_MAX_BLOCK") == MAX_BLOCK
    verdicts = re.findall(r"SIAMID_([A-Z_]+) = (\d+),?\n", header.split("enum siamid_verdict")[1]
                          .split("};")[0])
    assert [(name.lower(), int(v)) for name, v in verdicts] == [
        (v, k) for k, v in enumerate(VERDICTS)]

    def struct_fields(name: str) -> list[str]:
        body = header.split("typedef struct {")[
            ["siamid_prep_params", "siamid_quality"].index(name) + 1].split("}")[0]
        body = re.sub(r"/\*.*?\*/", "", body, flags=re.S)
        return re.findall(r"(\w+)(?:\[[^\]]*\])?\s*[,;]", body)

    assert struct_fields("siamid_prep_params") == [f.name for f in
                                                   dataclasses.fields(IntegerParams)]
    assert struct_fields("siamid_quality") == [f.name for f in dataclasses.fields(IntegerScores)]


def test_the_reference_uses_no_malloc_and_no_float_in_preprocessing() -> None:
    source = (source_dir() / "siamid_ref.c").read_text()
    code = re.sub(r"/\*.*?\*/", "", source, flags=re.S)
    assert not re.search(r"\b(malloc|calloc|realloc|free)\s*\(", code)
    # the preprocessing part: everything before the signature section's banner
    preprocessing = re.sub(r"/\*.*?\*/", "", source.split("signatures and decisions")[0],
                           flags=re.S)
    assert "siamid_preprocess" in preprocessing
    assert not re.search(r"\b(float|double)\b", preprocessing)


# ----------------------------------------------------------------------------- write_c_export


MAIN = r"""
#include <stdint.h>
#include <stdio.h>
#include "NAME_model.h"

int main(void)
{
    const int32_t *v = (const int32_t *)&NAME_prep_params;
    size_t i;
    printf("aligned %d\n", (int)((uintptr_t)NAME_model_data % 16u == 0u));
    printf("size %u first %u last %u\n", (unsigned)UP_MODEL_SIZE, NAME_model_data[0],
           NAME_model_data[UP_MODEL_SIZE - 1]);
    printf("params");
    for (i = 0; i < sizeof NAME_prep_params / sizeof(int32_t); ++i) {
        printf(" %ld", (long)v[i]);
    }
    printf("\nmin");
    for (i = 0; i < UP_THRESHOLDS_MIN_COUNT; ++i) {
        printf(" %a", NAME_thresholds_min[i]);
    }
    printf("\nmean");
    for (i = 0; i < UP_THRESHOLDS_MEAN_COUNT; ++i) {
        printf(" %a", NAME_thresholds_mean[i]);
    }
    printf("\nid %s emb %d input %d work %u exact %d quant %d\n", UP_MODEL_ID,
           UP_EMBEDDING_SIZE, UP_INPUT_SIZE, (unsigned)UP_WORK_BYTES, UP_PREPROCESS_EXACT,
           UP_OUTPUT_QUANTIZED);
    return 0;
}
"""


def integer_card(card):
    return card.with_changes(preprocess={**card.preprocess, "integer": True})


def test_write_c_export_compiles_and_carries_the_card(tiny_card, tmp_path) -> None:
    card = integer_card(tiny_card)
    model = bytes(range(256)) * 3 + b"\x07"
    written = write_c_export(card, model, tmp_path / "out", "fp", output_scale=0.0230917744,
                             output_zero_point=112)
    assert [p.name for p in written] == ["fp_model.h", "fp_model.c", *REFERENCE_SOURCES]
    out = tmp_path / "out"
    (out / "main.c").write_text(MAIN.replace("NAME", "fp").replace("UP", "FP"))
    binary = compile_c(tmp_path / "main", [out / "main.c", out / "fp_model.c",
                                           out / "siamid_ref.c"], out)
    lines = subprocess.run([str(binary)], capture_output=True, text=True,
                           check=True).stdout.splitlines()
    assert lines[0] == "aligned 1"
    assert lines[1] == f"size {len(model)} first 0 last 7"
    params = IntegerParams.from_config(replace(CFG, **card.preprocess))
    flat = [v for _, value in params.items()
            for v in (value if isinstance(value, tuple) else (value,))]
    assert lines[2] == "params " + " ".join(map(str, flat))
    calibration = card_calibration(card)
    for line, rule in zip(lines[3:5], ("min", "mean")):
        values = [float.fromhex(t) for t in line.split()[1:]]
        assert values == list(threshold_table(calibration, rule))
        assert values[0] == card.threshold
    assert lines[5] == (f"id {card.model_id} emb {card.embedding_size} input 96 "
                        f"work {2 * 192 * 192} exact 1 quant 1")
    header = (out / "fp_model.h").read_text()
    assert "#define FP_BALANCE_LOW 0.02" in header and "#define FP_OUTPUT_ZERO_POINT 112" in header
    assert "#define FP_MIN_COHERENCE 0.25" in header and "#define FP_SHARPEN_AMOUNT 1" in header


def test_write_c_export_refuses_what_firmware_cannot_match(tiny_card, tmp_path) -> None:
    with pytest.raises(ModelError, match="float preprocessing"):
        write_c_export(tiny_card, b"x", tmp_path, "m")
    files = write_c_export(tiny_card, b"x", tmp_path, "m", allow_float_preprocessing=True,
                           with_check=True)
    assert "#define M_PREPROCESS_EXACT 0" in files[0].read_text()
    assert files[-1].name == CHECK_SOURCE and "M_OUTPUT_QUANTIZED 0" in files[0].read_text()
    card = integer_card(tiny_card)
    with pytest.raises(ConfigError, match="C identifier"):
        write_c_export(card, b"x", tmp_path, "my-model")
    with pytest.raises(ModelError, match="no model bytes"):
        write_c_export(card, b"", tmp_path, "m")
    with pytest.raises(ConfigError, match="both"):
        write_c_export(card, b"x", tmp_path, "m", output_scale=0.1)
    core = tiny_card.with_changes(preprocess={**tiny_card.preprocess, "center_on_core": True})
    with pytest.raises(ConfigError, match="no integer form.*center_on_core"):
        write_c_export(core, b"x", tmp_path, "m", allow_float_preprocessing=True)


def test_export_c_reads_a_tflite_file(tmp_path) -> None:
    pytest.importorskip("onnx")
    try:
        from siamid.tflite import export_tflite
        from siamid.runtime import default_model_path

        tflite = export_tflite(default_model_path().with_name("tiny.int8.onnx"),
                               tmp_path / "tiny.tflite")
    except ConfigError as exc:  # the schema module of the mcu extra is missing
        pytest.skip(str(exc))
    from siamid.cexport import export_c

    with pytest.raises(ModelError, match="float preprocessing"):
        export_c(tflite, tmp_path / "c")
    written = export_c(tflite, tmp_path / "c", allow_float_preprocessing=True)
    header = written[0].read_text()
    assert written[0].name == "tiny_b9b51073bf03_int8_model.h"
    assert "INPUT_ZERO_POINT -128" in header and "OUTPUT_ZERO_POINT -16" in header
    assert f"MODEL_SIZE {tflite.stat().st_size}u" in header
    main = tmp_path / "c" / "main.c"
    main.write_text('#include "tiny_b9b51073bf03_int8_model.h"\nint main(void) { '
                    'return tiny_b9b51073bf03_int8_model_data[4] == \'T\' ? 0 : 1; }\n')
    binary = compile_c(tmp_path / "m", [main, written[1], tmp_path / "c" / "siamid_ref.c"],
                       tmp_path / "c")
    assert subprocess.run([str(binary)]).returncode == 0  # "TFL3" at offset 4


def test_a_crop_smaller_than_a_block_has_no_ridge_area(check, tmp_path) -> None:
    cfg = replace(CFG, crop=12, size=12, block=16, balance_border=0)
    image = np.random.default_rng(4).integers(0, 256, (80, 80)).astype(np.uint8)
    assert not integer_preprocessor(cfg).process(image, 500).quality.ok
    assert_all_pass(check, write_test_vectors(tmp_path / "v.txt", cfg, [("tiny", image)]))


def integer_preprocessor(cfg: PreprocessConfig):
    from siamid.preprocess import Preprocessor

    return Preprocessor(replace(cfg, integer=True))
