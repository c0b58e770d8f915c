"""siamid split: subject-disjoint train/validation/test split with a manifest hash."""

from pathlib import Path

import typer

from .common import console


def command(
    data: Path = typer.Argument(..., help="Dataset folder."),
    out: Path = typer.Option(Path("splits.json"), help="Where to write the split (JSON)."),
    format: str = typer.Option("auto", help="Layout: auto, standard, fvc, upek, socofing, orl."),
    val: float = typer.Option(0.15, help="Fraction of subjects for validation."),
    test: float = typer.Option(0.15, help="Fraction of subjects for test."),
    seed: int = typer.Option(0, help="Seed of the split."),
) -> None:
    """Split a dataset by subject (no person in two splits) and save the split."""
    from ..dataset import scan_dataset, split_dataset

    ds = scan_dataset(data, format)
    splits = split_dataset(ds, val, test, seed)
    splits.save(out)
    for name in ("train", "val", "test"):
        part = getattr(splits, name)
        console.print(f"{name:<5} {len(part.subjects):>5} subjects {len(part.identities):>6} identities "
                      f"{len(part.entries):>7} images")
    console.print(f"manifest hash {splits.manifest_hash}; written to {out}")
