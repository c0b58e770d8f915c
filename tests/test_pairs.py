from __future__ import annotations

import itertools
import json
from collections import Counter

import numpy as np
import pytest

from siamid.errors import ConfigError, DatasetError
from siamid.pairs import (
    all_pairs,
    batch_indices,
    fvc_pairs,
    load_pairs,
    natural_key,
    save_pairs,
)
from siamid.types import Pair, SampleId


def fvc_ids(fingers: int, takes: int) -> list[SampleId]:
    """An FVC-like set: finger f is subject str(101+f), takes 1..takes (listed shuffled)."""
    ids = [SampleId(str(101 + f), "finger", str(t)) for f in range(fingers)
           for t in range(1, takes + 1)]
    rng = np.random.default_rng(0)
    return [ids[k] for k in rng.permutation(len(ids))]


def test_natural_order():
    takes = ["10", "9", "1", "2", "11"]
    assert sorted(takes, key=natural_key) == ["1", "2", "9", "10", "11"]
    assert sorted(["s10", "s9", "s1a"], key=natural_key) == ["s1a", "s9", "s10"]


def test_fvc_set_b_counts():
    pairs = fvc_pairs(fvc_ids(10, 8))
    genuine = [p for p in pairs if p.is_match]
    impostor = [p for p in pairs if not p.is_match]
    assert len(genuine) == 280 and len(impostor) == 45
    assert all(p.a.identity == p.b.identity for p in genuine)
    assert all(p.a.identity != p.b.identity for p in impostor)
    # Impostor pairs use only the first impression of each finger.
    assert {p.a.take for p in impostor} | {p.b.take for p in impostor} == {"1"}
    assert len(set(genuine)) == 280 and len(set(impostor)) == 45


@pytest.mark.parametrize(("fingers", "takes"), [(1, 2), (2, 1), (3, 4), (7, 3), (100, 8)])
def test_fvc_general_formula(fingers, takes):
    pairs = fvc_pairs(fvc_ids(fingers, takes))
    n_gen = sum(p.is_match for p in pairs)
    assert n_gen == fingers * takes * (takes - 1) // 2
    assert len(pairs) - n_gen == fingers * (fingers - 1) // 2


def test_fvc_first_impression_is_natural_smallest_take():
    # Takes 9, 10, 11 only: string order would make "10" the first; natural order says "9".
    ids = [SampleId("a", "f", t) for t in ("10", "11", "9")] + [SampleId("b", "f", "10"),
                                                                  SampleId("b", "f", "2")]
    impostor = [p for p in fvc_pairs(ids) if not p.is_match]
    assert impostor == [Pair(SampleId("a", "f", "9"), SampleId("b", "f", "2"), False)]


def test_fvc_uneven_takes_and_order_is_deterministic():
    ids = [SampleId("1", "left/index", str(t)) for t in range(1, 4)] + [
        SampleId("2", "left/index", "1")]
    pairs = fvc_pairs(ids)
    assert sum(p.is_match for p in pairs) == 3 and sum(not p.is_match for p in pairs) == 1
    assert fvc_pairs(list(reversed(ids))) == pairs


def test_duplicates_and_empty_are_refused():
    a = SampleId("1", "f", "1")
    with pytest.raises(DatasetError, match="twice"):
        fvc_pairs([a, a])
    with pytest.raises(DatasetError, match="empty"):
        fvc_pairs([])


def test_all_pairs_counts_and_subset():
    ids = fvc_ids(5, 4)  # 20 samples: 5*6 genuine, C(20,2) - 30 = 160 impostor
    pairs = all_pairs(ids)
    genuine = [p for p in pairs if p.is_match]
    impostor = [p for p in pairs if not p.is_match]
    assert len(genuine) == 30 and len(impostor) == 160
    assert all(p.a.identity != p.b.identity for p in impostor)
    expected = {frozenset((x, y)) for x, y in itertools.combinations(ids, 2)
                if x.identity != y.identity}
    assert {frozenset((p.a, p.b)) for p in impostor} == expected

    sub = all_pairs(ids, max_impostor=25, seed=3)
    sub_imp = [p for p in sub if not p.is_match]
    assert len(sub_imp) == 25 and len(set(sub_imp)) == 25
    assert set(sub_imp) <= set(impostor)
    assert [p for p in sub if p.is_match] == genuine
    assert all_pairs(ids, max_impostor=25, seed=3) == sub  # seeded: reproducible
    assert all_pairs(ids, max_impostor=25, seed=4) != sub
    assert len(all_pairs(ids, max_impostor=10_000)) == len(pairs)  # more than exist: all
    with pytest.raises(ConfigError):
        all_pairs(ids, max_impostor=-1)


