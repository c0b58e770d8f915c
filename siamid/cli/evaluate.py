"""siamid evaluate: error rates of an exported model on a dataset, with plots and report.json."""

import json
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from .common import console, percent, progress_bar


def command(
    data: list[Path] = typer.Argument(..., help="Dataset folder(s); each is evaluated on its own."),
    model: Optional[Path] = typer.Option(None, help="Exported .onnx model (default: the shipped one)."),
    format: str = typer.Option("auto", help="Layout: auto, standard, fvc, upek, socofing, orl."),
    protocol: str = typer.Option("both", help="fvc, all (every cross-identity pair) or both."),
    threshold: Optional[float] = typer.Option(None, help="Decision threshold (default: the model's)."),
    out: Path = typer.Option(Path("evaluation"), help="Folder for report.json and plots."),
) -> None:
    """Measure FMR/FNMR/EER/FMR100/FMR1000/ZeroFMR with counts, plus the tutorial's printout."""
    from ..dataset import scan_dataset
    from ..errors import ConfigError
    from ..evaluation import report_to_dict
    from ..plots import plot_report
    from ..runtime import Embedder
    from ..scoring import score_model

    protocols = {"fvc": ("fvc",), "all": ("all",), "both": ("fvc", "all")}.get(protocol)
    if protocols is None:
        raise ConfigError(f"unknown protocol {protocol!r}; use fvc, all or both")
    embedder = Embedder(model)
    thr = embedder.card.threshold if threshold is None else threshold
    table = Table("dataset", "protocol", "genuine", "impostor", "EER", "FMR100", "FMR1000",
                  "ZeroFMR", "AUC", "accuracy", "match acc.", "no-match acc.", "FTA")
    summary = {"model_id": embedder.model_id, "threshold": thr, "datasets": {}}
    with progress_bar() as progress:
        scores = [score_model(embedder, scan_dataset(d, format), protocols, progress) for d in data]
    for path, score in zip(data, scores):
        entry = summary["datasets"].setdefault(score.dataset, {"path": str(path), "fta": score.fta})
        for name, rep in score.reports.items():
            d = report_to_dict(rep, thr)
            entry[name] = d
            view = d["classifier"]
            table.add_row(score.dataset, name, str(rep.n_genuine), str(rep.n_impostor),
                          percent(rep.eer), percent(rep.fmr100), percent(rep.fmr1000),
                          percent(rep.zero_fmr), f"{rep.roc_auc:.4f}", percent(view["accuracy"]),
                          percent(view["match_accuracy"]), percent(view["nomatch_accuracy"]),
                          percent(score.fta))
            plot_report(rep, out / score.dataset / name, thr, title=f"{score.dataset}, {name} protocol")
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(summary, indent=2))
    console.print(table)
    console.print(f"threshold {thr:.4f}; accuracy columns are at this threshold. "
                  f"Report and plots in {out}/")
