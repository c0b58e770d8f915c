"""The leave-one-database-out benchmark's folds, fold configs and card-threshold summaries;
none of it needs the shared data."""

from __future__ import annotations

import dataclasses

import importlib.util
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from siamid.config import load_config
from siamid.evaluation import evaluate_scores
from siamid.pairs import Protocol

ROOT = Path(__file__).resolve().parents[1]


def _bench(name: str):
    sys.path.insert(0, str(ROOT))
    spec = importlib.util.spec_from_file_location(f"bench.{name}", ROOT / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def lodo():
    return _bench("leave_one_out")


def test_every_real_database_is_held_out_once_and_never_trained_on(lodo):
    from bench.common import REAL

    folds = lodo.folds(REAL)
    assert list(folds) == REAL
    for held, train in folds.items():
        assert held not in train
        assert sorted(train + [held]) == sorted(REAL)


def test_the_all_real_recipe_is_the_real_fine_tune_on_all_eight_databases():
    from bench.common import REAL

    every, some = (load_config(ROOT / "configs" / f"{n}.toml")
                   for n in ("finetune_all_real", "finetune_real"))
    # the same training; the shipped recipe adds R503 views and a 0.1% calibration target, and
    # a wide window centred on the core, judged for quality on its central R503-sized part, and
    # fine-tunes the medium tower pretrained on whole prints instead of small_pool
    assert (every.train.tower, every.train.embedding_size, every.train.init) == (
        "medium", 64, "runs/pretrained_medium")
    assert dataclasses.replace(every.train, target_fmr=some.train.target_fmr, sensor_views="",
                               tower=some.train.tower, embedding_size=some.train.embedding_size,
                               init=some.train.init) == some.train
    assert every.train.sensor_views == "r503"
    assert every.train.target_fmr == 0.001
    assert every.preprocess == dataclasses.replace(some.preprocess, center_on_core=True,
                                                   crop=320, size=160, quality_crop=192)
    assert {k: v for k, v in vars(every.data).items() if k != "root"} == \
           {k: v for k, v in vars(some.data).items() if k != "root"}
    assert [r.removeprefix("../shared/data/") for r in every.data.root] == REAL


def test_fold_config_replaces_only_the_roots(lodo, tmp_path):
    from bench.common import REAL, SHARED

    base = ROOT / "configs" / "finetune_all_real.toml"
    train = lodo.folds(REAL)["upek"]
    path = lodo.fold_config(train, "runs/pretrained_medium", tmp_path / "fold.toml", base)
    fold, recipe = load_config(path), load_config(base)
    assert fold.data.root == [str(SHARED / n) for n in train]
    assert not any("upek" in r for r in fold.data.root)
    assert fold.train == recipe.train and fold.train.init == "runs/pretrained_medium"


def test_arguments_default_to_the_pretrained_run_and_the_all_real_recipe(lodo):
    args = lodo.parse_args([])
    assert (args.pretrained, args.config, args.draws) == (
        "runs/pretrained_medium", "configs/finetune_all_real.toml", 200)
    assert lodo.parse_args(["--draws", "5", "--synthetic-model", "m.onnx"]).draws == 5
    from bench.common import fold_folder, slug

    assert slug("fvc2000/DB1_B") == "fvc2000_DB1_B"
    assert fold_folder("w", "fvc2000/DB1_B") == Path("w") / "fvc2000_DB1_B"


def test_card_decisions_use_the_protocols_threshold_and_pool_in_the_macro():
    accuracy = _bench("accuracy")
    embedder = SimpleNamespace(calibration=SimpleNamespace(
        threshold_for=lambda size, rule: {1: 0.5, 3: 0.3}[size]))
    report = evaluate_scores([0.1, 0.2, 0.4, 0.6], [0.25, 0.45, 0.9, 1.0, 1.2])
    single = accuracy.card_decisions(embedder, Protocol("all"), report)
    assert (single["threshold"], single["false_nonmatch"], single["false_match"]) == (0.5, 1, 2)
    assert (single["fnmr"], single["fmr"]) == (0.25, 0.4)
    enroll3 = accuracy.card_decisions(embedder, Protocol("enroll", 3), report)
    assert (enroll3["false_nonmatch"], enroll3["false_match"]) == (2, 1)
    other = {**single, "false_nonmatch": 3, "false_match": 0, "n_genuine": 6, "n_impostor": 5}
    results = {db: {"full": {"m": {"all": {"eer": 0.1, "fmr100": None, "fmr1000": None,
                                           "n_genuine": d["n_genuine"],
                                           "n_impostor": d["n_impostor"],
                                           "at_card_threshold": d}}}}
               for db, d in (("a", single), ("b", other))}
    pooled = accuracy.macro(results, ["a", "b"], "full", "m", "all")["at_card_threshold"]
    assert (pooled["false_nonmatch"], pooled["n_genuine"]) == (4, 10)
    assert pooled["fnmr"] == pytest.approx(0.4) and pooled["fmr"] == pytest.approx(0.2)


def test_benchmarks_know_which_databases_a_model_was_trained_on():
    from bench.common import REAL, seen_in_training, seen_warning
    from siamid.runtime import default_model_path

    assert seen_in_training(None) == REAL  # the default is fine-tuned on every real database
    assert seen_in_training(default_model_path().with_name("tiny.onnx")) == []
    assert "training-set numbers" in seen_warning("small", REAL[:1])


def test_a_work_folder_gives_each_database_the_fold_that_held_it_out(tmp_path):
    from bench.common import fold_models, parse_models

    names = ["fvc2000/DB1_B", "upek"]
    for name, model in zip(names, ("small_pool-aaa.onnx", "small_pool-bbb.onnx")):
        (tmp_path / name.replace("/", "_") / "model").mkdir(parents=True)
        (tmp_path / name.replace("/", "_") / "model" / model).write_bytes(b"")
    assert fold_models(tmp_path, names) == {
        "fvc2000/DB1_B": str(tmp_path / "fvc2000_DB1_B" / "model" / "small_pool-aaa.onnx"),
        "upek": str(tmp_path / "upek" / "model" / "small_pool-bbb.onnx")}
    with pytest.raises(SystemExit, match="fvc2002/DB1_B"):
        fold_models(tmp_path, names + ["fvc2002/DB1_B"])
    assert parse_models(f"a={tmp_path}", folders=True) == {"a": str(tmp_path)}
    with pytest.raises(SystemExit, match="file not found"):
        parse_models(f"a={tmp_path}")
