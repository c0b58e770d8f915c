"""siamid embed-plot: projections (embedspace), the figure (plots_embed) and the verb."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from siamid.cli.main import app
from siamid.embedspace import (EmbeddingMap, check_methods, check_tsne_available, pca_2d, pose_of,
                               select_identities, tsne_2d, tsne_perplexity)
from siamid.errors import ConfigError
from siamid.types import SampleId

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


# -- projections ------------------------------------------------------------------------------

def test_pca_finds_the_known_principal_axes():
    """Points at +-10 along e3 and +-3 along e1 (in 5-D, every combination equally often, so the
    two are uncorrelated), offset: PCA gives those axes, in order, centred, in the data's own
    units, with a fixed sign."""
    rng = np.random.default_rng(0)
    a = np.repeat([10.0, -10.0, 10.0, -10.0], 50)
    b = np.repeat([3.0, 3.0, -3.0, -3.0], 50)
    x = np.zeros((200, 5))
    x[:, 2], x[:, 0] = a, b
    x += np.array([5.0, -2.0, 7.0, 1.0, 0.5])  # an offset PCA must remove
    xy = pca_2d(x)
    assert xy.shape == (200, 2)
    np.testing.assert_allclose(xy.mean(axis=0), 0.0, atol=1e-9)
    # The axes are +e3 then +e1 (sign: the largest loading positive), so the coordinates are
    # the offsets along them.
    np.testing.assert_allclose(xy[:, 0], a, atol=1e-9)
    np.testing.assert_allclose(xy[:, 1], b, atol=1e-9)
    order = rng.permutation(200)
    np.testing.assert_allclose(pca_2d(x[order]), xy[order], atol=1e-9)  # the same picture


def test_pca_of_degenerate_sets():
    assert pca_2d(np.ones((1, 8))).tolist() == [[0.0, 0.0]]
    line = np.outer(np.arange(4.0), np.ones(3))  # one axis of variation: second column zero
    xy = pca_2d(line)
    np.testing.assert_allclose(xy[:, 1], 0.0, atol=1e-9)
    with pytest.raises(ConfigError, match="shape"):
        pca_2d(np.ones(5))


def test_tsne_perplexity_is_clamped_below_the_number_of_points():
    assert tsne_perplexity(1000) == 30.0
    assert tsne_perplexity(91) == 30.0
    assert tsne_perplexity(10) == pytest.approx(3.0)
    for n in (2, 3, 4, 5, 10, 50):
        assert 0 < tsne_perplexity(n) < n
    assert tsne_perplexity(10, 2.0) == 2.0
    with pytest.raises(ConfigError):
        tsne_perplexity(1)
    with pytest.raises(ConfigError):
        tsne_perplexity(10, 0.0)


def test_tsne_runs_on_a_few_points_with_the_clamped_perplexity():
    x = np.random.default_rng(1).normal(size=(5, 16))
    xy, used = tsne_2d(x, seed=3)
    assert xy.shape == (5, 2) and np.isfinite(xy).all()
    assert used == pytest.approx(4 / 3)
    np.testing.assert_allclose(tsne_2d(x, seed=3)[0], xy)  # a seed gives one picture
    assert tsne_2d(x[:1])[0].tolist() == [[0.0, 0.0]]


def test_missing_scikit_learn_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.manifold", None)
    with pytest.raises(ConfigError, match=r"siamid\[train\]"):
        check_tsne_available()


@pytest.mark.parametrize("take, pose", [
    ("front_2", "front"), ("left_1", "left"), ("front", "front"), ("1", "-"), ("8", "-"),
    ("centerlight", "centerlight"), ("look_up_12", "look_up"), ("P00A+000E+00", "P00A+000E+00"),
    ("_3", "-"), ("front_2a", "front_2a"),
])
def test_pose_is_the_take_without_its_trailing_number(take, pose):
    assert pose_of(take) == pose


def test_check_methods():
    assert check_methods(["tsne", "pca"]) == ("pca", "tsne")
    with pytest.raises(ConfigError, match="umap"):
        check_methods(["umap"])
    with pytest.raises(ConfigError):
        check_methods([])


def test_select_identities_takes_the_first_in_natural_order(tmp_path):
    from siamid.dataset import Dataset, Entry

    entries = tuple(Entry(SampleId(f"s{k}", "face", str(t)), tmp_path / f"{k}_{t}.png", 500)
                    for k in (10, 2, 1, 9) for t in (1, 2))
    ds = Dataset("d", entries)
    assert select_identities(ds, 2).identities == ["s1/face", "s2/face"]
    assert len(select_identities(ds, 2)) == 4
    assert select_identities(ds, 99).identities == ds.identities
    for bad in (0, -1, True):
        with pytest.raises(ConfigError, match="max_identities"):
            select_identities(ds, bad)


# -- the figure -------------------------------------------------------------------------------

def test_figure_with_many_identities_and_poses_and_names_that_look_like_markup(tmp_path):
    """25 identities (no identity legend), 12 poses (shapes shared), names with $ and brackets:
    drawn as text, not mathtext (an invalid formula would raise while saving)."""
    from siamid.plots_embed import plot_embedding_map

    poses = [f"pose{k}" for k in range(11)] + [r"$\bad[red]$"]
    ids = tuple(SampleId(f"p{i}", "face", f"{poses[(i + j) % 12]}_{j}")
                for i in range(25) for j in range(2))
    xy = np.random.default_rng(0).normal(size=(len(ids), 2))
    emap = EmbeddingMap(r"model $\x$", r"data $\frac$ [b]", ids, {"pca": xy, "tsne": xy},
                        n_identities=40, n_selected=25, skipped=(SampleId("p0", "face", "x"),),
                        tsne_perplexity=16.3)
    assert len(emap.pose_names) == 12
    out = plot_embedding_map(emap, tmp_path / "many.png")
    with Image.open(out) as image:
        assert image.format == "PNG" and image.width > 400
    record = emap.to_dict()
    assert record["n_identities_shown"] == 25 and record["n_skipped_quality"] == 1
    assert len(record["points"]) == 50 and set(record["points"][0]) >= {"pca", "tsne", "pose"}


# -- the verb ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def prints(tmp_path_factory):
    """A tiny synthetic dataset: 4 fingers x 3 impressions."""
    folder = tmp_path_factory.mktemp("embed") / "prints"
    res = invoke("synth", folder, "--identities", 4, "--impressions", 3, "--seed", 3,
                 "--workers", 1)
    assert res.exit_code == 0, res.output
    return folder


def test_embed_plot_writes_a_png_and_the_coordinates(prints, tmp_path):
    from siamid.runtime import default_model_path

    out, coords = tmp_path / "figs" / "map.png", tmp_path / "map.json"
    res = invoke("embed-plot", prints, "--model", default_model_path(), "--out", out,
                 "--json", coords, "--max-identities", 3, "--seed", 2)
    assert res.exit_code == 0, res.output
    with Image.open(out) as image:
        image.verify()
        assert image.format == "PNG"
    record = json.loads(coords.read_text())
    assert record["methods"] == ["pca", "tsne"] and record["n_identities"] == 4
    assert record["n_identities_selected"] == 3
    assert len(record["points"]) == record["n_images"]
    assert record["n_images"] + record["n_skipped_quality"] == 9  # 3 fingers x 3 images
    first = record["points"][0]
    assert first["identity"] == "synth0000/left/index" and first["pose"] == "-"
    assert set(first["pca"]) == {"x", "y"} and set(first["tsne"]) == {"x", "y"}
    assert f"{record['n_skipped_quality']} skipped" in res.output
    assert "3 of 4 identities" in res.output
    assert not list(coords.parent.glob(".*.tmp"))  # written atomically, nothing left behind


def test_embed_plot_pca_only(prints, tmp_path):
    res = invoke("embed-plot", prints, "--out", tmp_path / "pca.png", "--method", "pca",
                 "--json", tmp_path / "pca.json")
    assert res.exit_code == 0, res.output
    record = json.loads((tmp_path / "pca.json").read_text())
    assert record["methods"] == ["pca"] and "tsne" not in record["points"][0]


@pytest.mark.parametrize("args, says", [
    (("--method", "umap"), "umap"),
    (("--max-identities", 0), "--max-identities"),
])
def test_embed_plot_refuses_bad_options(prints, tmp_path, args, says):
    res = invoke("embed-plot", prints, "--out", tmp_path / "x.png", *args)
    assert res.exit_code == 3 and "error:" in res.output and says in res.output
    assert not (tmp_path / "x.png").exists()


def test_embed_plot_refuses_a_missing_folder(tmp_path):
    res = invoke("embed-plot", tmp_path / "nowhere", "--out", tmp_path / "x.png")
    assert res.exit_code == 3 and "does not exist" in res.output
    res = invoke("embed-plot", tmp_path)  # --out is required: a usage error
    assert res.exit_code == 2
