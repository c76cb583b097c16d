"""Faults around a run: a second run into a busy run directory, a lock left by a killed run,
directories that cannot be written, an export that fails after training. Each case asserts its
clean outcome: exit code 2 with a message naming the directory (or lock and pid), nothing
trained where it should not be, and the run's results kept where it trained.

(Killed and resumed training: tests/train/test_fault_tolerance.py; concurrent exports into one
model directory: tests/export/test_versioning.py.)
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tfmmrec.config import RunConfig
from tfmmrec.data.manifest import Manifest, ModalitySpec
from tfmmrec.pipeline import run
from tfmmrec.train.run_dir import LOCK_FILE, RunDirError, check_writable, run_dir_lock

REPO = Path(__file__).resolve().parents[2]
QUICK = ["train.ranking=false", "train.id_only=false", "retrieval.epochs=1", "retrieval.batch_size=256",
         "retrieval.embedding_dim=8", "tensorboard.enabled=false", "export.top_k=5",
         "retrieval.temperature_candidates=[]", "retrieval.warm_tower=id_content"]


def _dataset(root: Path, text: bool = False) -> Path:
    """60 items, 40 users, 10 interactions each; optionally a text column as a modality."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    items = pd.DataFrame({"item_id": [f"i{i}" for i in range(60)], "title": [f"item {i % 6}" for i in range(60)]})
    items.to_csv(root / "items.csv", index=False)
    rows = [(f"u{u}", f"i{i}") for u in range(40) for i in rng.choice(60, 10, replace=False)]
    pd.DataFrame(rows, columns=["user_id", "item_id"]).to_csv(root / "interactions.csv", index=False)
    modalities = {"title": ModalitySpec(kind="text", columns=["title"])} if text else {}
    Manifest(items="items.csv", interactions="interactions.csv", name="faults", timestamp=None,
             modalities=modalities).save(root)
    return root


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
            "TF_CPP_MIN_LOG_LEVEL": "2"}


def _cli(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tfmmrec.cli", *args], env=_env(), capture_output=True, text=True,
                          timeout=timeout)


def _train_args(data: Path, out: Path, *extra: str) -> list[str]:
    return ["train", str(data), "--out", str(out), "--quiet", *extra, *[a for o in QUICK for a in ("--set", o)]]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _dataset(tmp_path_factory.mktemp("faults") / "data")


HOLD_LOCK = """
import sys, time
from tfmmrec.train.run_dir import run_dir_lock
with run_dir_lock(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(120)
"""


def test_a_second_train_into_a_busy_run_dir_stops_at_once_naming_the_lock_and_its_pid(data: Path,
                                                                                         tmp_path: Path) -> None:
    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(out)], env=_env(), stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"  # type: ignore[union-attr]
        second = _cli(*_train_args(data, out, "--no-export"))
        assert second.returncode == 2, second.stderr[-2000:]
        assert f"pid {holder.pid}" in second.stderr and str(out / LOCK_FILE) in second.stderr
        assert "Traceback" not in second.stderr
        assert not (out / "metrics.json").exists() and not (out / "config.yaml").exists()  # it wrote nothing
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    # The holder died (SIGKILL): its lock file is left with its pid, and the next run takes it over.
    assert (out / LOCK_FILE).read_text().strip() == str(holder.pid)
    third = _cli(*_train_args(data, out, "--no-export"))
    assert third.returncode == 0, third.stderr[-3000:]
    assert json.loads((out / "metrics.json").read_text())["retrieval"]["id_only"]["all"]["users"] > 0


def test_run_refuses_a_run_dir_locked_in_the_same_process(data: Path, tmp_path: Path) -> None:
    with run_dir_lock(tmp_path / "run"):
        with pytest.raises(RunDirError, match=f"pid {os.getpid()}"):
            run(data, tmp_path / "run", RunConfig().with_overrides(QUICK), export_dir=None, verbose=0)
    with run_dir_lock(tmp_path / "run"):  # released on exit: taken again
        pass


@pytest.mark.parametrize("what", ["run", "backup"])
def test_an_unwritable_run_or_backup_dir_stops_before_training(data: Path, tmp_path: Path, what: str) -> None:
    """A regular file where the directory should be (permissions do not stop root, this does)."""
    blocker = tmp_path / "blocker"
    blocker.write_text("not a directory")
    out = blocker / "run" if what == "run" else tmp_path / "run"
    if what == "backup":
        out.mkdir()
        (out / "backup").write_text("not a directory")
    result = _cli(*_train_args(data, out, "--no-export"), timeout=120)
    assert result.returncode == 2, result.stderr[-2000:]
    target = out if what == "run" else out / "backup"
    assert f"{what} directory {target} is not writable" in result.stderr
    assert "nothing was trained" in result.stderr and "Traceback" not in result.stderr
    assert "[train]" not in result.stdout
    assert blocker.read_text() == "not a directory"


def test_an_unwritable_embedding_cache_stops_before_encoding_or_training(tmp_path: Path) -> None:
    data = _dataset(tmp_path / "data", text=True)
    (data / ".tfmmrec_cache").write_text("not a directory")
    with pytest.raises(RunDirError, match=r"cache directory .*\.tfmmrec_cache is not writable"):
        run(data, tmp_path / "run", RunConfig().with_overrides(QUICK), export_dir=None, verbose=0)
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_check_writable_names_the_directory_and_skips_none(tmp_path: Path) -> None:
    check_writable(run=tmp_path / "a" / "b", backup=None)
    assert (tmp_path / "a" / "b").is_dir() and not list((tmp_path / "a" / "b").iterdir())  # the probe is gone
    (tmp_path / "f").write_text("")
    with pytest.raises(RunDirError, match=r"cache directory .*f/x is not writable"):
        check_writable(cache=tmp_path / "f" / "x")


def test_an_export_that_fails_after_training_keeps_the_runs_metrics_and_says_so(data: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    out = tmp_path / "run"
    result = _cli(*_train_args(data, out, "--export-dir", str(blocker / "models")))
    assert result.returncode == 2, result.stderr[-3000:]
    assert f"export to {blocker / 'models'} failed" in result.stderr
    assert str(out / "metrics.json") in result.stderr and "tfmmrec export" in result.stderr
    assert "Traceback" not in result.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["retrieval"]["id_only"]["all"]["recall@20"] >= 0  # the trained run's results are there
    assert metrics["exports"] == {} and "export_error" in metrics
    assert (out / "weights" / "id_only" / "ckpt.index").is_file()  # `tfmmrec export RUN_DIR` can redo it