def test_all_pairs_subset_is_roughly_uniform():
    # Identity sizes 1 and 9 vs 5: cross pairs per identity pair differ; counts must follow.
    ids = ([SampleId("a", "f", "1")] + [SampleId("b", "f", str(t)) for t in range(9)]
           + [SampleId("c", "f", str(t)) for t in range(5)])
    hits = Counter()
    for seed in range(40):
        for p in all_pairs(ids, max_impostor=20, seed=seed):
            if not p.is_match:
                hits[(p.a.subject, p.b.subject)] += 1
    total = 1 * 9 + 1 * 5 + 9 * 5  # 59 impostor pairs
    for key, size in {("a", "b"): 9, ("a", "c"): 5, ("b", "c"): 45}.items():
        assert hits[key] / 800 == pytest.approx(size / total, abs=0.05)


def test_save_load_roundtrip(tmp_path):
    ids = [SampleId("1", "left/index", "1"), SampleId("1", "left/index", "2"),
           SampleId("2", "right/thumb", "1")]
    pairs = fvc_pairs(ids)
    path = save_pairs(pairs, tmp_path / "sub" / "pairs.json")
    data = json.loads(path.read_text())
    assert data["n_genuine"] == 1 and data["n_impostor"] == 1
    assert load_pairs(path) == pairs
    save_pairs([], tmp_path / "empty.json")
    assert load_pairs(tmp_path / "empty.json") == []


