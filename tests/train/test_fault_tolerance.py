"""A training run killed with SIGKILL mid-epoch resumes when the same command is rerun.

The real thing: ``tfmmrec train`` in its own process, backing up every 10 steps; we wait for
its first backup, kill -9 it, rerun the identical command, and check that the rerun says it
resumed inside an epoch and ends within tolerance (Recall@20 / NDCG@20 within 0.05) of an
uninterrupted run of the same config.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from tfmmrec.config import RunConfig
from tfmmrec.data.manifest import Manifest
from tfmmrec.pipeline import run
from tfmmrec.train.resume import ResumableBackup

REPO = Path(__file__).resolve().parents[2]
OVERRIDES = ["train_ranking=false", "retrieval.epochs=3", "retrieval.batch_size=64", "retrieval.embedding_dim=16",
             "backup_every_steps=10", "distribute=one_device"]


def _write_dataset(root: Path) -> Path:
    """An ID-only dataset in the standard layout: 400 users x 300 items in taste clusters."""
    rng = np.random.default_rng(7)
    users, items, clusters = 400, 300, 10
    user_cluster, item_cluster = rng.integers(0, clusters, users), np.arange(items) % clusters
    rows = []
    for u in range(users):
        liked = np.flatnonzero(item_cluster == user_cluster[u])
        picks = np.unique(np.concatenate([rng.choice(liked, 20), rng.integers(0, items, 4)]))
        rows += [(f"u{u}", f"i{i}") for i in picks]
    root.mkdir(parents=True)
    pd.DataFrame({"item_id": [f"i{i}" for i in range(items)]}).to_csv(root / "items.csv", index=False)
    pd.DataFrame(rows, columns=["user_id", "item_id"]).to_csv(root / "interactions.csv", index=False)
    Manifest(items="items.csv", interactions="interactions.csv", name="toy", timestamp=None).save(root)
    return root


def _train_command(data: Path, out: Path) -> list[str]:
    cmd = [sys.executable, "-m", "tfmmrec.cli", "train", str(data), "--out", str(out), "--no-export"]
    return cmd + [arg for o in OVERRIDES for arg in ("--set", o)]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
            "TF_CPP_MIN_LOG_LEVEL": "2"}


def test_sigkilled_run_resumes_mid_epoch_and_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    data = _write_dataset(tmp_path / "data")
    out = tmp_path / "run"
    first = subprocess.Popen(_train_command(data, out), env=_env(), stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    try:
        while not list(out.glob("backup/*/retrieval_id_only/chief/checkpoint")):
            assert first.poll() is None, "training ended before its first backup:\n" + first.stdout.read()[-3000:]
            assert time.monotonic() < deadline, "no backup within 120 s"
            time.sleep(0.02)
        first.send_signal(signal.SIGKILL)
    finally:
        first.kill()
        first.communicate()
    assert first.returncode == -signal.SIGKILL
    assert not (out / "metrics.json").exists()

    second = subprocess.run(_train_command(data, out), env=_env(), capture_output=True, text=True, timeout=180)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    resumed = [line for line in second.stdout.splitlines() if "resumed from backup" in line]
    assert resumed and "epoch 1, step " in resumed[0], second.stdout[-3000:]  # inside the first epoch
    written = json.loads((out / "metrics.json").read_text())
    resumed_metrics = written["retrieval"]["id_only"]["all"]
    # Model selection survived the kill: one validation point per epoch, counted across both processes.
    selection = written["training"]["id_only"]
    assert [p["epoch"] for p in selection["val_curve"]] == list(range(1, selection["epochs_run"] + 1))
    assert list((out / "backup").glob("*/retrieval_id_only/early_stopping/state.json"))

    # The same config, never interrupted, in this process.
    cfg = RunConfig().with_overrides(OVERRIDES)
    clean = run(data, tmp_path / "clean", cfg, export_dir=None, verbose=0).metrics["retrieval"]["id_only"]["all"]
    for metric in ("recall@20", "ndcg@20"):
        assert resumed_metrics[metric] == pytest.approx(clean[metric], abs=0.05), metric
    assert selection["epochs_run"] == 3  # what the uninterrupted run also trains (no early stop in 3 epochs)
    assert clean["recall@20"] > 0.2  # well above chance (20/300): the comparison means something


def test_a_finished_training_is_restored_not_repeated(tmp_path: Path) -> None:
    """Rerunning a finished stage trains zero epochs and comes back with the trained weights."""
    import tf_keras as keras

    def fit(backup: Path) -> tuple[keras.Model, keras.callbacks.History, ResumableBackup]:
        tf.keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.layers.Dense(1, input_shape=(3,))])
        model.compile(optimizer="adam", loss="mse")
        callback = ResumableBackup(backup, every_steps=2, log=lambda _: None)
        x = np.random.default_rng(0).normal(size=(64, 3)).astype(np.float32)
        return model, model.fit(x, x.sum(1), batch_size=8, epochs=2, verbose=0, callbacks=[callback]), callback

    trained, history, _ = fit(tmp_path / "backup")
    assert history.epoch == [0, 1]
    restored, history, callback = fit(tmp_path / "backup")
    assert history.epoch == []
    assert callback.resumed_at == (1, 7)  # last epoch, last of its 8 steps
    for a, b in zip(trained.get_weights(), restored.get_weights()):
        np.testing.assert_array_equal(a, b)
