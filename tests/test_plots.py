from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from siamid.errors import TrainingError
from siamid.evaluation import evaluate_scores
from siamid.plots import plot_report, plot_training

NAMES = ["threshold_accuracy.png", "sorted_distances.png", "roc.png", "det.png", "histogram.png"]


def _check_png(path):
    assert path.is_file() and path.stat().st_size > 5000
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.width > 300 and image.height > 300
        # Not a blank canvas: a drawn plot has many distinct colours.
        assert len(image.convert("RGB").getcolors(maxcolors=1 << 16) or range(1 << 16)) > 10


def test_plot_report_writes_the_five_pngs(tmp_path):
    rng = np.random.default_rng(0)
    report = evaluate_scores(rng.gamma(2.0, 0.3, 300), rng.gamma(5.0, 0.3, 1500))
    out = tmp_path / "new" / "dir"
    paths = plot_report(report, out, threshold=0.9, title="test DB")
    assert [p.name for p in paths] == NAMES
    assert all(p.parent == out for p in paths)
    for p in paths:
        _check_png(p)


def test_plot_report_handles_degenerate_reports(tmp_path):
    # Perfect separation (DET curve on the axes, EER 0) and a single tied score.
    for k, (genuine, impostor) in enumerate([([0.1, 0.2], [0.8, 0.9]), ([0.5], [0.5])]):
        paths = plot_report(evaluate_scores(genuine, impostor), tmp_path / str(k))
        assert [p.name for p in paths] == NAMES
        for p in paths:
            _check_png(p)


def test_plot_training(tmp_path):
    rows = [{"epoch": e, "train_loss": 1.0 / (e + 1), "val_eer": 0.3 - 0.02 * e}
            for e in range(10)]
    rows[3]["val_eer"] = None  # an epoch without validation is skipped, not drawn as zero
    path = plot_training(rows, tmp_path / "runs" / "training.png")
    assert path == tmp_path / "runs" / "training.png"
    _check_png(path)
    with pytest.raises(TrainingError, match="nothing to plot"):
        plot_training([{"epoch": 0}], tmp_path / "x.png")
