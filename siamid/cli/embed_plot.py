"""siamid embed-plot: a 2-D picture of the signature space a model learned, on a dataset."""

from pathlib import Path
from typing import Optional

import typer

from .common import console, progress_bar

_METHODS = {"pca": ("pca",), "tsne": ("tsne",), "both": ("pca", "tsne")}


def command(
    data: Path = typer.Argument(..., help="Dataset folder (any layout evaluate reads)."),
    model: Optional[Path] = typer.Option(None, help="Exported .onnx model (default: the shipped one)."),
    out: Path = typer.Option(..., help="The PNG to write."),
    method: str = typer.Option("both", help="pca, tsne, or both (two panels side by side)."),
    format: str = typer.Option("auto", help="Layout: auto, standard, fvc, upek, socofing, orl, "
                               "yale, yaleb, rap3df."),
    dpi: int = typer.Option(0, help="Resolution of every image in dots per inch (0: the layout's "
                            "own, 500 unless it says otherwise)."),
    max_identities: int = typer.Option(
        20, help="Embed and draw the first N identities in the dataset's natural order (the "
        "figure says how many of how many)."),
    seed: int = typer.Option(0, help="Seed of t-SNE: the same seed gives the same picture."),
    json_out: Optional[Path] = typer.Option(
        None, "--json", help="Also write the coordinates here: identity, take, pose and x/y per "
        "method for every image on the map."),
) -> None:
    """Draw a dataset's signatures in 2-D (PCA, t-SNE): a colour per identity, a marker per pose.

    The pose of an image is its take's name without a trailing _<number> (front_2 -> front);
    takes that are only numbers (fingerprint impressions) share one marker. Images failing the
    model's quality check are left off and counted.
    """
    import json

    from ..atomic import write_atomic
    from ..dataset import scan_dataset
    from ..embedspace import check_tsne_available, embedding_map
    from ..errors import ConfigError
    from ..runtime import Embedder

    if method not in _METHODS:
        raise ConfigError(f"unknown method {method!r}; use one of {', '.join(_METHODS)}")
    methods = _METHODS[method]
    if max_identities < 1:
        raise ConfigError(f"--max-identities must be at least 1, got {max_identities}")
    if "tsne" in methods:
        check_tsne_available()  # now, not after embedding every image
    try:
        from ..plots_embed import plot_embedding_map
    except ImportError as exc:
        raise ConfigError(f"drawing needs matplotlib ({exc}); install the training extra with: "
                          "pip install 'siamid[train]'") from None
    dataset = scan_dataset(data, format, dpi)
    embedder = Embedder(model)
    with progress_bar() as progress:
        emap = embedding_map(embedder, dataset, methods, max_identities, seed, progress, data)
    out.parent.mkdir(parents=True, exist_ok=True)
    plot_embedding_map(emap, out)
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(json_out, (json.dumps(emap.to_dict(), indent=1) + "\n").encode("utf-8"))
    console.print(f"{emap.model_id} on {emap.dataset}: {len(emap.ids)} images of "
                  f"{len(emap.identities)} of {emap.n_identities} identities drawn "
                  f"({', '.join(emap.methods)}); {len(emap.skipped)} skipped (quality check "
                  f"failed); {len(emap.pose_names)} pose(s)")
    if emap.training_data:
        console.print(f"warning: {emap.model_id} was trained on {data}: its identities separate "
                      "more cleanly here than new identities would")
    console.print(f"plot written to {out}" + (f", coordinates to {json_out}" if json_out else ""))
