"""Tests for RunConfig: YAML round trip, strict validation with dotted key paths, overrides."""
from __future__ import annotations

from pathlib import Path

import pytest

from tfmmrec.config import ConfigError, RetrievalConfig, RunConfig, SplitConfig


def test_yaml_round_trip(tmp_path: Path) -> None:
    cfg = RunConfig(split=SplitConfig(strategy="cold_start", cold_item_frac=0.25, seed=9),
                    encoders={"text": "builtin-text", "image": "builtin-image"},
                    retrieval=RetrievalConfig(fusion_hidden=[32, 16], temperature=0.05, logq=False),
                    ks=[5, 10], train_ranking=False, on_unknown_items="drop")
    path = tmp_path / "config.yaml"
    text = cfg.to_yaml(path)
    assert path.read_text() == text
    assert RunConfig.from_yaml(path) == cfg


def test_default_round_trip_and_empty_file(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(RunConfig().to_yaml())
    (tmp_path / "empty.yaml").write_text("")
    assert RunConfig.from_yaml(tmp_path / "a.yaml") == RunConfig()
    assert RunConfig.from_yaml(tmp_path / "empty.yaml") == RunConfig()


def test_partial_config_keeps_other_defaults() -> None:
    cfg = RunConfig.from_dict({"retrieval": {"epochs": 2}})
    assert cfg.retrieval.epochs == 2
    assert cfg.retrieval.temperature == RetrievalConfig().temperature
    assert cfg.split == SplitConfig()


@pytest.mark.parametrize("raw, path", [
    ({"retrieval": {"temprature": 0.2}}, "retrieval.temprature"),
    ({"split": {"stratgy": "random"}}, "split.stratgy"),
    ({"sed": 1}, "sed"),
])
def test_unknown_key_names_dotted_path(raw: dict, path: str) -> None:
    with pytest.raises(ConfigError, match=path.replace(".", r"\.")):
        RunConfig.from_dict(raw)


@pytest.mark.parametrize("raw, path", [
    ({"retrieval": {"epochs": "ten"}}, "retrieval.epochs"),
    ({"retrieval": {"epochs": 2.5}}, "retrieval.epochs"),
    ({"retrieval": {"logq": "yes"}}, "retrieval.logq"),
    ({"ranking": {"batch_size": True}}, "ranking.batch_size"),
    ({"split": {"valid_frac": "0.1"}}, "split.valid_frac"),
    ({"retrieval": {"fusion_hidden": 128}}, "retrieval.fusion_hidden"),
    ({"ks": [10, "twenty"]}, r"ks\[1\]"),
    ({"encoders": {"text": 3}}, "encoders.text"),
    ({"split": "random"}, "split"),
])
def test_wrong_type_names_path(raw: dict, path: str) -> None:
    with pytest.raises(ConfigError, match=path.replace(".", r"\.")):
        RunConfig.from_dict(raw)


def test_int_accepted_for_float() -> None:
    cfg = RunConfig.from_dict({"retrieval": {"learning_rate": 1}, "split": {"valid_frac": 0}})
    assert cfg.retrieval.learning_rate == 1.0 and isinstance(cfg.retrieval.learning_rate, float)
    assert cfg.split.valid_frac == 0.0 and isinstance(cfg.split.valid_frac, float)


def test_overrides_apply() -> None:
    base = RunConfig()
    cfg = base.with_overrides(["retrieval.epochs=3", "split.strategy=temporal",
                               "ks=[1, 5]", "train_ranking=false"])
    assert cfg.retrieval.epochs == 3
    assert cfg.split.strategy == "temporal"
    assert cfg.ks == [1, 5]
    assert cfg.train_ranking is False
    assert base == RunConfig()  # the original is unchanged
    assert cfg.retrieval.temperature == base.retrieval.temperature


@pytest.mark.parametrize("override, fragment", [
    ("retrieval.temprature=0.2", r"retrieval\.temprature"),
    ("nosuch.epochs=3", r"nosuch"),
    ("retrieval.epochs.inner=3", r"retrieval\.epochs"),
    ("retrieval.epochs=many", r"retrieval\.epochs"),
    ("retrieval.epochs", r"key=value"),
])
def test_bad_override_errors(override: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        RunConfig().with_overrides([override])
