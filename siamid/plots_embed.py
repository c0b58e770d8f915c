"""Draws an EmbeddingMap (``siamid.embedspace``): one panel per projection, a colour per
identity, a marker shape per pose.

Kept apart from ``plots.py`` (the evaluation report's figures) so each file draws one kind of
figure; both use matplotlib's object-oriented API on an Agg canvas, never pyplot, so no window
opens and nothing stays alive between calls. Names that come from users (dataset, identities,
poses) are drawn as plain text, never parsed as mathtext.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from .embedspace import NO_POSE, EmbeddingMap

__all__ = ["MARKERS", "IDENTITY_LEGEND_MAX", "plot_embedding_map"]

#: Marker shapes for poses, in order; a map with more poses reuses them (the legend says so).
MARKERS = ("o", "s", "^", "v", "D", "P", "X", "*", "<", ">")
#: Identities are named in a legend only up to this many; beyond it, colours alone tell them apart.
IDENTITY_LEGEND_MAX = 20
_TITLES = {"pca": "PCA", "tsne": "t-SNE"}
_LABEL_CHARS = 32


def identity_colours(n: int) -> np.ndarray:
    """(n, 4) RGBA colours, as distinct as the count allows and the same for the same ``n``.

    Up to 20: tab10, then tab20 with its dark shades first (so neighbours in natural order, such
    as one person's fingers, do not get two shades of one hue); up to 60: tab20, tab20b and tab20c;
    more: a seeded shuffle of evenly spaced turbo colours.
    """
    if n <= 10:
        colours = list(colormaps["tab10"].colors)
    elif n <= 20:
        tab20 = list(colormaps["tab20"].colors)
        colours = tab20[0::2] + tab20[1::2]
    elif n <= 60:
        colours = [c for name in ("tab20", "tab20b", "tab20c") for c in colormaps[name].colors]
    else:
        order = np.random.default_rng(0).permutation(n)
        return colormaps["turbo"](np.linspace(0.0, 1.0, n))[order]
    return np.array([(*c[:3], 1.0) for c in colours[:n]])


def _short(text: str) -> str:
    return text if len(text) <= _LABEL_CHARS else text[:_LABEL_CHARS - 1] + "\u2026"


def _figure(n_panels: int, legend: bool) -> tuple[Figure, Any, Any]:
    """(figure, the part holding the panels and titles, the part for the identity legend)."""
    panels = 5.2 * n_panels
    fig = Figure(figsize=(panels + (2.2 if legend else 0.0), 5.8), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    if not legend:
        return fig, fig, None
    # Two subfigures, so that the titles centre over the panels, not over panels and legend.
    left, right = fig.subfigures(1, 2, width_ratios=(panels, 2.2), wspace=0.0)
    return fig, left, right


def _literal(artist) -> None:
    """Draw ``artist``'s text as written: a ``$`` in a dataset name is not mathtext."""
    artist.set_parse_math(False)


def plot_embedding_map(emap: EmbeddingMap, path: str | Path) -> Path:
    """Draw ``emap`` as a PNG at ``path`` (its folder must exist); returns the path.

    The title names the model and the dataset; a second line says how many identities of how
    many are shown, how many images, and how many were skipped by the quality check.
    """
    path = Path(path)
    identities = emap.identities
    poses = emap.pose_names
    colours = identity_colours(len(identities))
    colour_of = {ident: colours[k] for k, ident in enumerate(identities)}
    marker_of = {pose: MARKERS[k % len(MARKERS)] for k, pose in enumerate(poses)}
    show_poses = poses != [NO_POSE]
    name_identities = len(identities) <= IDENTITY_LEGEND_MAX
    fig, main, side = _figure(len(emap.methods), name_identities)
    n = len(emap.ids)
    size = 40.0 if n <= 300 else 18.0 if n <= 2000 else 8.0
    point_colours = np.array([colour_of[i.identity] for i in emap.ids])
    pose_index = np.array([poses.index(p) for p in emap.poses])
    axes = main.subplots(1, len(emap.methods), squeeze=False)[0]
    for ax, method in zip(axes, emap.methods):
        xy = emap.coords[method]
        for k, pose in enumerate(poses):
            rows = pose_index == k
            ax.scatter(xy[rows, 0], xy[rows, 1], c=point_colours[rows], marker=marker_of[pose],
                       s=size, alpha=0.85, edgecolors="black", linewidths=0.3)
        if method == "tsne":
            ax.set_title(f"t-SNE (perplexity {emap.tsne_perplexity:.3g}, seed {emap.seed})")
            ax.set_xticks([])  # t-SNE axes have no units: only neighbourhoods mean something
            ax.set_yticks([])
        else:
            ax.set_title(_TITLES.get(method, method))
            ax.set_xlabel("first principal axis (signature units)")
            ax.set_ylabel("second principal axis")
            ax.set_aspect("equal", adjustable="datalim")
    shown = f"{len(identities)} of {emap.n_identities} identities shown"
    if len(identities) < emap.n_selected:
        shown += (f" ({emap.n_selected - len(identities)} of the first {emap.n_selected} had no "
                  "image passing the quality check)")
    note = (f"{shown}, {n} images; {len(emap.skipped)} skipped (quality check failed)"
            + ("" if name_identities else f"; one colour per identity (named above {IDENTITY_LEGEND_MAX})")
            + ("" if show_poses else "; takes carry no pose: one marker")
            + ("; the model was trained on this data" if emap.training_data else ""))
    # One title of two parts; the note, wrapped to the figure's width, under the names.
    width = int(5.2 * len(emap.methods) * 13)
    _literal(main.suptitle(f"{emap.model_id} on {emap.dataset}\n" + textwrap.fill(note, width),
                          fontsize=10))
    if name_identities:
        handles = [Line2D([], [], linestyle="", marker="o", markerfacecolor=colour_of[i],
                          markeredgecolor="black", markeredgewidth=0.3, markersize=7,
                          label=_short(i)) for i in identities]
        legend = side.legend(handles=handles, loc="upper left", title="identity",
                            fontsize=8, title_fontsize=9, frameon=False)
        for text in legend.get_texts():
            _literal(text)
    if show_poses:
        shapes = poses[:len(MARKERS)]
        handles = []
        for k, first in enumerate(shapes):
            sharing = poses[k::len(MARKERS)]
            label = _short(", ".join(sharing)) if len(sharing) > 1 else _short(first)
            handles.append(Line2D([], [], linestyle="", marker=MARKERS[k], markerfacecolor="0.6",
                                  markeredgecolor="black", markeredgewidth=0.3, markersize=7,
                                  label=label))
        title = ("pose" if len(poses) <= len(MARKERS)
                 else f"pose ({len(poses)} poses share {len(MARKERS)} shapes)")
        legend = main.legend(handles=handles, loc="outside lower center", title=title, fontsize=8,
                            title_fontsize=9, frameon=False,
                            ncols=min(len(handles), 5))
        for text in legend.get_texts():
            _literal(text)
    fig.savefig(path, format="png", bbox_inches="tight")  # outside legends stay whole
    return path

