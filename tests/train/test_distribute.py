"""Distributed training agrees with one device.

Two real distributed runs, started together in fresh processes (``_distributed_job.py``):
``MirroredStrategy`` over 2 logical CPU devices, and ``MultiWorkerMirroredStrategy`` with 2
worker processes talking over 127.0.0.1. Both train the same model on the same data from the
same weights as one device in this process. Because the retrieval task gathers in-batch
negatives across replicas, one global batch gives the same loss and gradients on 2 replicas as
on one device (float summation order aside), so we hold them to tight tolerances:

- one batch: loss within 1e-5 relative, gradients within 1e-4 x their largest entry;
- after 3 epochs of ``fit``: Recall@20 / NDCG@20 within 0.01, training loss within 0.1 %.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tensorflow as tf

sys.path.insert(0, str(Path(__file__).parent))
import _distributed_job as job  # noqa: E402

from tfmmrec.train.distribute import resolve_strategy, shard_by_data  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
TIMEOUT = 240  # seconds for all distributed processes together


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(args: list[str], out: Path, extra_env: dict[str, str] | None = None) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "TF_CPP_MIN_LOG_LEVEL": "2", **(extra_env or {})}
    return subprocess.Popen([sys.executable, str(Path(__file__).parent / "_distributed_job.py"), *args,
                             "--out", str(out)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Start the mirrored run and both workers, compute the one-device reference meanwhile."""
    tmp = tmp_path_factory.mktemp("distribute")
    ports = [_free_port(), _free_port()]
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs = {"mirrored": _launch(["--strategy", "mirrored"], tmp / "mirrored.json")}
    for i in range(2):
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})
        procs[f"worker{i}"] = _launch(["--strategy", "multi_worker"], tmp / f"worker{i}.json",
                                      {"TF_CONFIG": tf_config})
    one_device = tf.distribute.get_strategy()
    results: dict[str, Any] = {"one_device": {"exact": job.loss_and_gradients(one_device),
                                              "fit": job.train_and_score(one_device)}}
    try:
        for name, proc in procs.items():
            out, _ = proc.communicate(timeout=TIMEOUT)
            assert proc.returncode == 0, f"{name} failed:\n{out[-4000:]}"
            results[name] = json.loads((tmp / f"{name}.json").read_text())
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
    return results


def _assert_fit_agrees(ours: dict[str, float], ref: dict[str, float]) -> None:
    assert ours["recall@20"] == pytest.approx(ref["recall@20"], abs=0.01)
    assert ours["ndcg@20"] == pytest.approx(ref["ndcg@20"], abs=0.01)
    assert ours["train_loss"] == pytest.approx(ref["train_loss"], rel=1e-3)
    # Keras's evaluate under the strategy gives the one-pass numbers of the same weights.
    assert ours["keras_users"] == ours["protocol_users"] > 0
    assert ours["keras_recall@20"] == pytest.approx(ours["protocol_recall@20"], abs=1e-6)


def test_mirrored_batch_has_one_device_loss_and_gradients(runs: dict[str, Any]) -> None:
    ref, ours = runs["one_device"]["exact"], runs["mirrored"]["exact"]
    assert ours["replicas"] == 2
    assert ours["loss"] == pytest.approx(ref["loss"], rel=1e-5)
    for g_ours, g_ref in zip(ours["grads"], ref["grads"]):
        g_ours, g_ref = np.asarray(g_ours), np.asarray(g_ref)
        np.testing.assert_allclose(g_ours, g_ref, atol=1e-4 * np.abs(g_ref).max())


def test_without_gathering_the_loss_would_differ() -> None:
    """What TFRS does by default: each replica's half-batch alone. Its loss is clearly different,
    so the equality above really depends on the gathered negatives."""
    data, _, model = job.setup(tf.distribute.get_strategy())
    half = job.BATCH // 2
    prob = data.item_prob[data.train.item]

    def loss(rows: slice) -> float:
        return float(model.compute_loss({"user": data.train.user[rows], "item": data.train.item[rows],
                                         "item_prob": prob[rows]}))

    whole = loss(slice(0, job.BATCH))
    halves = loss(slice(0, half)) + loss(slice(half, job.BATCH))
    assert abs(whole - halves) / whole > 0.02


