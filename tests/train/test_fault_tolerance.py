"""A training run killed with SIGKILL mid-epoch resumes when the same command is rerun, and ends
exactly where an uninterrupted run ends.

The real thing: ``tfmmrec train`` in its own process on a catalog with a content vector, with
every random draw of training switched on (id dropout, modality dropout, fusion and ranking
dropout, user-id dropout, mixed negatives, sampled ranking negatives) and early stopping on the
ranking, two temperature candidates and both warm towers (``retrieval.warm_tower: select``).
``_kill_at_step.py`` SIGKILLs it at a known step between two backups: first inside the second epoch
of the first warm tower's warm stage at its second temperature candidate, then (rerun) inside that
warm tower's content stage's second epoch, then inside the ranking model's; the fourth run
finishes. Its metrics and saved weights must equal an uninterrupted run's to 1e-5 (relative):
a resume that restarts the epoch, replays the first epoch's order or re-draws its random numbers
misses by far more (see the module's control runs in the issue note).
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
import tensorflow as tf

from tfmmrec.data.manifest import Manifest, ModalitySpec
from tfmmrec.train.resume import ResumableBackup, resume_step

REPO = Path(__file__).resolve().parents[2]
BACKUP_EVERY = 10
OVERRIDES = ["retrieval.epochs=3", "retrieval.batch_size=64", "retrieval.embedding_dim=16", "train.id_only=false",
             "retrieval.fusion_hidden=[32]", "retrieval.fusion_dropout=0.2", "retrieval.user_id_dropout=0.1",
             "retrieval.mixed_negatives=16", "ranking.epochs=3", "ranking.batch_size=256", "ranking.patience=1",
             f"train.backup_every_steps={BACKUP_EVERY}", "train.distribute=one_device", "tensorboard.enabled=false",
             "retrieval.temperature_candidates=[0.15]", "retrieval.warm_tower=select"]
# The backups killed into, in this order: the multimodal (warm/cold) model's first warm tower
# (id_content), its warm stage at the second temperature (the first one, 0.2, is restored as
# trained), its content tower (tfmmrec.train.coldstart; the warm stage is restored as trained),
# and the ranker (after the second warm tower, id, trained whole).
MODELS = {"temperature_0.15": "retrieval_multimodal/id_content/warm/temperature_0.15",
          "content": "retrieval_multimodal/id_content/content", "ranking": "ranking"}
RELATIVE = 1e-5  # float round-off; measured: bit-identical on this machine


def _write_dataset(root: Path) -> Path:
    """400 users x 300 items in taste clusters; each item has a noisy 8-d vector of its cluster,
    30 items have none (modality masked)."""
    rng = np.random.default_rng(7)
    users, items, clusters = 400, 300, 10
    user_cluster, item_cluster = rng.integers(0, clusters, users), np.arange(items) % clusters
    rows = []
    for u in range(users):
        liked = np.flatnonzero(item_cluster == user_cluster[u])
        picks = np.unique(np.concatenate([rng.choice(liked, 20), rng.integers(0, items, 4)]))
        rows += [(f"u{u}", f"i{i}") for i in picks]
    root.mkdir(parents=True)
    vectors = np.eye(clusters, 8)[item_cluster % 8] + 0.3 * rng.normal(size=(items, 8))
    vectors[rng.choice(items, 30, replace=False)] = np.nan  # no vector: the modality is masked
    np.save(root / "vec.npy", vectors.astype(np.float32))
    pd.DataFrame({"item_id": [f"i{i}" for i in range(items)]}).to_csv(root / "items.csv", index=False)
    pd.DataFrame(rows, columns=["user_id", "item_id"]).to_csv(root / "interactions.csv", index=False)
    Manifest(items="items.csv", interactions="interactions.csv", name="toy", timestamp=None,
             modalities={"vec": ModalitySpec(kind="vector", npy="vec.npy")}).save(root)
    return root


def _train(data: Path, out: Path, kill: tuple[str, int] | None = None) -> subprocess.CompletedProcess:
    """``tfmmrec train``, or (``kill``) the same command killed after step N of one model."""
    args = ["train", str(data), "--out", str(out), "--no-export", "--quiet"]
    args += [arg for o in OVERRIDES for arg in ("--set", o)]
    prefix = [sys.executable, "-m", "tfmmrec.cli"] if kill is None else [
        sys.executable, str(REPO / "tests" / "train" / "_kill_at_step.py"), kill[0], str(kill[1])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run(prefix + args, env=env, capture_output=True, text=True, timeout=600)


def _weights(run_dir: Path, model: str) -> dict[str, np.ndarray]:
    """A saved model's variables, optimizer slots included."""
    path = str(run_dir / "weights" / model / "ckpt")
    reader = tf.train.load_checkpoint(path)
    return {name: reader.get_tensor(name) for name, _ in tf.train.list_variables(path)
            if name != "_CHECKPOINTABLE_OBJECT_GRAPH"}


def _numbers(tree: object, prefix: str = "") -> dict[str, float]:
    """Every number of a metrics.json, by its path (what the machine measured, wall time and peak
    memory, left out: the final run of a resumed one trains less)."""
    if isinstance(tree, dict):
        return {k: v for key, sub in tree.items() if key not in ("seconds", "peak_rss_gb")
                for k, v in _numbers(sub, f"{prefix}/{key}").items()}
    if isinstance(tree, list):
        return {k: v for i, sub in enumerate(tree) for k, v in _numbers(sub, f"{prefix}/{i}").items()}
    return {prefix: float(tree)} if isinstance(tree, (int, float)) else {}


