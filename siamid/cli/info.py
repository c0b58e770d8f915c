"""siamid info: print the ModelCard inside an exported model."""

import json
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from .common import console, percent


def command(
    model: Optional[Path] = typer.Argument(None, help="Exported .onnx model (default: the shipped one)."),
    json_out: bool = typer.Option(False, "--json", help="Print the card as JSON."),
) -> None:
    """Show what a model is: architecture, signature size, preprocessing, threshold, training data."""
    from ..exporting import read_card
    from ..runtime import default_model_path

    path = model or default_model_path()
    card = read_card(path)
    if json_out:
        data = json.loads(card.to_json())
        data["calibration_impostor"] = f"{len(card.calibration_impostor)} values"
        console.print_json(json.dumps(data))
        return
    table = Table(title=str(path), show_header=False)
    rows = [
        ("model id", card.model_id), ("architecture", card.architecture),
        ("signature", f"{card.embedding_size} dimensions ({card.embedding_size} bytes as int8)"),
        ("input", f"{card.input_size[0]}x{card.input_size[1]}x{card.channels}"),
        ("quantization", card.quantization),
        ("threshold", f"{card.threshold:.4f} (distance; chosen at FMR {percent(card.threshold_fmr)})"),
        ("template thresholds", ", ".join(f"{k} images: {v:.4f}" for k, v in
                                          card.template_thresholds.items()) or "none (older export)"),
        ("trained on", card.trained_on), ("versions", ", ".join(f"{k} {v}" for k, v in card.versions.items())),
    ]
    for key, value in card.metrics.items():
        rows.append((f"metric {key}", str(value)))
    rows.append(("preprocess", ", ".join(f"{k}={v}" for k, v in card.preprocess.items())))
    for key, value in rows:
        table.add_row(key, value)
    console.print(table)
