"""siamid train: train a tower; everything lands in a run folder."""

from pathlib import Path
from typing import Optional

import typer

from .common import console, percent, progress_bar


def command(
    config: Optional[Path] = typer.Option(None, help="TOML run config (see configs/)."),
    data: Optional[Path] = typer.Option(None, help="Dataset folder (overrides [data] root)."),
    run: Path = typer.Option(Path("runs/latest"), help="Run folder to create (or resume)."),
    resume: bool = typer.Option(False, help="Continue the run in --run from its last checkpoint."),
    epochs: Optional[int] = typer.Option(None, help="Override [train] epochs."),
    tower: Optional[str] = typer.Option(None, help="Override [train] tower (tiny, small_pool, small)."),
    loss: Optional[str] = typer.Option(None, help="Override [train] loss (triplet, contrastive, cosface, arcface)."),
) -> None:
    """Train a tower with early stopping on validation EER; keeps the best checkpoint."""
    import dataclasses

    from ..config import Config, load_config
    from ..training import train

    cfg = load_config(config) if config else Config()
    if data is not None:
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, root=str(data)))
    overrides = {k: v for k, v in {"epochs": epochs, "tower": tower, "loss": loss}.items() if v is not None}
    if overrides:
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, **overrides))
    with progress_bar() as progress:
        result = train(cfg, run, resume=resume, progress=progress)
    console.print(f"best epoch {result.best_epoch}: validation EER {percent(result.best_val_eer)}; "
                  f"threshold {result.threshold:.4f}")
    if result.test_report:
        fvc = result.test_report["fvc"]["summary"]
        view = result.test_report["fvc"]["classifier"]
        console.print(f"test split (FVC protocol): EER {percent(fvc['eer'])} "
                      f"({fvc['n_genuine']} genuine, {fvc['n_impostor']} impostor comparisons)")
        console.print(f"at the threshold: accuracy {percent(view['accuracy'])}, match accuracy "
                      f"{percent(view['match_accuracy'])}, no-match accuracy "
                      f"{percent(view['nomatch_accuracy'])}, ROC AUC {view['roc_auc']:.4f}")
    if result.owner_report:
        counts = result.owner_report["classifier"]["counts"]
        console.print(
            f"owner {result.owner_report['owner']} (template: {result.owner_report['template_images']} training "
            f"photos): {counts['true_accept']} of {counts['n_genuine']} held-out photos accepted; "
            f"{counts['false_accept']} of {counts['n_impostor']} photos of "
            f"{result.owner_report['impostor_persons']} unseen persons accepted")
    console.print(f"run folder: {result.run_dir} (report.json, plots, best.pt); "
                  f"next: siamid export {result.run_dir}")
