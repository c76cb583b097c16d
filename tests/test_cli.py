"""The ``tfmmrec`` command on an MMRec-layout dataset with precomputed vectors; and the commands
that need no model answering at once (no TensorFlow import) and quietly (no TensorFlow log lines)."""
from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import tfmmrec
from tfmmrec import cli
from tfmmrec.cli import demo_table, main
from tfmmrec.data.manifest import Manifest


@pytest.fixture(scope="module")
def mmrec_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MMRec directory: 60 users, 90 items in 3 clusters that the vectors reveal, x_label splits."""
    src = tmp_path_factory.mktemp("mmrec_src")
    rng = np.random.default_rng(0)
    n_items, n_users = 90, 60
    cluster = np.arange(n_items) % 3
    centers = rng.normal(size=(3, 16))
    np.save(src / "image_feat.npy", (centers[cluster] + 0.3 * rng.normal(size=(n_items, 16))).astype(np.float32))
    np.save(src / "text_feat.npy", rng.normal(size=(n_items, 8)).astype(np.float32))
    lines = ["userID\titemID\trating\ttimestamp\tx_label"]
    for user in range(n_users):
        liked = rng.choice(np.flatnonzero(cluster == user % 3), size=8, replace=False)
        for k, item in enumerate(liked):
            split = 0 if k < 6 else (1 if k == 6 else 2)
            lines.append(f"{user}\t{item}\t{rng.integers(3, 6)}.0\t{1600000000 + k}\t{split}")
    (src / "toy.inter").write_text("\n".join(lines) + "\n")
    out = tmp_path_factory.mktemp("mmrec") / "toy"
    assert main(["data", "import", "mmrec", str(src), "--out", str(out)]) == 0
    return out


def test_train_on_mmrec_layout_writes_metrics_and_exports(mmrec_dataset: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = tmp_path / "run"
    code = main(["train", str(mmrec_dataset), "--out", str(run_dir), "--quiet",
                 "--set", "retrieval.epochs=20", "--set", "retrieval.batch_size=64", "--set", "ranking.epochs=2",
                 # One temperature, one warm tower: selecting them is tested on the defaults in tests/train.
                 "--set", "retrieval.temperature_candidates=[]", "--set", "retrieval.warm_tower=id_content"])
    assert code == 0
    assert f"tensorboard --logdir {run_dir / 'tensorboard'}" in capsys.readouterr().out
    assert (run_dir / "tensorboard" / "multimodal" / "train").is_dir()
    metrics = json.loads((run_dir / "metrics.json").read_text())  # strict JSON: no NaN
    assert metrics["interactions"] == {"train": 360, "valid": 60, "test": 60}
    assert set(metrics["retrieval"]) == {"multimodal", "id_only"}
    assert metrics["retrieval"]["multimodal"]["cold"]["users"] == 0  # MMRec splits hold out no items
    assert metrics["retrieval"]["multimodal"]["cold"]["recall@20"] is None
    # Users like one cluster and the image vectors reveal it: far better than the 20/90 of chance.
    assert metrics["retrieval"]["multimodal"]["all"]["recall@20"] > 0.5
    assert "rmse" in metrics["ranking"]  # the .inter has ratings
    assert (run_dir / "saved_models" / "toy_retrieval" / "1" / "saved_model.pb").is_file()
    assert (run_dir / "saved_models" / "toy_ranking" / "1" / "saved_model.pb").is_file()


def test_unknown_items_stop_the_run_with_the_file_named_unless_dropped(mmrec_dataset: Path, tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(mmrec_dataset, broken)
    with open(broken / "interactions.csv", "a") as f:
        f.write("0,999,train,4.0,1600000000\n")
    args = ["train", str(broken), "--out", str(tmp_path / "run"), "--quiet", "--no-export",
            "--set", "retrieval.epochs=1", "--set", "ranking.epochs=1", "--set", "train.id_only=false",
            "--set", "retrieval.temperature_candidates=[]", "--set", "retrieval.warm_tower=id_content"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "interactions.csv" in err and "1 interactions reference item ids" in err and "--drop-unknown" in err
    assert main(args + ["--drop-unknown"]) == 0
    assert "dropped 1 interactions" in capsys.readouterr().out


def test_console_script_writes_the_demo_catalog(tmp_path: Path) -> None:
    script = shutil.which("tfmmrec") or str(Path(sys.executable).parent / "tfmmrec")
    out = tmp_path / "demo"
    proc = subprocess.run([script, "data", "demo", "--out", str(out), "--size", "small"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert Manifest.load(out).name == "demo"
    assert len(list((out / "images").glob("*.png"))) > 250


def test_demo_command_prints_the_table_and_the_decode_report(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    workdir = tmp_path / "demo"
    code = main(["demo", "--workdir", str(workdir), "--size", "small", "--quiet",
                 "--export-dir", str(tmp_path / "saved_models"),
                 "--set", "retrieval.epochs=2", "--set", "ranking.epochs=1",
                 "--set", "retrieval.temperature_candidates=[]", "--set", "retrieval.warm_tower=id_content"])
    assert code == 0
    out = capsys.readouterr().out
    assert "model        |  all R@20 |  all N@20 | warm R@20 | warm N@20 | cold R@20 | cold N@20" in out
    assert "decode report, image:" in out and "1 failed to decode (images/" in out
    assert "decode report, audio:" in out and "1 failed to decode (audio/" in out
    metrics = json.loads((workdir / "metrics.json").read_text())
    assert demo_table(metrics) in out  # the printed table is the run's metrics.json, written once by the run
    assert set(metrics["retrieval"]) == {"multimodal", "id_only"}
    overall = metrics["retrieval"]["multimodal"]["all"]
    assert f"multimodal   | {overall['recall@20']:9.4f} | {overall['ndcg@20']:9.4f} |" in out  # the overall columns
    for model in ("multimodal", "id_only", "ranking"):  # the validation split chose each model's epoch
        selection = metrics["training"][model]
        assert selection["best_epoch"] in range(1, selection["epochs_run"] + 1) and selection["epochs_run"] <= 2
        assert len(selection["val_curve"]) == selection["epochs_run"]
    assert 0 < metrics["peak_rss_gb"] < 4
    assert (tmp_path / "saved_models" / "demo_retrieval" / "1" / "saved_model.pb").is_file()
    assert (tmp_path / "saved_models" / "demo_ranking" / "1" / "saved_model.pb").is_file()


def test_train_on_a_directory_without_manifest_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", str(tmp_path), "--no-export"]) == 2
    err = capsys.readouterr().err
    assert "manifest.yaml" in err and str(tmp_path) in err and "Traceback" not in err


def test_bad_override_names_the_key(mmrec_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", str(mmrec_dataset), "--out", str(tmp_path), "--set", "retrieval.temprature=0.3"]) == 2
    assert "retrieval.temprature" in capsys.readouterr().err


def test_evaluate_reproduces_a_runs_metrics_from_its_saved_weights(trained_run, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """The run directory keeps config.yaml, run.json and weights/: enough to evaluate again, here
    with other cutoffs, and get the run's own numbers back without retraining."""
    run_dir = tmp_path / "run"
    shutil.copytree(trained_run.run_dir, run_dir, ignore=shutil.ignore_patterns("saved_models", "tensorboard"))
    assert main(["evaluate", str(run_dir), "--set", "evaluate.ks=[5, 20]"]) == 0
    out = capsys.readouterr().out
    assert "model        |  all R@20 |  all N@20 | warm R@20" in out and str(run_dir / "evaluation.json") in out
    original = json.loads((run_dir / "metrics.json").read_text())
    again = json.loads((run_dir / "evaluation.json").read_text())
    assert set(again["retrieval"]) == set(original["retrieval"]) == {"multimodal", "id_only"}
    for variant, groups in original["retrieval"].items():
        for group, m in groups.items():
            assert again["retrieval"][variant][group]["recall@20"] == pytest.approx(m["recall@20"], abs=1e-9)
            assert again["retrieval"][variant][group]["ndcg@20"] == pytest.approx(m["ndcg@20"], abs=1e-9)
            assert "recall@5" in again["retrieval"][variant][group]
            assert "recall@50" not in again["retrieval"][variant][group]
    assert again["ranking"] == pytest.approx(original["ranking"])


