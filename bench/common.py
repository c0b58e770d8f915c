"""Shared bits of the benchmarks: where the shared data is, table printing, JSON output."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "bench" / "results"

REAL = ["fvc2000/DB1_B", "fvc2000/DB2_B", "fvc2000/DB3_B", "fvc2002/DB1_B",
        "fvc2004/DB1_B", "fvc2004/DB2_B", "fvc2004/DB3_B", "upek"]
SYNTHETIC = ["fvc2000/DB4_B", "fvc2004/DB4_B"]


def machine() -> str:
    """A one-line description of where the numbers were measured."""
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}"


def print_table(header: list[str], rows: list[list[str]]) -> None:
    """A plain fixed-width table on stdout."""
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    for line in [header, ["-" * w for w in widths], *rows]:
        print("  ".join(str(x).ljust(w) for x, w in zip(line, widths)))


def write_json(name: str, data: dict) -> Path:
    """Write ``bench/results/<name>.json`` and return its path."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=2))
    return path


def image_grid(rows: list[list[tuple[str, np.ndarray]]], title: str, path: Path,
               cell: tuple[float, float] = (2.1, 2.3)) -> Path:
    """Draw labelled gray images, one list per row, as a small gray PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    cols = max(len(r) for r in rows)
    fig, axes = plt.subplots(len(rows), cols, figsize=(cell[0] * cols, cell[1] * len(rows)),
                             dpi=80, squeeze=False)
    for r, row in enumerate(rows):
        for c in range(cols):
            ax = axes[r, c]
            ax.axis("off")
            if c < len(row):
                label, image = row[c]
                ax.imshow(image, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
                ax.set_title(label, fontsize=7)
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    plt.close(fig)
    # A gray PNG keeps the sheet small: it is gray images plus black text.
    with Image.open(path) as im:
        im.convert("L").save(path, optimize=True)
    return path


def slug(name: str) -> str:
    """A folder name for a database: ``fvc2000/DB1_B`` -> ``fvc2000_DB1_B``."""
    return name.replace("/", "_")


def fold_folder(work: str | Path, held: str) -> Path:
    """Where bench/leave_one_out.py keeps the fold that holds database ``held`` out: its
    config, ``run/`` and ``model/`` (the run's fp32 export)."""
    return Path(work) / slug(held)


def fold_models(work: str | Path, names: list[str]) -> dict[str, str]:
    """{database: the fp32 export of the fold that held it out} of a bench/leave_one_out.py
    ``--work`` folder (``WORK/<slug>/model/*.onnx``); SystemExit naming a missing fold."""
    models = {}
    for name in names:
        found = sorted((fold_folder(work, name) / "model").glob("*.onnx"))
        if not found:
            raise SystemExit(f"{work}: no exported fold for {name} (run bench/leave_one_out.py)")
        models[name] = str(found[0])
    return models


def seen_in_training(model: str | Path | None) -> list[str]:
    """The shared databases a model was trained on, as its card says (``Calibration.trained_on``).
    None: the shipped default."""
    from siamid.runtime import Embedder

    calibration = Embedder(model).calibration
    return [name for name in REAL + SYNTHETIC if calibration.trained_on(SHARED / name)]


def seen_warning(label: str, seen: list[str]) -> str:
    """The line a benchmark prints when a model is scored on databases it was trained on."""
    return (f"warning: {label} was trained on {', '.join(seen)}: its numbers there are "
            "training-set numbers, not accuracy; bench/leave_one_out.py measures it honestly")


def parse_models(spec: str, folders: bool = False) -> dict[str, str]:
    """``label=path.onnx,label=path.onnx`` -> {label: path}; SystemExit naming a malformed item
    or a file that does not exist. With ``folders``, a path may also be a folder (a
    bench/leave_one_out.py ``--work`` folder, see ``fold_models``)."""
    models: dict[str, str] = {}
    for item in filter(None, spec.split(",")):
        label, sep, path = item.partition("=")
        if not sep or not label or not path:
            raise SystemExit(f"--models: {item!r} is not label=path.onnx")
        if not (Path(path).is_file() or folders and Path(path).is_dir()):
            raise SystemExit(f"--models: {label}: file not found: {path}")
        models[label] = path
    if not models:
        raise SystemExit("--models: no model given")
    return models
