"""Tests for RunConfig: YAML round trip, strict validation with dotted key paths, overrides."""
from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tfmmrec.cli import main
from tfmmrec.config import (
    ConfigError,
    DataConfig,
    EvaluateConfig,
    RetrievalConfig,
    RunConfig,
    SplitConfig,
    TrainConfig,
    section,
    setting,
)
from tfmmrec.config_docs import commented_yaml, descriptions, field_paths, markdown, undocumented


def test_yaml_round_trip(tmp_path: Path) -> None:
    cfg = RunConfig(split=SplitConfig(strategy="cold_start", cold_item_frac=0.25, seed=9),
                    encoders={"text": "builtin-text", "image": "builtin-image"},
                    retrieval=RetrievalConfig(fusion_hidden=[32, 16], temperature=0.05, logq=False),
                    evaluate=EvaluateConfig(ks=[5, 10]), train=TrainConfig(ranking=False),
                    data=DataConfig(on_unknown_items="drop"))
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
    ({"evaluate": {"ks": [10, "twenty"]}}, r"evaluate.ks\[1\]"),
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
                               "evaluate.ks=[1, 5]", "train.ranking=false"])
    assert cfg.retrieval.epochs == 3
    assert cfg.split.strategy == "temporal"
    assert cfg.evaluate.ks == [1, 5]
    assert cfg.train.ranking is False
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


@pytest.mark.parametrize("old, new", [("export_top_k", "export.top_k"), ("train_id_only", "train.id_only"),
                                      ("ks", "evaluate.ks"), ("distribute", "train.distribute")])
def test_a_key_that_moved_says_where_it_went(old: str, new: str) -> None:
    with pytest.raises(ConfigError, match=rf"^{old}: this key moved to {new}"):
        RunConfig.from_dict({old: RunConfig().to_dict()[new.split(".")[0]][new.split(".")[1]]})


def test_new_sections_round_trip_and_keep_todays_behaviour(tmp_path: Path) -> None:
    cfg = RunConfig().with_overrides([
        "train.distribute=mirrored", "train.save_weights=false", "tensorboard.projector=false",
        "tensorboard.metadata_columns=[item_id, title]", "tune.algorithm=grid", "tune.epochs=2",
        'tune.space={"retrieval.temperature": [0.1, 0.2], "retrieval.fusion_hidden": [[64], [128, 64]]}'])
    cfg.to_yaml(tmp_path / "c.yaml")
    assert RunConfig.from_yaml(tmp_path / "c.yaml") == cfg
    assert cfg.tune.space["retrieval.temperature"] == [0.1, 0.2] and cfg.tune.epochs == 2
    default = RunConfig()
    assert default.train.distribute == "auto" and default.train.save_weights and default.tensorboard.enabled


@pytest.mark.parametrize("raw, path", [
    ({"tensorboard": {"projecter": True}}, r"tensorboard\.projecter"),
    ({"tune": {"max_trials": "many"}}, r"tune\.max_trials"),
    ({"tune": {"space": {"retrieval.temperature": 0.2}}}, r"tune\.space\.retrieval\.temperature"),
    ({"train": {"save_weights": 1}}, r"train\.save_weights"),
    ({"train": {"distribute": 2}}, r"train\.distribute"),
])
def test_new_sections_are_checked_like_the_others(raw: dict, path: str) -> None:
    with pytest.raises(ConfigError, match=path):
        RunConfig.from_dict(raw)


def test_override_reads_exponent_notation_as_a_number() -> None:
    # YAML 1.1 reads 1e-5 (no dot) as a string; on a command line it means a number.
    assert RunConfig().with_overrides(["retrieval.learning_rate=1e-5"]).retrieval.learning_rate == 1e-5
    with pytest.raises(ConfigError, match=r"retrieval\.epochs"):
        RunConfig().with_overrides(["retrieval.epochs=1e3"])  # a float is still not an int
    assert RunConfig().with_overrides(["split.strategy=nan"]).split.strategy == "nan"


def test_every_key_is_documented_and_docs_config_md_is_current() -> None:
    """docs/config.md is the one place the defaults are documented; regenerate it with
    `tfmmrec config --markdown > docs/config.md` after adding a field (declared with setting(default, doc))."""
    assert undocumented() == [], "declare these keys with setting(default, doc) in tfmmrec/config.py"
    doc = Path(__file__).resolve().parents[1] / "docs" / "config.md"
    table = markdown()
    assert doc.read_text() == table, "regenerate it: tfmmrec config --markdown > docs/config.md"
    for path in field_paths():
        assert f"`{path}`" in table or f"**{path}**" in table