def test_evaluate_something_that_is_not_a_run_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "config.yaml") in err and "not a run directory" in err and "Traceback" not in err


def test_export_writes_a_new_savedmodel_from_a_runs_weights(trained_run, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    import tensorflow as tf

    run_dir = tmp_path / "run"
    shutil.copytree(trained_run.run_dir, run_dir, ignore=shutil.ignore_patterns("saved_models", "tensorboard"))
    assert main(["export", str(run_dir), "--set", "export.top_k=5"]) == 0
    path = run_dir / "saved_models" / "demo_retrieval" / "1"
    assert f"exported retrieval: {path}" in capsys.readouterr().out
    assert (run_dir / "saved_models" / "demo_ranking" / "1" / "saved_model.pb").is_file()
    users = tf.constant([str(u) for u in trained_run.data.user_ids[:3]])
    # A Python call passes every input; TF Serving fills the optional ones from the signature's defaults.
    request = {"user_id": users, "recent_item_ids": tf.fill([3, 1], ""), "exclude_item_ids": tf.fill([3, 1], ""),
               "k": tf.fill([3], 5)}
    again = tf.saved_model.load(str(path)).signatures["serving_default"](**request)
    original = tf.saved_model.load(str(trained_run.exports["retrieval"])).signatures["serving_default"](**request)
    assert again["item_ids"].shape == (3, 5)
    # The same weights give the same ranking: the new top 5 is the original export's top 5.
    assert again["item_ids"].numpy().tolist() == original["item_ids"][:, :5].numpy().tolist()
    np.testing.assert_allclose(again["scores"].numpy(), original["scores"][:, :5].numpy(), rtol=1e-5, atol=1e-6)


# --- answering at once and quietly: no TensorFlow where none is needed, none of its log lines ---

TF_LOG_LINE = re.compile(r"\.cc:\d+\] ")  # "I0000 00:00:17.. 123 port.cc:153] oneDNN custom operations ..."


def write_tiny_ml100k(root: Path) -> Path:
    root.mkdir(parents=True)
    (root / "u.genre").write_text("unknown|0\nAction|1\n")
    (root / "u.item").write_text("1|Toy Story (1995)|01-Jan-1995||http://x|0|1\n"
                                 "2|Heat (1995)|01-Jan-1995||http://y|0|1\n")
    (root / "u.user").write_text("1|24|M|technician|85711\n")
    (root / "u.data").write_text("1\t1\t5\t881250949\n1\t2\t3\t881250950\n")
    return root


def test_help_config_and_data_commands_do_not_import_tensorflow(tmp_path: Path) -> None:
    code = textwrap.dedent(f"""
        import sys
        from tfmmrec.cli import main
        for argv in (["--help"], ["train", "--help"], ["data", "import", "--help"]):
            try:
                main(argv)
            except SystemExit as e:
                assert e.code == 0, argv
        assert main(["config"]) == 0 and main(["config", "--markdown"]) == 0
        assert main(["config", "--set", "retrieval.epocs=1"]) == 2  # the error path too
        assert main(["data", "import", "movielens-100k", {str(write_tiny_ml100k(tmp_path / "src"))!r},
                     "--out", {str(tmp_path / "out")!r}]) == 0
        print("tensorflow imported:", "tensorflow" in sys.modules)
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "tensorflow imported: False" in proc.stdout
    assert "retrieval.epocs: unknown key" in proc.stderr
    assert Manifest.load(tmp_path / "out").name == "ml-100k"


def run_serving_config(base: Path, *flags: str, **env: str) -> subprocess.CompletedProcess[str]:
    """The cheapest command that loads TensorFlow (an empty BASE: two config files, no model)."""
    environ = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"} | env
    return subprocess.run([sys.executable, "-m", "tfmmrec", "serving-config", str(base), *flags],
                          capture_output=True, text=True, timeout=300, env=environ)


def test_tensorflow_log_lines_are_hidden_unless_debug(tmp_path: Path) -> None:
    quiet = run_serving_config(tmp_path)
    assert quiet.returncode == 0, quiet.stderr[-3000:]
    assert "wrote" in quiet.stdout and (tmp_path / "models.config").is_file()
    assert not TF_LOG_LINE.search(quiet.stderr) and "absl::InitializeLog" not in quiet.stderr, quiet.stderr
    debug = run_serving_config(tmp_path, "--debug")
    assert debug.returncode == 0, debug.stderr[-3000:]
    assert TF_LOG_LINE.search(debug.stderr), debug.stderr  # TensorFlow at its own level: oneDNN, CUDA ...


def test_the_users_tf_log_level_is_kept_and_applies_to_tensorflows_startup_lines(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tfmmrec, "_TF_LOG_LEVEL_FROM_USER", False)
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")  # as tfmmrec's import sets it for library users
    assert cli.tf_log_level(debug=False) == 3 and os.environ["TF_CPP_MIN_LOG_LEVEL"] == "3"
    assert cli.tf_log_level(debug=True) == 0 and "TF_CPP_MIN_LOG_LEVEL" not in os.environ
    monkeypatch.setattr(tfmmrec, "_TF_LOG_LEVEL_FROM_USER", True)
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "1")
    assert cli.tf_log_level(debug=False) == 1 and cli.tf_log_level(debug=True) == 1
    startup = ("WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
               "I0000 00:00:1796139220.259781   27779 port.cc:153] oneDNN custom operations are on.\n"
               "W0000 00:00:1796139220.260318   27779 cuda_executor.cc:1] a warning\n"
               "2024-10-30 12:00:00.123456: E external/local_xla/xla/stream_executor/cuda/cuda_fft.cc:485] "
               "an error\n"
               "/site-packages/x.py:1: UserWarning: a Python warning\n")

    def kept(level: int) -> list[str]:
        return [line.split("] ")[-1].split(": ")[-1] for line in cli.tf_startup_lines(startup, level).splitlines()]

    assert kept(1) == ["a warning", "an error", "a Python warning"]
    assert kept(2) == ["an error", "a Python warning"]
    assert kept(3) == ["a Python warning"]  # what is not TensorFlow's log stays


def test_every_command_has_its_handler_in_the_one_table() -> None:
    sub = next(a for a in cli._parser()._actions if isinstance(a, argparse._SubParsersAction))
    data = next(a for a in sub.choices["data"]._actions if isinstance(a, argparse._SubParsersAction))
    assert set(cli._COMMANDS) == {n for n in sub.choices if n != "data"} | {f"data {n}" for n in data.choices}
    assert {n for n, c in cli._COMMANDS.items() if not c.needs_tensorflow} == {"config", "data demo", "data import"}


def test_the_public_names_are_their_modules_objects() -> None:
    """``import tfmmrec`` imports each public name on first use, and it is the same object."""
    for name in tfmmrec.__all__:
        assert getattr(tfmmrec, name) is getattr(importlib.import_module(tfmmrec._MODULE_OF[name]), name), name
    assert set(tfmmrec.__all__) <= set(dir(tfmmrec))
    assert tfmmrec.pipeline is importlib.import_module("tfmmrec.pipeline")  # submodules as attributes too
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        tfmmrec.nope  # noqa: B018