def test_mirrored_fit_agrees_with_one_device(runs: dict[str, Any]) -> None:
    assert runs["mirrored"]["replicas"] == 2
    _assert_fit_agrees(runs["mirrored"]["fit"], runs["one_device"]["fit"])


def test_multi_worker_fit_agrees_with_one_device(runs: dict[str, Any]) -> None:
    for worker in ("worker0", "worker1"):
        assert runs[worker]["replicas"] == 2
        _assert_fit_agrees(runs[worker]["fit"], runs["one_device"]["fit"])


def test_strategy_names() -> None:
    assert resolve_strategy("auto") is tf.distribute.get_strategy()  # no GPUs here: one device
    assert resolve_strategy("one_device").num_replicas_in_sync == 1
    with pytest.raises(ValueError, match="parameter_server"):
        resolve_strategy("parameter_server")


def test_in_memory_input_is_sharded_by_data() -> None:
    ds = shard_by_data(tf.data.Dataset.range(4))
    assert ds.options().experimental_distribute.auto_shard_policy == tf.data.experimental.AutoShardPolicy.DATA


def test_ranking_compiles_and_trains_under_a_strategy() -> None:
    """DeepFM's loss and AUC metric are created under the model's strategy (Keras refuses others)."""
    from tfmmrec.config import RankingConfig
    from tfmmrec.models.build import build_ranking
    from tfmmrec.train.fit import train_ranking

    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    data, _, _ = job.setup(tf.distribute.get_strategy())
    features = job.item_features(data)
    cfg = RankingConfig(field_dim=4, hidden_units=[8], epochs=1, batch_size=512)
    with strategy.scope():
        model = build_ranking(features, data.num_users, cfg, use_content=False)
    history = train_ranking(model, data, cfg, mode="implicit", verbose=0)
    assert model.distribute_strategy is strategy
    assert np.isfinite(history.history["loss"][0])


def test_the_staged_matrix_factorisation_trains_under_a_strategy() -> None:
    """``MatrixFactorization.train_step`` (one stage's variables) under a MirroredStrategy: both
    stages update what they train, inside the strategy's replica context."""
    import dataclasses

    from tfmmrec.config import RankingConfig
    from tfmmrec.models.build import build_ranking
    from tfmmrec.train.fit import train_ranking

    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    data, _, _ = job.setup(tf.distribute.get_strategy())
    rated = lambda s: dataclasses.replace(s, target=(1.0 + (s.user + s.item) % 5).astype(np.float32))  # noqa: E731
    data = dataclasses.replace(data, train=rated(data.train), valid=rated(data.valid))
    ids = job.item_features(data)
    text = np.random.default_rng(0).normal(size=(data.num_items + 1, 6)).astype(np.float32)
    features = dataclasses.replace(ids, content={"text": text}, masks={"text": np.ones(len(text), np.float32)})
    cfg = RankingConfig(mf_factors=4, epochs=2, batch_size=512)
    with strategy.scope():  # variables too: Keras refuses a model with variables from outside
        model = build_ranking(features, data.num_users, cfg, rating=True)
        model({"user": tf.constant([1]), "item": tf.constant([1])})
    before = {v.name: v.numpy().copy() for v in model.trainable_variables}
    history = train_ranking(model, data, cfg, mode="rating", verbose=0)
    assert model.distribute_strategy is strategy and model.stage == "served"
    assert model.use_content and "content" in history.selection
    moved = {v.name for v in model.trainable_variables if not np.allclose(v.numpy(), before[v.name])}
    content = {v.name for layer in model.content_layers() for v in layer.trainable_variables}
    assert "user_factors/embeddings:0" in {n.split("/", 1)[-1] for n in moved}  # the ids stage trained
    assert moved & content, sorted(moved)  # and so did the content stage