def _steps_per_epoch(run_dir: Path, model: str) -> int:
    """Read from a finished run's backup, which marks its model's last step of the last epoch."""
    (backup,) = run_dir.glob(f"backup/*/{MODELS[model]}/chief")
    reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(str(backup)))
    return int(reader.get_tensor("ckpt_saved_batch/.ATTRIBUTES/VARIABLE_VALUE")) + 1


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """An uninterrupted run, and one killed in the warm stage, again in the content stage, again
    in ranking, then finished."""
    root = tmp_path_factory.mktemp("resume")
    data = _write_dataset(root / "data")
    clean = _train(data, root / "clean")
    assert clean.returncode == 0, clean.stdout[-3000:] + clean.stderr[-3000:]
    steps = {m: _steps_per_epoch(root / "clean", m) for m in MODELS}
    # Killed half-way through each model's second epoch, a few steps after its last backup: the
    # rerun redoes those steps and the rest of the epoch.
    kill_at = {m: n + n // 2 + 3 for m, n in steps.items()}
    out = root / "killed"
    killed = [_train(data, out, kill=(m, kill_at[m])) for m in MODELS]
    return {"clean": root / "clean", "killed": out, "procs": killed, "final": _train(data, out),
            "steps": steps, "kill_at": kill_at}


def test_sigkilled_runs_resume_inside_the_epoch_they_were_killed_in(runs: dict) -> None:
    procs = runs["procs"]
    assert [p.returncode for p in procs] == [-signal.SIGKILL] * len(MODELS), [p.stderr[-2000:] for p in procs]
    resumed = [line for p in [*procs[1:], runs["final"]] for line in p.stdout.splitlines()
               if "resumed from backup" in line]
    for model, path in MODELS.items():
        (line,) = [x for x in resumed if f"{path}: epoch" in x]
        done = int(line.split(" step ")[1].split()[0])  # steps of epoch 2 already done
        # The last backup is at most BACKUP_EVERY steps before the kill, inside epoch 2.
        assert runs["kill_at"][model] - BACKUP_EVERY <= runs["steps"][model] + done < runs["kill_at"][model], line
    # What had finished before a kill is restored, not trained again: the first warm tower's first
    # temperature by all three reruns, its second (killed first) by the last two; the second warm
    # tower (trained whole by the third run, killed in ranking after it) by the last one.
    restored = [sum(f"retrieval_multimodal/{kind}/warm/temperature_{t}: training had finished" in line
                    for line in resumed) for kind in ("id_content", "id") for t in ("0.2", "0.15")]
    assert restored == [3, 2, 1, 1], resumed


def test_a_resumed_run_ends_exactly_where_an_uninterrupted_run_ends(runs: dict) -> None:
    assert runs["final"].returncode == 0, runs["final"].stdout[-3000:] + runs["final"].stderr[-3000:]
    clean = _numbers(json.loads((runs["clean"] / "metrics.json").read_text()))
    resumed = _numbers(json.loads((runs["killed"] / "metrics.json").read_text()))
    assert clean.keys() == resumed.keys()
    assert clean["/retrieval/multimodal/all/recall@20"] > 0.3  # well above chance (20/300)
    assert clean["/ranking/auc"] > 0.6
    for key, value in clean.items():
        if "/val_curve/" in key and key.endswith("/loss"):
            # The training loss Keras logs for an epoch is a running mean over that epoch's steps,
            # and Keras metric state is not in the backup: in the epoch that was killed it averages
            # only the resumed steps. Everything the run computes from the weights is exact.
            continue
        assert resumed[key] == pytest.approx(value, rel=RELATIVE, abs=1e-9), key
    for model in ("multimodal", "ranking"):
        a, b = _weights(runs["clean"], model), _weights(runs["killed"], model)
        # A model restored as finished (multimodal, in the third run) never builds its optimizer
        # slots, so its saved weights lack them; the ranker, resumed mid-epoch, has them all.
        weights = {n for n in a if not n.startswith("optimizer/")}
        assert weights <= b.keys() and len(weights) > 5, (model, sorted(weights - b.keys()))
        assert model == "multimodal" or a.keys() == b.keys()
        for name in a.keys() & b.keys():
            np.testing.assert_allclose(b[name], a[name], rtol=RELATIVE, atol=1e-7, err_msg=f"{model}: {name}")


def test_resume_step_is_the_step_after_the_last_backup(tmp_path: Path) -> None:
    """Where the input stream restarts: a crash at epoch 2's 5th step (index 4), backups every 2 steps."""
    import tf_keras as keras

    assert resume_step(tmp_path / "none", 8) == 0
    tf.keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.layers.Dense(1, input_shape=(3,))])
    model.compile(optimizer="adam", loss="mse")
    x = np.random.default_rng(0).normal(size=(64, 3)).astype(np.float32)

    class Crash(keras.callbacks.Callback):
        def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
            if self.epoch == 1 and batch == 4:
                raise KeyboardInterrupt  # as a kill: no epoch end, no final backup

        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            self.epoch = epoch

    with pytest.raises(KeyboardInterrupt):
        model.fit(x, x.sum(1), batch_size=8, epochs=2, verbose=0,
                  callbacks=[ResumableBackup(tmp_path / "b", 2, log=print), Crash()])
    assert resume_step(tmp_path / "b", 8) == 8 + 4  # epoch 1 done, then steps 0-3 of epoch 2 backed up


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
