"""A model as C for firmware: the model bytes, its ModelCard as constants, the C reference.

``write_c_export(card, model_bytes, out_dir, name)`` writes ``<name>_model.h`` and
``<name>_model.c`` (the model file as a 16-byte aligned const array; the card's preprocessing as
the ``siamid_prep_params`` the C reference runs, made by ``siamid.fixedpoint.IntegerParams`` from
the card, so header and Python share one definition; the card's values as #defines; the decision
thresholds per template size and rule) and copies the reference ``siamid_ref.h`` /
``siamid_ref.c`` beside them. ``write_test_vectors`` (``siamid.firmware.vectors``) writes what
``siamid_check.c`` checks the C against. docs/firmware.md shows how firmware uses them.
"""

from __future__ import annotations

import dataclasses
import re
import shutil
from pathlib import Path

import numpy as np

from .calibration import card_calibration
from .config import PreprocessConfig
from .errors import ConfigError, ModelError
from .firmware import CHECK_SOURCE, REFERENCE_SOURCES, source_dir
from .firmware.signatures import threshold_table
from .firmware.vectors import Decision, write_test_vectors
from .fixedpoint import IntegerParams
from .fusion import RULES
from .preprocess import Preprocessor
from .types import ModelCard

__all__ = ["Decision", "c_params_initializer", "export_c", "write_c_export", "write_test_vectors"]

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
# Bytes per line of the model array.
_ROW = 16
# Card values that go into the header as #defines (documentation for the firmware engineer; the
# C reference reads the integer ``siamid_prep_params``).
_CARD_DEFINES = (
    "target_dpi", "crop", "size", "block", "balance_border", "balance_low", "balance_high",
    "sharpen_amount", "contrast_quantile", "min_mean", "max_mean", "min_contrast",
    "min_sharpness", "ridge_std", "min_ridge_area", "min_center_ridge_area", "min_coherence",
)


def _c_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _c_double(value: float) -> str:
    text = repr(float(value))  # shortest text that reads back as the same double
    return text if any(c in text for c in ".e") else text + ".0"


def c_params_initializer(params: IntegerParams, indent: str = "    ") -> str:
    """``params`` as a C99 designated initializer of ``siamid_prep_params``."""
    lines = []
    for name, value in params.items():
        if isinstance(value, tuple):
            text = "{" + ", ".join(str(v) for v in value) + "}"
        else:
            text = str(value)
        lines.append(f"{indent}.{name} = {text},")
    return "{\n" + "\n".join(lines) + "\n}"


def _card_config(card: ModelCard) -> PreprocessConfig:
    return Preprocessor.from_card(card, f"model {card.model_id}").config


