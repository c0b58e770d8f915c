"""siamid synth: write a synthetic fingerprint dataset in the standard layout."""

from pathlib import Path

import typer

from .common import console, progress_bar


def command(
    out: Path = typer.Argument(..., help="Output folder (standard layout <subject>/<hand>/<finger>/<take>.png)."),
    identities: int = typer.Option(100, "--identities", "-n", help="Synthetic fingers (identities) to make."),
    impressions: int = typer.Option(8, "--impressions", "-k", help="Impressions per finger."),
    sensor: str = typer.Option("r503", help="Sensor rendering: r503 (192x192, 16 gray levels) or 500dpi."),
    seed: int = typer.Option(0, help="Seed: the same seed gives the same images."),
    workers: int = typer.Option(0, help="Worker processes; 0 = all cores."),
    harshness: float = typer.Option(
        0.0, help="Extra damage per touch, 0 to 1: stronger distortion, poorer touches, sensor "
        "noise (0 = generator v2's images; see docs/synthesis.md for the calibrated value)."),
) -> None:
    """Generate synthetic fingerprints (no real person's data); resumes if interrupted."""
    from ..synth import generate_dataset

    with progress_bar() as progress:
        path = generate_dataset(out, identities, impressions, sensor=sensor, seed=seed,
                                workers=workers, harshness=harshness,
                                progress=lambda d, t: progress("synth", d, t))
    console.print(f"wrote {identities} fingers x {impressions} impressions to {path}")
