"""Tests for siamid.types: identities and the ModelCard's JSON form."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from siamid.errors import ModelError, SiamidError
from siamid.types import MatchResult, ModelCard, Pair, Sample, SampleId


def card() -> ModelCard:
    return ModelCard(
        model_id="fp-small-20250101-abcd",
        architecture="small",
        embedding_size=32,
        input_size=(96, 96),
        channels=1,
        preprocess={"target_dpi": 500, "crop": 192, "size": 96, "balance": True, "balance_low": 0.02},
        threshold=0.8125,
        threshold_fmr=0.01,
        quantization="int8",
        trained_on="fvc2000/DB1_B",
        versions={"siamid": "0.1.0", "torch": "2.13.0"},
        metrics={"eer": 0.05, "fmr100": None, "n_genuine": 280},
        compatible_ids=("fp-small-20250101-abcd.int8",),
    )


def test_sample_id_identity_and_str() -> None:
    sid = SampleId("101", "left/index", "3")
    assert sid.identity == "101/left/index"
    assert str(sid) == "101/left/index/3"
    assert SampleId("101", "left/index", "4").identity == sid.identity
    assert SampleId("102", "left/index", "3").identity != sid.identity
    assert SampleId("101", "right/index", "3").identity != sid.identity


def test_sample_id_is_hashable_ordered_and_frozen() -> None:
    a, b = SampleId("1", "face", "2"), SampleId("1", "face", "10")
    assert len({a, SampleId("1", "face", "2")}) == 1
    assert sorted([a, b, SampleId("0", "face", "9")])[0].subject == "0"
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.take = "3"  # type: ignore[misc]


def test_pair_and_sample_records() -> None:
    a, b = SampleId("1", "face", "1"), SampleId("1", "face", "2")
    assert Pair(a, b, True).is_match is True
    assert Pair(a, b, True) == Pair(a, b, True)
    s = Sample(np.zeros((4, 4), np.uint8), 500, a)
    assert s.path is None and s.quality is None
    assert MatchResult("1", 0.5, 0.8, True).fmr_estimate is None


def test_model_card_json_round_trip() -> None:
    c = card()
    text = c.to_json()
    data = json.loads(text)
    assert data["input_size"] == [96, 96]
    assert data["compatible_ids"] == ["fp-small-20250101-abcd.int8"]
    back = ModelCard.from_json(text)
    assert back == c
    assert isinstance(back.input_size, tuple) and isinstance(back.compatible_ids, tuple)
    assert back.to_json() == text   # sorted keys: a stable serialisation


def test_model_card_defaults_round_trip() -> None:
    c = ModelCard("m", "tiny", 16, (96, 96), 1, {}, 1.0, 0.01)
    assert c.quantization == "fp32" and c.calibration == {} and c.compatible_ids == ()
    assert ModelCard.from_json(c.to_json()) == c
    # An older card without calibration or compatible ids still loads.
    data = json.loads(c.to_json())
    del data["calibration"], data["compatible_ids"]
    assert ModelCard.from_json(json.dumps(data)) == c


def test_model_card_with_changes() -> None:
    c = card()
    d = c.with_changes(threshold=0.9, quantization="fp32", input_size=[64, 64],
                       compatible_ids=["x"])
    assert d.threshold == 0.9 and d.quantization == "fp32"
    assert d.input_size == (64, 64) and d.compatible_ids == ("x",)
    assert d.model_id == c.model_id and d.preprocess == c.preprocess
    assert c.threshold == 0.8125   # the original is untouched
    assert c.with_changes() == c
    with pytest.raises(TypeError):
        c.with_changes(no_such_field=1)


@pytest.mark.parametrize("text", [
    "not json at all",
    "",
    "[1, 2, 3]",
    "null",
    '{"model_id": "m"}',
    json.dumps({**json.loads(card().to_json()), "extra_field": 1}),
    json.dumps({k: v for k, v in json.loads(card().to_json()).items() if k != "threshold"}),
    json.dumps({**json.loads(card().to_json()), "input_size": 96}),
])
def test_model_card_from_garbage(text: str) -> None:
    with pytest.raises(ModelError, match="malformed ModelCard"):
        ModelCard.from_json(text)
    assert issubclass(ModelError, SiamidError)
