"""Draws an EvalReport and training metrics as PNG files. The only module that imports matplotlib.

Figures are built with the object-oriented API on an Agg canvas: no pyplot, no global backend
switch, no window ever opened, nothing left alive between calls (safe in servers and tests).
Rates are fractions in code and percentages on the axes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullFormatter, PercentFormatter

from .errors import TrainingError
from .evaluation import classifier_view, curve_points
from .types import EvalReport

__all__ = ["plot_report", "plot_training"]

_GENUINE = "tab:green"
_IMPOSTOR = "tab:red"
_OVERALL = "tab:blue"
_THRESHOLD = "black"
_MAX_POINTS = 2000  # per curve; more is invisible and only slows drawing


def _figure(width: float = 7.0, height: float = 4.8) -> tuple[Figure, Any]:
    fig = Figure(figsize=(width, height), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def _save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, format="png")
    return path


def _title(title: str, what: str) -> str:
    return f"{title}: {what}" if title else what


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100.0 * value:.2f}%"


def _log_percent(value: float, _position: Any = None) -> str:
    """Tick label for a log-scale rate axis: 0.01% stays 0.01% (PercentFormatter rounds to 0%)."""
    return f"{100.0 * value:.6g}%"


def _thin(values: np.ndarray, limit: int = _MAX_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """(positions in [0, 1], values) of a sorted array, at most ``limit`` points (quantiles)."""
    if values.size <= limit:
        return np.linspace(0.0, 1.0, values.size) if values.size > 1 else np.zeros(1), values
    q = np.linspace(0.0, 1.0, limit)
    return q, np.quantile(values, q)


def _threshold_accuracy(report: EvalReport, threshold: float, title: str, path: Path) -> Path:
    curves = curve_points(report, _MAX_POINTS)
    t, fmr, fnmr = curves["thresholds"], curves["fmr"], curves["fnmr"]
    n_g, n_i = report.n_genuine, report.n_impostor
    match = 1.0 - fnmr
    nomatch = 1.0 - fmr
    overall = (match * n_g + nomatch * n_i) / (n_g + n_i)
    view = classifier_view(report.genuine, report.impostor, threshold)
    fig, ax = _figure()
    # Rates hold from one threshold up to the next, hence steps.
    ax.step(t, overall, where="post", color=_OVERALL, label=f"overall accuracy (n={n_g + n_i})")
    ax.step(t, match, where="post", color=_GENUINE, label=f"match accuracy (genuine, n={n_g})")
    ax.step(t, nomatch, where="post", color=_IMPOSTOR,
            label=f"no-match accuracy (impostor, n={n_i})")
    ax.axvline(threshold, color=_THRESHOLD, linestyle="--", linewidth=1,
               label=(f"threshold {threshold:.4g}: overall {_pct(view['accuracy'])}, "
                      f"match {_pct(view['match_accuracy'])}, "
                      f"no-match {_pct(view['nomatch_accuracy'])}"))
    ax.set_xlabel("threshold (Euclidean distance; accept if distance < threshold)")
    ax.set_ylabel("accuracy")
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower center", fontsize=8)
    ax.set_title(_title(title, "accuracy vs threshold"))
    return _save(fig, path)


def _sorted_distances(report: EvalReport, threshold: float, title: str, path: Path) -> Path:
    fig, ax = _figure()
    # Genuine and impostor counts differ, so each sorted list is drawn over a 0..1 rank axis.
    xg, yg = _thin(report.genuine)
    xi, yi = _thin(report.impostor)
    ax.plot(xg, yg, color=_GENUINE, label=f"match (genuine) distances, n={report.n_genuine}")
    ax.plot(xi, yi, color=_IMPOSTOR, label=f"no-match (impostor) distances, n={report.n_impostor}")
    ax.axhline(threshold, color=_THRESHOLD, linestyle="--", linewidth=1,
               label=f"threshold {threshold:.4g}")
    ax.set_xlabel("rank within its set (fraction, sorted ascending)")
    ax.xaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_ylabel("Euclidean distance")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title(_title(title, "sorted distances"))
    return _save(fig, path)


def _lowest_fmr_shown(report: EvalReport) -> float:
    # One impostor in n is the smallest FMR that can be observed; half of it leaves a margin.
    return 0.5 / report.n_impostor


def _operating_point(report: EvalReport, threshold: float) -> tuple[float, float]:
    view = classifier_view(report.genuine, report.impostor, threshold)
    return view["fmr"], view["fnmr"]


def _roc(report: EvalReport, threshold: float, title: str, path: Path) -> Path:
    curves = curve_points(report, _MAX_POINTS)
    fmr, tar = curves["fmr"], 1.0 - curves["fnmr"]
    low = _lowest_fmr_shown(report)
    fig, ax = _figure()
    # FMR = 0 has no place on a log axis: those points are drawn at the left edge.
    ax.step(np.maximum(fmr, low), tar, where="post", color=_OVERALL,
            label=f"ROC, AUC = {report.roc_auc:.4f} ({report.n_genuine} genuine, "
                  f"{report.n_impostor} impostor)")
    op_fmr, op_fnmr = _operating_point(report, threshold)
    ax.plot([max(op_fmr, low)], [1.0 - op_fnmr], "o", color=_THRESHOLD,
            label=f"threshold {threshold:.4g}: FMR {_pct(op_fmr)}, TAR {_pct(1.0 - op_fnmr)}")
    for name, level in (("FMR100", 0.01), ("FMR1000", 0.001), ("FMR10000", 0.0001)):
        if level >= low:
            ax.axvline(level, color="grey", linestyle=":", linewidth=0.8)
            ax.text(level, 0.98, name, rotation=90, fontsize=7, color="grey",
                    ha="right", va="top")
    ax.set_xscale("log")
    ax.set_xlim(low, 1.0)
    ax.set_ylim(-0.02, 1.02)
    ax.xaxis.set_major_formatter(FuncFormatter(_log_percent))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_xlabel("FMR (false match rate, log scale)")
    ax.set_ylabel("TAR = 1 - FNMR (genuine accepted)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(_title(title, "ROC"))
    return _save(fig, path)


def _det(report: EvalReport, threshold: float, title: str, path: Path) -> Path:
    curves = curve_points(report, _MAX_POINTS)
    fmr, fnmr = curves["fmr"], curves["fnmr"]
    low_fmr = _lowest_fmr_shown(report)
    low_fnmr = 0.5 / report.n_genuine
    fig, ax = _figure()
    # Zero rates have no place on log axes: clamp them to the edge so the curve stays whole.
    ax.plot(np.maximum(fmr, low_fmr), np.maximum(fnmr, low_fnmr), color=_OVERALL,
            drawstyle="steps-post",
            label=f"DET ({report.n_genuine} genuine, {report.n_impostor} impostor)")
    ax.plot([max(report.eer, low_fmr)], [max(report.eer, low_fnmr)], "s", color=_IMPOSTOR,
            label=f"EER {_pct(report.eer)} at distance {report.eer_threshold:.4g}")
    op_fmr, op_fnmr = _operating_point(report, threshold)
    ax.plot([max(op_fmr, low_fmr)], [max(op_fnmr, low_fnmr)], "o", color=_THRESHOLD,
            label=f"threshold {threshold:.4g}: FMR {_pct(op_fmr)}, FNMR {_pct(op_fnmr)}")
    lo = min(low_fmr, low_fnmr)
    ax.plot([lo, 1.0], [lo, 1.0], color="grey", linestyle=":", linewidth=0.8,
            label="FMR = FNMR")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(low_fmr, 1.0)
    ax.set_ylim(low_fnmr, 1.0)
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_formatter(FuncFormatter(_log_percent))
        axis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("FMR (false match rate, log scale)")
    ax.set_ylabel("FNMR (false non-match rate, log scale)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="best", fontsize=8)
    levels = (f"FMR100 {_pct(report.fmr100)}  FMR1000 {_pct(report.fmr1000)}  "
              f"ZeroFMR {_pct(report.zero_fmr)}")
    ax.set_title(_title(title, "DET") + f"\n{levels}", fontsize=10)
    return _save(fig, path)


def _histogram(report: EvalReport, threshold: float, title: str, path: Path) -> Path:
    g, i = report.genuine, report.impostor
    lo = float(min(g.min(), i.min()))
    hi = float(max(g.max(), i.max()))
    if hi <= lo:  # every distance equal: give the single bin a width
        lo, hi = lo - 0.5, hi + 0.5
    bins = np.linspace(lo, hi, 61)
    fig, ax = _figure()
    # Densities, not counts: impostors usually outnumber genuine comparisons many times over.
    ax.hist(i, bins=bins, density=True, alpha=0.5, color=_IMPOSTOR,
            label=f"impostor, n={report.n_impostor}")
    ax.hist(g, bins=bins, density=True, alpha=0.5, color=_GENUINE,
            label=f"genuine, n={report.n_genuine}")
    ax.axvline(threshold, color=_THRESHOLD, linestyle="--", linewidth=1,
               label=f"threshold {threshold:.4g}")
    ax.set_xlabel("Euclidean distance")
    ax.set_ylabel("density")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", fontsize=8)
    ax.set_title(_title(title, f"distance histograms (EER {_pct(report.eer)})"))
    return _save(fig, path)


def plot_report(
    report: EvalReport, out_dir: str | Path, threshold: float | None = None, title: str = ""
) -> list[Path]:
    """Draw ``report`` into ``out_dir`` (created if needed) and return the files written:

    ``threshold_accuracy.png`` (overall, match and no-match accuracy vs threshold),
    ``sorted_distances.png`` (match and non-match distances, each sorted), ``roc.png`` (TAR vs
    FMR, log FMR axis), ``det.png`` (FNMR vs FMR, both log, EER marked) and ``histogram.png``
    (genuine vs impostor distance densities). ``threshold`` (a distance; default the EER
    threshold) is marked on each; ``title`` prefixes every figure title.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t = report.eer_threshold if threshold is None else float(threshold)
    return [
        _threshold_accuracy(report, t, title, out / "threshold_accuracy.png"),
        _sorted_distances(report, t, title, out / "sorted_distances.png"),
        _roc(report, t, title, out / "roc.png"),
        _det(report, t, title, out / "det.png"),
        _histogram(report, t, title, out / "histogram.png"),
    ]