def test_commented_defaults_are_a_valid_config_file(tmp_path: Path) -> None:
    text = commented_yaml()
    assert "# Softmax temperature" in text and "temperature: 0.2" in text
    (tmp_path / "defaults.yaml").write_text(text)
    assert RunConfig.from_yaml(tmp_path / "defaults.yaml") == RunConfig()
    custom = RunConfig().with_overrides(["retrieval.epochs=3"])
    (tmp_path / "custom.yaml").write_text(commented_yaml(custom))
    assert RunConfig.from_yaml(tmp_path / "custom.yaml") == custom


def test_typo_in_a_config_file_exits_2_naming_file_and_key(tmp_path: Path) -> None:
    """Through the real command in its own process: exit status 2, one clear line, no traceback."""
    path = tmp_path / "run.yaml"
    path.write_text("retrieval:\n  epochs: 2\n  temprature: 0.1\n")
    proc = subprocess.run([sys.executable, "-m", "tfmmrec.cli", "train", str(tmp_path), "--config", str(path)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    err = proc.stderr.strip().splitlines()[-1]
    assert err.startswith("tfmmrec: error: ") and str(path) in err and "retrieval.temprature: unknown key" in err
    assert "temperature" in err  # the known keys are listed, so the right spelling is in sight
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("argv, fragment", [
    (["config", "--set", "tune.algoritm=grid"], "tune.algoritm: unknown key"),
    (["config", "--set", "tensorboard.enabled=maybe"], "tensorboard.enabled: expected bool"),
    (["data", "demo", "--out", "x", "--set", "retrieval.epocs=1"], "retrieval.epocs: unknown key"),
])
def test_every_command_rejects_bad_keys_with_exit_2(argv: list[str], fragment: str,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert fragment in capsys.readouterr().err


def test_config_command_prints_the_effective_config(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "--set", "retrieval.epochs=3"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert RunConfig.from_dict(printed) == RunConfig().with_overrides(["retrieval.epochs=3"])
    assert main(["config", "--defaults"]) == 0
    assert RunConfig.from_dict(yaml.safe_load(capsys.readouterr().out)) == RunConfig()


def test_a_preset_is_a_config_the_file_and_overrides_apply_on_top(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """The demo is the "demo" preset (a cold-start split), not special code: a file or --set still wins."""
    assert RunConfig.from_preset("demo") == RunConfig().with_overrides(["split.strategy=cold_start"])
    (tmp_path / "c.yaml").write_text("split: {seed: 4}\nretrieval: {epochs: 2}\n")
    layered = RunConfig.from_yaml(tmp_path / "c.yaml", preset="demo")
    assert (layered.split.strategy, layered.split.seed, layered.retrieval.epochs) == ("cold_start", 4, 2)
    (tmp_path / "d.yaml").write_text("split: {strategy: temporal}\n")
    assert RunConfig.from_yaml(tmp_path / "d.yaml", preset="demo").split.strategy == "temporal"
    assert main(["config", "--preset", "demo", "--set", "split.strategy=random"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["split"]["strategy"] == "random"
    assert main(["config", "--preset", "demo"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["split"]["strategy"] == "cold_start"
    with pytest.raises(ConfigError, match="preset 'nosuch': unknown"):
        RunConfig.from_preset("nosuch")


@dataclass
class _Inner:
    depth: int = setting(2, "How deep.")


@dataclass
class _Declared:
    plain: int = 1  # a field declared without setting() has no description
    documented: str = setting("a", "What it does.")
    items: list[int] = setting([1], "Lists are copied per instance.")
    inner: _Inner = section(_Inner, "A section.")


def test_a_keys_description_is_the_doc_it_is_declared_with() -> None:
    assert descriptions(_Declared, "x.") == {
        "x.documented": "What it does.", "x.items": "Lists are copied per instance.", "x.inner": "A section.",
        "x.inner.depth": "How deep."}
    one, two = _Declared(), _Declared()
    one.items.append(2)
    assert two.items == [1]  # a mutable default is never shared


def test_ranking_dropout_null_follows_the_feedback_and_a_number_is_kept(tmp_path: Path) -> None:
    """``ranking.dropout: null`` (the default) is 0.5 for ratings and 0.1 otherwise; a value set
    in a file or an override is used as it is, for every kind of feedback."""
    default = RunConfig().ranking
    assert default.dropout is None
    assert default.deep_dropout(rating=True) == 0.5 and default.deep_dropout(rating=False) == 0.1
    chosen = RunConfig().with_overrides(["ranking.dropout=0.2"]).ranking
    assert chosen.deep_dropout(rating=True) == chosen.deep_dropout(rating=False) == 0.2
    (tmp_path / "a.yaml").write_text("ranking:\n  dropout: null\n")
    assert RunConfig.from_yaml(tmp_path / "a.yaml").ranking.dropout is None
    with pytest.raises(ConfigError, match=r"ranking\.dropout"):
        RunConfig.from_dict({"ranking": {"dropout": "high"}})


@pytest.mark.parametrize("override, fragment", [
    ("ranking.dropout=1.5", r"ranking\.dropout: must be \[0, 1\), got 1\.5"),
    ("retrieval.id_dropout=-0.1", r"retrieval\.id_dropout: must be \[0, 1\)"),
    ("split.cold_item_frac=1", r"split\.cold_item_frac: must be \[0, 1\)"),
    ("retrieval.temperature=0", r"retrieval\.temperature: must be > 0"),
    ("ranking.learning_rate=-1e-3", r"ranking\.learning_rate: must be > 0"),
    ("retrieval.blend_warm_tolerance=2", r"retrieval\.blend_warm_tolerance: must be \[0, 1\]"),
    ("retrieval.weight_decay=-0.1", r"retrieval\.weight_decay: must be >= 0"),
    ("retrieval.logq_weight=-1", r"retrieval\.logq_weight: must be >= 0"),
    ("retrieval.embedding_dropout=1", r"retrieval\.embedding_dropout: must be \[0, 1\)"),
    ("retrieval.temperature_candidates=[0.15, 0]", r"retrieval\.temperature_candidates\[1\]: must be > 0, got 0"),
    ("retrieval.temperature_candidates=0.15", r"retrieval\.temperature_candidates: expected a list"),
    ("retrieval.temperature_candidates=[hot]", r"retrieval\.temperature_candidates\[0\]: expected float"),
    ("retrieval.embedding_dim=0", r"retrieval\.embedding_dim: must be > 0, got 0"),
    ("ranking.hidden_units=[64, 0]", r"ranking\.hidden_units\[1\]: must be > 0, got 0"),
    ("ranking.mf_factors=-8", r"ranking\.mf_factors: must be > 0, got -8"),
    ("evaluate.ks=[10, 0]", r"evaluate\.ks\[1\]: must be > 0"),
    ("ranking.patience=-1", r"ranking\.patience: must be >= 0, got -1"),
], ids=["rate above one", "negative rate", "all items cold", "zero temperature", "negative lr", "tolerance",
        "negative decay", "negative logq share", "embedding dropout one", "a zero candidate", "not a list",
        "not a number", "zero embedding size", "a zero layer", "negative factors", "a zero cutoff",
        "negative patience"])
def test_a_number_out_of_its_range_is_refused_naming_the_key(override: str, fragment: str) -> None:
    """Keras would refuse ``Dropout(1.5)`` too, but deep in a build, without the key's name."""
    with pytest.raises(ConfigError, match=fragment):
        RunConfig().with_overrides([override])


def test_the_ends_of_a_range_that_are_in_it_are_accepted() -> None:
    cfg = RunConfig().with_overrides(["ranking.dropout=0", "retrieval.blend_warm_tolerance=1",
                                      "retrieval.id_dropout=0.99", "retrieval.weight_decay=0",
                                      "retrieval.temperature_candidates=[0.15, 0.3]"])
    assert cfg.retrieval.temperature_candidates == [0.15, 0.3] and cfg.retrieval.weight_decay == 0.0
    assert (cfg.ranking.dropout, cfg.retrieval.blend_warm_tolerance, cfg.retrieval.id_dropout) == (0.0, 1.0, 0.99)
    assert descriptions()["ranking.dropout"].endswith("Range: [0, 1).")