def test_load_pairs_errors(tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        load_pairs(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(DatasetError, match="bad.json"):
        load_pairs(bad)
    bad.write_text(json.dumps({"format": "siamid-pairs", "version": 1,
                               "pairs": [[["1", "f", "1"], ["2", "f"], True]]}))
    with pytest.raises(DatasetError, match="pair 0"):
        load_pairs(bad)
    bad.write_text(json.dumps({"format": "siamid-pairs", "version": 1,
                               "pairs": [[["1", "f", "1"], ["2", "f", "1"], 1]]}))
    with pytest.raises(DatasetError, match="pair 0"):
        load_pairs(bad)
    bad.write_text(json.dumps({"pairs": []}))
    with pytest.raises(DatasetError, match="not a siamid pair list"):
        load_pairs(bad)


def test_batch_indices_shape_and_composition():
    labels = [f"id{k % 6}" for k in range(6 * 5)]  # 6 identities, 5 samples each
    rng = np.random.default_rng(0)
    idx = batch_indices(labels, 4, 3, rng)
    assert idx.shape == (12,) and idx.dtype == np.int64
    groups = [[labels[i] for i in idx[k * 3:(k + 1) * 3]] for k in range(4)]
    assert all(len(set(g)) == 1 for g in groups)  # each block is one identity
    assert len({g[0] for g in groups}) == 4  # identities without replacement
    for k in range(4):  # enough samples: no sample repeats within an identity
        assert len(set(idx[k * 3:(k + 1) * 3].tolist())) == 3


def test_batch_indices_with_replacement_and_cap():
    labels = ["a", "b", "b", "b"]
    rng = np.random.default_rng(1)
    idx = batch_indices(labels, 8, 4, rng)  # only 2 identities: P capped at 2
    assert idx.shape == (8,)
    blocks = {labels[idx[0]]: idx[:4], labels[idx[4]]: idx[4:]}
    assert set(blocks) == {"a", "b"}
    assert blocks["a"].tolist() == [0, 0, 0, 0]  # one sample, drawn with replacement
    assert set(blocks["b"].tolist()) <= {1, 2, 3}


def test_batch_indices_is_seeded_and_covers_identities():
    labels = [str(k // 4) for k in range(40)]
    a = batch_indices(labels, 3, 2, np.random.default_rng(5))
    b = batch_indices(labels, 3, 2, np.random.default_rng(5))
    assert a.tolist() == b.tolist()
    rng = np.random.default_rng(6)
    seen = {labels[i] for _ in range(60) for i in batch_indices(labels, 3, 2, rng)}
    assert seen == set(labels)


def test_batch_indices_errors():
    rng = np.random.default_rng(0)
    with pytest.raises(DatasetError, match="2 identities"):
        batch_indices(["a", "a", "a"], 2, 2, rng)
    with pytest.raises(ConfigError):
        batch_indices(["a", "b"], 1, 2, rng)
    with pytest.raises(ConfigError):
        batch_indices(["a", "b"], 2, 1, rng)


def _ids(takes_per_identity: dict[str, int]) -> list[SampleId]:
    return [SampleId(name, "f", str(t)) for name, n in takes_per_identity.items()
            for t in range(1, n + 1)]


def test_enrollment_trials_counts_and_templates():
    from siamid.pairs import enrollment_trials

    trials = enrollment_trials(_ids({"a": 5, "b": 5, "c": 3, "d": 2}), 3)
    genuine = [t for t in trials if t.is_match]
    impostor = [t for t in trials if not t.is_match]
    # a and b have 2 probes each; c is a template only; d (2 takes) cannot enroll 3
    assert len(genuine) == 4
    assert len(impostor) == 3 * 4 - 4  # 3 templates x 4 probes, minus the genuine ones
    assert {t.template for t in trials} == {tuple(SampleId(n, "f", str(i)) for i in (1, 2, 3))
                                            for n in "abc"}
    assert all(t.probe.take in ("4", "5") for t in trials)
    assert all(t.probe.identity == t.template[0].identity for t in genuine)
    assert all(t.probe.identity != t.template[0].identity for t in impostor)
    assert not any(t.probe.subject == "d" for t in trials)


def test_enrollment_trials_orders_takes_naturally_and_subsamples():
    from siamid.pairs import enrollment_trials

    ids = _ids({"a": 12, "b": 12, "c": 12})
    trials = enrollment_trials(ids, 1)
    assert {t.template[0].take for t in trials} == {"1"}  # not "10" (string order)
    sampled = enrollment_trials(ids, 1, max_impostor=5, seed=3)
    assert sum(not t.is_match for t in sampled) == 5
    assert sum(t.is_match for t in sampled) == 3 * 11
    assert sampled == enrollment_trials(ids, 1, max_impostor=5, seed=3)


def test_enrollment_trials_refuses_bad_k_and_nothing_to_probe():
    from siamid.pairs import enrollment_trials

    with pytest.raises(ConfigError, match="k >= 1"):
        enrollment_trials(_ids({"a": 3, "b": 3}), 0)
    with pytest.raises(DatasetError, match="more than 3 takes"):
        enrollment_trials(_ids({"a": 3, "b": 3}), 3)


@pytest.mark.parametrize("name,kind,size", [("fvc", "fvc", 1), ("all", "all", 1),
                                            ("enroll1", "enroll", 1), ("enroll12", "enroll", 12)])
def test_protocol_parses_names_and_prints_them_back(name, kind, size):
    from siamid.pairs import Protocol

    protocol = Protocol.parse(name)
    assert (protocol.kind, protocol.size) == (kind, size)
    assert str(protocol) == name
    assert protocol.uses_templates == (kind == "enroll")


@pytest.mark.parametrize("name", ["enroll0", "enroll", "enrol3", "FVC", "both"])
def test_protocol_refuses_unknown_names(name):
    from siamid.pairs import Protocol

    with pytest.raises(ConfigError, match="enrollK"):
        Protocol.parse(name)


def test_protocol_refuses_impossible_combinations():
    from siamid.pairs import Protocol

    with pytest.raises(ConfigError, match="single images"):
        Protocol("fvc", 3)
    with pytest.raises(ConfigError, match="kind"):
        Protocol("pairs")
    with pytest.raises(ConfigError, match="no protocol"):
        Protocol.parse_list(" , ")
    assert [str(p) for p in Protocol.parse_list("both,enroll3")] == ["fvc", "all", "enroll3"]


def test_protocol_comparisons_dispatch_and_share_one_cap():
    from siamid.pairs import MAX_IMPOSTOR, Protocol, all_pairs, enrollment_trials, fvc_pairs

    ids = _ids({"a": 5, "b": 5, "c": 5})
    assert Protocol("fvc").comparisons(ids) == fvc_pairs(ids)
    assert Protocol("all").comparisons(ids) == all_pairs(ids)
    assert Protocol("enroll", 3).comparisons(ids) == enrollment_trials(ids, 3)
    capped = Protocol("all").comparisons(ids, max_impostor=7)
    assert sum(not p.is_match for p in capped) == 7
    assert MAX_IMPOSTOR == 200_000
