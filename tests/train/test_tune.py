"""keras-tuner on the TFRS two-tower model: a real search on the small demo catalog."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import tensorflow as tf
from tensorboard.plugins.hparams import plugin_data_pb2

from tfmmrec.cli import main
from tfmmrec.config import ConfigError, RunConfig
from tfmmrec.train.tune import ConfigTuner, search_space, trial_config, tune

# A learning rate of 1e-5 barely moves the weights in 3 epochs: the grid's first trial is a
# known-bad configuration, so "the search improved on its first trial" is a fair check.
SEARCH = ["split.strategy=cold_start", "split.cold_item_frac=0.2", "retrieval.batch_size=512",
          "tune.algorithm=grid", "tune.epochs=3", "tune.max_trials=2",
          'tune.space={"retrieval.learning_rate": [0.00001, 0.01, 0.03]}']


def hparams_sessions(hparams_dir: Path) -> dict[str, dict[str, Any]]:
    """trial id -> {"hparams": {...}, "metrics": {...}, "events": n} read from the event files."""
    out: dict[str, dict[str, Any]] = {}
    for trial_dir in sorted(p for p in hparams_dir.iterdir() if p.is_dir()):
        session: dict[str, Any] = {"hparams": {}, "metrics": {}, "events": 0}
        for path in trial_dir.glob("events.out.tfevents.*"):
            session["events"] += 1
            for event in tf.compat.v1.train.summary_iterator(str(path)):
                for v in event.summary.value:
                    if v.metadata.plugin_data.plugin_name == "hparams":
                        data = plugin_data_pb2.HParamsPluginData.FromString(v.metadata.plugin_data.content)
                        for name, value in data.session_start_info.hparams.items():
                            session["hparams"][name] = value.number_value
                    elif v.tag:
                        session["metrics"][v.tag] = float(tf.make_ndarray(v.tensor))
        out[trial_dir.name] = session
    return out


@pytest.fixture(scope="module")
def search(demo_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    out = tmp_path_factory.mktemp("tune")
    return out, tune(demo_dir, out, RunConfig().with_overrides(SEARCH))


def test_search_improves_on_its_first_trial_and_writes_the_best_config(search: tuple[Path, Any]) -> None:
    out, result = search
    first, second = result.trials
    assert first["values"] == {"retrieval.learning_rate": 1e-5}
    assert second["objective"] > first["objective"] + 0.02
    assert result.objective == "val_recall@20"
    best = RunConfig.from_yaml(out / "best.yaml")
    assert best.retrieval.learning_rate == second["values"]["retrieval.learning_rate"]
    # best.yaml is a run config to train: everything else as searched, the configured epochs kept.
    assert best.retrieval.epochs == RunConfig().retrieval.epochs and best.retrieval.batch_size == 512
    assert json.loads((out / "trials.json").read_text()) == result.trials


def test_each_trial_is_in_the_hparams_dashboard(search: tuple[Path, Any]) -> None:
    _, result = search
    sessions = hparams_sessions(result.directory / "hparams")
    assert sorted(sessions) == [t["trial_id"] for t in result.trials]
    for t in result.trials:
        s = sessions[t["trial_id"]]
        assert s["hparams"] == pytest.approx(t["values"])
        assert s["metrics"]["val_recall@20"] == pytest.approx(t["objective"])
    # The experiment summary (columns of the dashboard) sits at the top of the hparams logs.
    top = list((result.directory / "hparams").glob("events.out.tfevents.*"))
    tags = {v.tag for p in top for e in tf.compat.v1.train.summary_iterator(str(p)) for v in e.summary.value}
    assert "_hparams_/experiment" in tags


def test_the_same_command_resumes_without_rerunning_finished_trials(search: tuple[Path, Any], demo_dir: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    out, result = search
    argv = ["tune", str(demo_dir), "--out", str(out), "--quiet", *[a for s in SEARCH for a in ("--set", s)],
            "--set", "tune.max_trials=3"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "best: trial" in printed and f"tfmmrec train {demo_dir} --config {out / 'best.yaml'}" in printed
    trials = json.loads((out / "trials.json").read_text())
    assert len(trials) == 3 and trials[:2] == result.trials  # the finished two were kept, not rerun
    assert trials[2]["values"] == {"retrieval.learning_rate": 0.03}
    sessions = hparams_sessions(result.directory / "hparams")
    assert len(sessions) == 3 and all(s["events"] == 1 for s in sessions.values())


def test_search_space_keys_are_checked_against_the_config() -> None:
    with pytest.raises(ConfigError, match=r"tune\.space\.retrieval\.temprature"):
        search_space(RunConfig().with_overrides(['tune.space={"retrieval.temprature": [0.1]}']))
    with pytest.raises(ConfigError, match=r"tune\.space\.retrieval\.epochs"):
        search_space(RunConfig().with_overrides(['tune.space={"retrieval.epochs": [1, 0.5]}']))
    hp = search_space(RunConfig().with_overrides(['tune.space={"retrieval.temperature": [1, 0.5]}']))
    assert hp.space[0].values == [1.0, 0.5]  # ints among floats are floats (one type per choice)
    cfg = trial_config(RunConfig().with_overrides(["tune.epochs=2"]), {"retrieval.temperature": 1e-3})
    assert cfg.retrieval.temperature == 1e-3 and cfg.retrieval.epochs == 2


def test_resuming_with_another_space_is_refused(tmp_path: Path) -> None:
    def never_called(cfg: RunConfig) -> dict[str, float]:
        raise AssertionError("no trial runs in this test")

    a = RunConfig().with_overrides(['tune.space={"retrieval.temperature": [0.1, 0.2]}'])
    ConfigTuner(a, never_called, tmp_path, objective="val_recall@20").save()
    b = a.with_overrides(['tune.space={"retrieval.temperature": [0.1, 0.5]}'])
    with pytest.raises(ConfigError, match="tune.space differs"):
        ConfigTuner(b, never_called, tmp_path, objective="val_recall@20")


def test_ranking_search_scores_validation_auc(demo_dir: Path, tmp_path: Path) -> None:
    cfg = RunConfig().with_overrides([
        "split.strategy=cold_start", "tune.task=ranking", "tune.algorithm=random", "tune.max_trials=1",
        "ranking.epochs=1", "ranking.negatives=2", 'tune.space={"ranking.learning_rate": [0.005]}'])
    result = tune(demo_dir, tmp_path, cfg)
    (trial,) = result.trials
    assert result.objective == "val_auc"
    assert 0.5 < trial["objective"] <= 1.0  # DeepFM on the demo ranks positives above sampled negatives
    assert RunConfig.from_yaml(result.best_path).tune.task == "ranking"


def test_stock_keras_tuner_rejects_tf_keras_models_which_is_why_config_tuner_exists(tmp_path: Path) -> None:
    """keras-tuner 1.4.8 type-checks built models against Keras 3; TFRS models are tf_keras models.
    If a later keras-tuner accepts them, this test says ConfigTuner's detour can go."""
    import keras_tuner as kt
    import numpy as np
    import tf_keras as keras

    def build(hp: kt.HyperParameters) -> keras.Model:
        model = keras.Sequential([keras.layers.Dense(hp.Choice("units", [2, 4]))])
        model.compile("adam", "mse")
        return model

    tuner = kt.RandomSearch(build, objective="loss", max_trials=1, directory=str(tmp_path))
    with pytest.raises(kt.errors.FatalTypeError, match="tf_keras"):
        tuner.search(np.zeros((4, 3)), np.zeros((4, 2)), epochs=1, verbose=0)


def test_a_trial_given_a_temperature_trains_at_that_temperature_only() -> None:
    """A tuned temperature is not second-guessed by ``retrieval.temperature_candidates``; other trials keep them."""
    base = RunConfig().with_overrides(["retrieval.temperature_candidates=[0.15]"])
    given = trial_config(base, {"retrieval.temperature": 0.3})
    assert (given.retrieval.temperature, given.retrieval.temperature_candidates) == (0.3, [])
    assert trial_config(base, {"retrieval.learning_rate": 0.02}).retrieval.temperature_candidates == \
        base.retrieval.temperature_candidates
