"""siamid info: print the ModelCard inside an exported model."""

import json
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table
from rich.text import Text

from .common import console


def command(
    model: Optional[Path] = typer.Argument(None, help="Exported .onnx or .tflite model (default: the shipped one)."),
    json_out: bool = typer.Option(False, "--json", help="Print the card as JSON."),
) -> None:
    """Show what a model is: architecture, signature size, preprocessing, threshold, training data."""
    from ..calibration import card_calibration
    from ..runtime import default_model_path, read_card  # onnxruntime only: no training stack
    from .export import describe_thresholds

    path = model or default_model_path()
    card = read_card(path)
    if json_out:
        data = json.loads(card.to_json())
        for point in data.get("calibration", {}).get("points", {}).values():
            point["table"] = f"{len(point['table']['distances'])} impostor distances"
        console.print_json(json.dumps(data))
        return
    table = Table(title=Text(str(path)), show_header=False)
    rows = [
        ("model id", card.model_id), ("architecture", card.architecture),
        ("signature", f"{card.embedding_size} dimensions ({card.embedding_size} bytes as int8)"),
        ("input", f"{card.input_size[0]}x{card.input_size[1]}x{card.channels}"),
        ("quantization", card.quantization),
        ("thresholds", describe_thresholds(card)),
        ("calibrated", card_calibration(card).describe()),
        ("templates compatible with", ", ".join(card.compatible_ids) or "this model only"),
        ("trained on", card.trained_on), ("versions", ", ".join(f"{k} {v}" for k, v in card.versions.items())),
    ]
    for key, value in card.metrics.items():
        rows.append((f"metric {key}", str(value)))
    rows.append(("preprocess", ", ".join(f"{k}={v}" for k, v in card.preprocess.items())))
    for key, value in rows:  # Text, never markup: names and paths in the card print as they are
        table.add_row(Text(key), Text(value))
    console.print(table)