def _series(metrics: Sequence[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    """(epochs, values) of rows that have a finite ``key``."""
    xs: list[float] = []
    ys: list[float] = []
    for n, row in enumerate(metrics):
        value = row.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            xs.append(float(row.get("epoch", n)))
            ys.append(float(value))
    return xs, ys


def plot_training(metrics: list[dict], out: str | Path) -> Path:
    """Training curves from ``metrics.jsonl`` rows (``epoch``, ``train_loss``, ``val_eer``; also
    ``val_loss`` when present): loss on top, validation EER below. Writes ``out`` (a .png path)
    and returns it. Raises TrainingError when no row has a loss or an EER to draw.
    """
    out = Path(out)
    series = {key: _series(metrics, key) for key in ("train_loss", "val_loss", "val_eer")}
    if not any(xs for xs, _ in series.values()):
        raise TrainingError(
            f"no train_loss, val_loss or val_eer values in {len(metrics)} metrics row(s); "
            "nothing to plot (has the run finished an epoch?)"
        )
    fig = Figure(figsize=(7.0, 6.0), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    loss_ax, eer_ax = fig.subplots(2, 1, sharex=True)
    for key, color, label in (("train_loss", _OVERALL, "training loss"),
                              ("val_loss", "tab:orange", "validation loss")):
        xs, ys = series[key]
        if xs:
            loss_ax.plot(xs, ys, marker="o", markersize=3, color=color, label=label)
    loss_ax.set_ylabel("loss")
    loss_ax.grid(alpha=0.3)
    if loss_ax.lines:
        loss_ax.legend(fontsize=8)
    loss_ax.set_title(f"training ({len(metrics)} epochs)")
    xs, ys = series["val_eer"]
    if xs:
        best = int(np.argmin(ys))
        eer_ax.plot(xs, ys, marker="o", markersize=3, color=_IMPOSTOR, label="validation EER")
        eer_ax.plot([xs[best]], [ys[best]], "*", markersize=12, color=_THRESHOLD,
                    label=f"best {_pct(ys[best])} at epoch {xs[best]:g}")
        eer_ax.legend(fontsize=8)
    eer_ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    eer_ax.set_ylabel("EER")
    eer_ax.set_xlabel("epoch")
    eer_ax.grid(alpha=0.3)
    out.parent.mkdir(parents=True, exist_ok=True)
    return _save(fig, out)
