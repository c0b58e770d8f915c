"""siamid profile: what a microcontroller needs for an exported model (siamid.profile)."""

import json
from pathlib import Path

import typer
from rich.table import Table
from rich.text import Text

from .common import console


def _shape(shape) -> str:
    return "x".join(map(str, shape)) if shape is not None else "?"


def _tensor(info) -> str:
    text = f"{_shape(info.shape)} {info.dtype}"
    q = info.quantization
    if q is not None:
        text += f", quantized to {q.dtype}: scale {q.scale:.9g}, zero point {q.zero_point}"
    return text


def _bytes(n: int) -> str:
    return f"{n:,} bytes ({n / 1024:.1f} KiB)"


def command(
    model: Path = typer.Argument(..., help="Exported model: .onnx, .int8.onnx or .tflite."),
    clock_mhz: float = typer.Option(78.0, "--clock-mhz", min=1.0,
                                    help="MCU clock for the latency estimate (78: EFR32MG24)."),
    json_out: bool = typer.Option(False, "--json", help="Print the profile as JSON."),
) -> None:
    """What a model costs on a microcontroller (before flashing).

    Input and output tensors (with their int8 quantization), weights and their bytes as stored,
    MACs per layer, the operators used, and an estimated latency on a Cortex-M33 class MCU; for
    a .tflite file also TFLite Micro's tensor arena and whether its kernels cover each operator.
    """
    from ..profile import LATENCY_METHOD, profile_model

    profile = profile_model(model)
    latency = profile.latency_ms(clock_mhz)
    if json_out:
        console.print_json(json.dumps(profile.to_dict(clock_mhz)))
        return

    summary = Table(title=Text(str(model)), show_header=False)
    stored = ", ".join(f"{n:,} B {dtype}" for dtype, n in profile.parameter_bytes_by_dtype.items())
    weights = f"{profile.parameters:,} values, {_bytes(profile.parameter_bytes)} as stored ({stored})"
    flash = f"{_bytes(profile.file_bytes)}, of which {_bytes(profile.metadata_bytes)} metadata (ModelCard)"
    rows = [
        ("model id", profile.model_id), ("architecture", profile.architecture),
        ("format", f"{profile.format} ({profile.quantization})"),
        ("input", f"{profile.input.name}: {_tensor(profile.input)}"),
        ("output", f"{profile.output.name}: {_tensor(profile.output)}"),
    ]
    if profile.last_quantized is not None:
        q = profile.last_quantized
        rows.append(("last int tensor",
                     f"{q.tensor}: {q.dtype}, scale {q.scale:.9g}, zero point {q.zero_point}"))
        rows.append(("float after it", ", ".join(profile.output_tail)))
    rows += [
        ("weights", weights), ("file (flash)", flash),
        ("MACs", f"{profile.macs:,} per signature (batch 1, {_shape(profile.input.shape)} input)"),
        ("operators", ", ".join(f"{op} x{n}" for op, n in profile.operators.items())),
        ("latency estimate", f"{latency:,.1f} ms at {clock_mhz:g} MHz (Cortex-M33 class)"),
    ]
    if profile.operator_support:
        missing = [op for op, ok in profile.operator_support.items() if not ok]
        rows.append(("TFLite Micro kernels", "all operators supported" if not missing else
                     "NOT supported: " + ", ".join(missing)))
    if profile.arena_bytes is not None:
        rows.append(("TFLite Micro arena", f"{_bytes(profile.arena_bytes)} (measured by its "
                     "interpreter; RAM for activations and kernel state)"))
    for key, value in rows:  # Text, never markup: tensor names and paths print as they are
        summary.add_row(Text(key), Text(value))
    console.print(summary)

    layers = Table(title=Text("layers (Q/DQ nodes left out)" if "QuantizeLinear" in profile.operators
                              else "layers"))
    for name, justify in (("layer", "left"), ("op", "left"), ("output", "left"),
                          ("MACs", "right"), ("weights", "right")):
        layers.add_column(name, justify=justify)
    for layer in profile.layers:
        layers.add_row(Text(layer.name), Text(layer.op_type), Text(_shape(layer.output_shape)),
                       f"{layer.macs:,}" if layer.macs else "-",
                       f"{layer.weights:,}" if layer.weights else "-")
    layers.add_row(Text("total"), "", "", f"{profile.macs:,}", f"{profile.parameters:,}")
    console.print(layers)
    for note in profile.notes:
        console.print(Text(f"note: {note}"))
    console.print(Text(f"latency method: {LATENCY_METHOD}."))
