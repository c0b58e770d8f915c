"""Tests for siamid.config: defaults, TOML round trip, and the errors for bad files."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

import pytest

from siamid.config import (
    AugmentConfig,
    Config,
    DataConfig,
    PreprocessConfig,
    TrainConfig,
    dumps_config,
    from_dict,
    load_config,
    save_config,
    to_dict,
)
from siamid.errors import ConfigError, SiamidError


def write(tmp_path: Path, text: str, name: str = "run.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_defaults() -> None:
    cfg = Config()
    assert cfg.preprocess.target_dpi == 500
    assert cfg.preprocess.crop == 192
    assert cfg.preprocess.size == 96
    assert cfg.preprocess.channels == 1
    assert cfg.data.root == ""
    assert cfg.data.format == "auto"
    assert cfg.train.tower == "small_pool"  # the shipped tower
    assert cfg.train.loss == "triplet"
    assert cfg.train.mining == "all"  # batch-hard collapsed from scratch; see docs/experiments.md
    assert cfg.train.margin == 0.0
    assert cfg.train.augment == AugmentConfig()
    assert cfg.train.augment.rotation_deg == 20.0


def test_configs_are_frozen() -> None:
    cfg = Config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.train.epochs = 3  # type: ignore[misc]


def test_empty_file_gives_defaults(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, "")) == Config()


def test_round_trip_of_defaults(tmp_path: Path) -> None:
    path = tmp_path / "resolved.toml"
    save_config(Config(), path)
    assert load_config(path) == Config()


def test_round_trip_of_changed_values(tmp_path: Path) -> None:
    cfg = Config(
        data=DataConfig(root=["/a/b", 'c:\\weird "name"'], format="fvc", dpi=569, seed=7),
        preprocess=PreprocessConfig(channels=3, balance=False, balance_low=0.05, size=64),
        train=TrainConfig(
            tower="tiny", embedding_size=16, loss="contrastive", margin=0.7, lr=1e-5, weight_decay=0.0,
            augment=AugmentConfig(rotation_deg=5.5, noise=0.0),
        ),
    )
    text = dumps_config(cfg)
    # What dumps_config writes is plain TOML, section by section, with the nested table.
    parsed = tomllib.loads(text)
    assert set(parsed) == {"data", "preprocess", "train"}
    assert parsed["train"]["augment"]["rotation_deg"] == 5.5
    assert "[train.augment]" in text
    assert parsed == to_dict(cfg)
    path = tmp_path / "resolved.toml"
    save_config(cfg, path)
    assert path.read_text() == text
    back = load_config(path)
    assert back == cfg
    assert back.data.root == ["/a/b", 'c:\\weird "name"']


def test_partial_file_keeps_other_defaults(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, '[train]\ntower = "tiny"\nepochs = 3\n'))
    assert cfg.train.tower == "tiny"
    assert cfg.train.epochs == 3
    assert cfg.train.lr == TrainConfig().lr
    assert cfg.preprocess == PreprocessConfig()
    assert cfg.data == DataConfig()


def test_nested_augment_table(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, "[train.augment]\nrotation_deg = 10.0\nnoise = 0.01\n"))
    assert cfg.train.augment.rotation_deg == 10.0
    assert cfg.train.augment.noise == 0.01
    assert cfg.train.augment.translate == AugmentConfig().translate
    assert isinstance(cfg.train.augment, AugmentConfig)
    assert cfg.train.tower == TrainConfig().tower


def test_int_accepted_for_float(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, "[train]\nlr = 1\nmargin = 2\n[train.augment]\nrotation_deg = 15\n"))
    assert cfg.train.lr == 1.0 and isinstance(cfg.train.lr, float)
    assert cfg.train.margin == 2.0 and isinstance(cfg.train.margin, float)
    assert isinstance(cfg.train.augment.rotation_deg, float)


@pytest.mark.parametrize("text, expected", [
    ('[data]\nroot = "/data/fvc"\n', "/data/fvc"),
    ('[data]\nroot = ["/data/a", "/data/b"]\n', ["/data/a", "/data/b"]),
])
def test_root_string_or_list(tmp_path: Path, text: str, expected: object) -> None:
    assert load_config(write(tmp_path, text)).data.root == expected


@pytest.mark.parametrize("text, key", [
    ("[train]\nepoch = 3\n", "epoch"),
    ("[preprocess]\ncrop_size = 100\n", "crop_size"),
    ("[train.augment]\nblur = 0.1\n", "blur"),
    ("[model]\nx = 1\n", "model"),
])
def test_unknown_key_names_key_and_file(tmp_path: Path, text: str, key: str) -> None:
    path = write(tmp_path, text, "my_run.toml")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    msg = str(info.value)
    assert repr(key) in msg
    assert str(path) in msg


@pytest.mark.parametrize("text, key", [
    ('[train]\nepochs = "ten"\n', "train.epochs"),
    ("[train]\nepochs = 2.5\n", "train.epochs"),
    ("[train]\nepochs = true\n", "train.epochs"),   # a bool is not an int
    ('[train]\nlr = "fast"\n', "train.lr"),
    ("[preprocess]\nbalance = 1\n", "preprocess.balance"),
    ("[train]\ntower = 3\n", "train.tower"),
    ("[train]\naugment = 3\n", "train.augment"),    # a value where a table belongs
    ('[train.augment]\nnoise = "x"\n', "train.augment.noise"),
])
def test_wrong_type_names_key(tmp_path: Path, text: str, key: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert f"{key}:" in str(info.value)
    assert str(path) in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match="not found") as info:
        load_config(path)
    assert str(path) in str(info.value)


def test_invalid_toml(tmp_path: Path) -> None:
    path = write(tmp_path, "[train\nepochs = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(path)


def test_config_error_is_siamid_error() -> None:
    assert issubclass(ConfigError, SiamidError)


def test_from_dict_direct() -> None:
    cfg = from_dict(TrainConfig, {"epochs": 4, "augment": {"noise": 0.2}}, "inline")
    assert cfg == TrainConfig(epochs=4, augment=AugmentConfig(noise=0.2))
    with pytest.raises(ConfigError, match=r"inline: unknown key 'bogus'"):
        from_dict(TrainConfig, {"bogus": 1}, "inline")


@pytest.mark.parametrize("value", ["5", "[1, 2]", "true"])
def test_root_wrong_type_names_key(tmp_path: Path, value: str) -> None:
    path = write(tmp_path, f"[data]\nroot = {value}\n")
    with pytest.raises(ConfigError, match=r"data\.root"):
        load_config(path)


def test_every_recipe_in_the_repo_loads() -> None:
    from pathlib import Path

    from siamid.losses import check_loss
    from siamid.nets import list_towers

    root = Path(__file__).resolve().parents[1] / "configs"
    recipes = sorted(root.glob("*.toml")) + sorted(root.glob("experiments/*.toml"))
    assert len(recipes) >= 10
    for path in recipes:
        cfg = load_config(path)
        check_loss(cfg.train.loss, cfg.train.mining)
        assert cfg.train.tower in list_towers(), path