def export_c(model: str | Path, out_dir: str | Path, name: str | None = None, *,
             allow_float_preprocessing: bool = False, with_check: bool = False) -> list[Path]:
    """``siamid export --format c``: the C files of a ``.tflite`` model written by
    ``siamid export --format tflite``, its card and int8 I/O read from the file's metadata.

    ``name`` (a C identifier) defaults to the file's model id made one. Returns the written
    paths (``write_c_export``'s). ModelError for a file without siamid's metadata or whose
    normalisation epsilon is not the C reference's.
    """
    from .firmware.signatures import NORM_EPS
    from .tflite import card_from_tflite, read_io

    model = Path(model)
    card = card_from_tflite(model)
    io = read_io(model)
    try:
        output, inp = io["output"], io["input"]
        scale, zero_point = float(output["scale"]), int(output["zero_point"])
        input_zero_point, epsilon = int(inp["zero_point"]), float(io["l2_epsilon"])
        host_normalises = bool(io["host_normalises"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"model {model}: malformed I/O metadata ({exc}); re-export it") from exc
    if not host_normalises or np.float32(epsilon) != np.float32(NORM_EPS):
        raise ModelError(f"model {model} normalises its output itself or with epsilon "
                         f"{epsilon}; the C reference normalises with {NORM_EPS}: re-export it "
                         "with `siamid export --format tflite`")
    if name is None:
        name = re.sub(r"\W", "_", card.model_id)
        name = name if _IDENTIFIER.match(name) else f"m_{name}"
    return write_c_export(card, model.read_bytes(), out_dir, name, output_scale=scale,
                          output_zero_point=zero_point, input_zero_point=input_zero_point,
                          allow_float_preprocessing=allow_float_preprocessing,
                          with_check=with_check)


def write_c_export(card: ModelCard, model_bytes: bytes, out_dir: str | Path,
                   name: str = "siamid", *, output_scale: float | None = None,
                   output_zero_point: int | None = None,
                   input_zero_point: int | None = None,
                   allow_float_preprocessing: bool = False,
                   with_check: bool = False) -> list[Path]:
    """Write ``<name>_model.h``, ``<name>_model.c`` and the C reference into ``out_dir``.

    ``model_bytes`` is the model file for the firmware's runtime (a ``.tflite``), stored as
    ``<name>_model_data``. ``output_scale`` / ``output_zero_point``: the quantisation of the
    model's int8 output (both or neither; without them the header says the output is float).
    ``input_zero_point``: the int8 input's zero point (scale 1/255; siamid's .tflite: -128),
    for ``siamid_input_int8``; None: the model takes the float network input.
    The card's preprocessing must be integer preprocessing (``[preprocess] integer = true``):
    that is what the model was trained on and what the C runs. A model trained on float
    preprocessing is refused unless ``allow_float_preprocessing`` (the firmware then feeds
    inputs a level or so from the training ones, see docs/firmware.md). ``with_check`` also
    copies ``siamid_check.c``. Returns the written paths.

    ConfigError for a bad ``name`` or quantisation, or preprocessing the integer stages cannot
    run; ModelError for empty model bytes or a float-trained model not allowed.
    """
    if not _IDENTIFIER.match(name):
        raise ConfigError(f"C export name must be a C identifier (letters, digits, _), "
                          f"got {name!r}")
    if not model_bytes:
        raise ModelError("no model bytes to export: pass the model file's contents")
    if (output_scale is None) != (output_zero_point is None):
        raise ConfigError("give both output_scale and output_zero_point (an int8 output), or "
                          "neither (a float output)")
    if output_scale is not None and not output_scale > 0.0:
        raise ConfigError(f"output_scale must be > 0, got {output_scale!r}")
    config = _card_config(card)
    if not config.integer and not allow_float_preprocessing:
        raise ModelError(
            f"model {card.model_id} was trained on float preprocessing, the C reference runs the "
            "integer stages (siamid.fixedpoint): the firmware would feed it inputs that differ "
            "from training's by a level or so. Retrain with [preprocess] integer = true, or "
            "accept the difference (allow_float_preprocessing=True; docs/firmware.md)")
    try:
        params = IntegerParams.from_config(dataclasses.replace(config, integer=True))
    except ConfigError as exc:
        raise ConfigError(f"model {card.model_id}'s preprocessing has no integer form: "
                          f"{exc}") from exc
    calibration = card_calibration(card)
    tables = {rule: threshold_table(calibration, rule) for rule in RULES}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    header = out / f"{name}_model.h"
    source = out / f"{name}_model.c"
    header.write_text(_header(card, config, name, len(model_bytes), tables, output_scale,
                              output_zero_point, input_zero_point))
    source.write_text(_source(name, params, tables, model_bytes))
    written = [header, source]
    for file in REFERENCE_SOURCES + ((CHECK_SOURCE,) if with_check else ()):
        written.append(Path(shutil.copyfile(source_dir() / file, out / file)))
    return written


def _header(card: ModelCard, config: PreprocessConfig, name: str, size: int,
            tables: dict[str, tuple[float, ...]], scale: float | None,
            zero_point: int | None, input_zero_point: int | None) -> str:
    up = name.upper()
    guard = f"{up}_MODEL_H"
    define = lambda key, value: f"#define {up}_{key} {value}"  # noqa: E731
    lines = [
        f"/* {name}_model.h: generated by siamid.cexport from the ModelCard of model",
        f" * {card.model_id}; do not edit. See docs/firmware.md. */",
        f"#ifndef {guard}",
        f"#define {guard}",
        "",
        '#include "siamid_ref.h"',
        "",
        "/* The model */",
        define("MODEL_ID", _c_string(card.model_id)),
        define("ARCHITECTURE", _c_string(card.architecture)),
        define("QUANTIZATION", _c_string(card.quantization)),
        define("MODEL_SIZE", f"{size}u"),
        f"extern const unsigned char {name}_model_data[{up}_MODEL_SIZE]; /* 16-byte aligned */",
        "",
        "/* Input: one 8-bit gray image at TARGET_DPI; preprocessing by siamid_preprocess with",
        f" * {name}_prep_params, into a work buffer of WORK_BYTES and an INPUT_SIZE^2 network input. */",
        define("INPUT_CHANNELS", card.channels),
        define("INPUT_SIZE", card.input_size[0]),
        define("WORK_BYTES", f"(2u * {config.crop}u * {config.crop}u)"),
        define("PREPROCESS_EXACT", int(config.integer))
        + "  /* 1: the model was trained on exactly these inputs */",
        define("INPUT_QUANTIZED", int(input_zero_point is not None))
        + "  /* 1: feed siamid_input_int8(input, n, INPUT_ZERO_POINT, ...) */",
        *([define("INPUT_ZERO_POINT", int(input_zero_point))]
          if input_zero_point is not None else []),
        f"extern const siamid_prep_params {name}_prep_params;",
        "",
        "/* The card's preprocessing values (fractions of full scale; the code reads the Q16",
        " * integers of the params above) */",
    ]
    for key in _CARD_DEFINES:
        value = getattr(config, key)
        lines.append(define(key.upper(), _c_double(value) if isinstance(value, float) else value))
    lines.append(define("SHARPEN_SHIFT", 4))
    lines += [
        "",
        "/* Output: EMBEDDING_SIZE values; an int8 output is dequantised with OUTPUT_SCALE and",
        " * OUTPUT_ZERO_POINT by siamid_signature_int8, a float one normalised by",
        " * siamid_signature_float. */",
        define("EMBEDDING_SIZE", card.embedding_size),
        define("OUTPUT_QUANTIZED", int(scale is not None)),
    ]
    if scale is not None:
        lines += [define("OUTPUT_SCALE", _c_double(scale)),
                  define("OUTPUT_ZERO_POINT", int(zero_point))]
    lines += [
        "",
        "/* Decision: accept iff siamid_decide's distance < the threshold of the template's size",
        f" * and rule, from {name}_thresholds_<rule> (entry k - 1: k-signature templates). */",
        define("THRESHOLD", _c_double(card.threshold)),
        define("THRESHOLD_FMR", _c_double(card.threshold_fmr)),
    ]
    for rule, table in tables.items():
        lines += [define(f"THRESHOLDS_{rule.upper()}_COUNT", len(table)),
                  f"extern const double {name}_thresholds_{rule}"
                  f"[{up}_THRESHOLDS_{rule.upper()}_COUNT];"]
    lines += ["", f"#endif /* {guard} */", ""]
    return "\n".join(lines)


def _source(name: str, params: IntegerParams, tables: dict[str, tuple[float, ...]],
            model: bytes) -> str:
    lines = [
        f"/* {name}_model.c: generated by siamid.cexport; do not edit. */",
        f'#include "{name}_model.h"',
        "",
        "#if defined(__GNUC__) || defined(__clang__)",
        "#define SIAMID_ALIGNED16 __attribute__((aligned(16)))",
        "#else",
        "#define SIAMID_ALIGNED16 /* align the model to 16 bytes by your compiler's means */",
        "#endif",
        "",
        f"const siamid_prep_params {name}_prep_params = {c_params_initializer(params)};",
        "",
    ]
    for rule, table in tables.items():
        lines.append(f"const double {name}_thresholds_{rule}[{name.upper()}_THRESHOLDS_"
                     f"{rule.upper()}_COUNT] = {{{', '.join(_c_double(t) for t in table)}}};")
    lines += ["", f"const unsigned char {name}_model_data[{name.upper()}_MODEL_SIZE] "
              "SIAMID_ALIGNED16 = {"]
    for start in range(0, len(model), _ROW):
        chunk = model[start : start + _ROW]
        lines.append("    " + ", ".join(f"0x{b:02x}" for b in chunk) + ",")
    lines += ["};", ""]
    return "\n".join(lines)
