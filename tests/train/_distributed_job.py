"""One small retrieval training under a given strategy, used by ``test_distribute.py``.

Run as a script it is one process of a distributed run (a strategy needs a fresh process:
logical CPU devices must be configured before TensorFlow initialises, and a multi-worker
strategy is one per process); imported, the same function trains on one device in the test
process, so every variant trains the same model on the same data from the same weights.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

import numpy as np
import pandas as pd

EPOCHS, BATCH = 3, 256


def toy_interactions(seed: int = 0) -> pd.DataFrame:
    """300 users x 200 items in 8 taste clusters (so Recall@20 is well above chance), 80/20 split."""
    rng = np.random.default_rng(seed)
    users, items, clusters = 300, 200, 8
    user_cluster, item_cluster = rng.integers(0, clusters, users), np.arange(items) % clusters
    rows = []
    for u in range(users):
        liked = np.flatnonzero(item_cluster == user_cluster[u])
        picks = np.unique(np.concatenate([rng.choice(liked, 12), rng.integers(0, items, 3)]))
        rows += [(f"u{u}", int(i)) for i in picks]
    df = pd.DataFrame(rows, columns=["user_id", "item_idx"])
    df["split"] = np.where(rng.random(len(df)) < 0.8, "train", "test")
    return df


def item_features(data: Any) -> Any:
    """ID-only item features: every catalog item its own id row, no content."""
    from tfmmrec.models.features import ItemFeatures

    n = data.num_items
    return ItemFeatures({}, {}, np.arange(n + 1, dtype=np.int32), np.zeros((n + 1, 0), np.int32), [],
                        np.zeros((n + 1, 0), np.float32))


def setup(strategy: Any) -> tuple[Any, Any, Any]:
    """Data, config and a model built under ``strategy`` with deterministic initial weights."""
    import tensorflow as tf

    from tfmmrec.config import RetrievalConfig
    from tfmmrec.data.interactions import encode_interactions
    from tfmmrec.models.build import build_retrieval

    data = encode_interactions(toy_interactions(), num_items=200)
    features = item_features(data)
    cfg = RetrievalConfig(embedding_dim=16, batch_size=BATCH, epochs=EPOCHS, learning_rate=0.02)
    with strategy.scope():
        model = build_retrieval(features, data.num_users, cfg, use_content=False)
        model.query_tower(tf.zeros([1], tf.int32))
        model.item_tower(tf.zeros([1], tf.int32))
        rng = np.random.default_rng(1)
        for w in model.trainable_weights:
            w.assign(rng.normal(0, 0.1, w.shape).astype(np.float32))
    return data, cfg, model


def train_and_score(strategy: Any) -> dict[str, float]:
    """Train EPOCHS epochs with ``fit`` under ``strategy``; test Recall/NDCG@20 and the training loss."""
    from tfmmrec.evaluate.protocol import embed_all
    from tfmmrec.evaluate.retrieval import evaluate_retrieval
    from tfmmrec.train.fit import train_retrieval
    from tfmmrec.train.inputs import retrieval_dataset

    data, cfg, model = setup(strategy)
    train_retrieval(model, data, cfg, seed=0, verbose=0)
    u, v = embed_all(model, data)
    m = evaluate_retrieval(u, v, (data.test.user, data.test.item - 1), (data.train.user, data.train.item - 1),
                           ks=(20,))["all"]
    # The loss of the trained model over the training data in fixed batches, one device.
    loss = sum(float(model.compute_loss(b)) for b in retrieval_dataset(data, BATCH, seed=0))
    # The same protocol through Keras's evaluate, under the strategy (the catalog metrics are
    # summed over replicas and workers; read once, they must equal the one-pass numbers).
    from tfmmrec.evaluate.protocol import retrieval_eval_protocol
    from tfmmrec.train.distribute import shard_by_data
    from tfmmrec.train.eval_inputs import retrieval_eval_dataset

    heldout, exclude, _ = retrieval_eval_protocol(data, "test")
    reference = evaluate_retrieval(u, v, heldout, exclude, ks=(20,))["all"]
    keras_metrics = model.evaluate(shard_by_data(retrieval_eval_dataset(data, "test", batch_size=64)),
                                   return_dict=True, verbose=0)
    return {"recall@20": m["recall@20"], "ndcg@20": m["ndcg@20"], "train_loss": loss,
            "protocol_recall@20": reference["recall@20"], "keras_recall@20": keras_metrics["recall_at_20"],
            "protocol_users": reference["users"], "keras_users": keras_metrics["users"]}


def loss_and_gradients(strategy: Any) -> dict[str, Any]:
    """Loss and variable gradients of one global batch, summed over the replicas of ``strategy``."""
    import tensorflow as tf

    data, _, model = setup(strategy)
    batch = {"user": data.train.user[:BATCH], "item": data.train.item[:BATCH],
             "item_prob": data.item_prob[data.train.item[:BATCH]]}
    dataset = tf.data.Dataset.from_tensor_slices(batch).batch(BATCH)
    dist = strategy.experimental_distribute_dataset(dataset)

    @tf.function
    def step(features: dict[str, tf.Tensor]) -> tuple[tf.Tensor, list[tf.Tensor]]:
        with tf.GradientTape() as tape:
            loss = model.compute_loss(features, training=True)
        grads = tape.gradient(loss, model.trainable_weights)
        return loss, [tf.convert_to_tensor(g) for g in grads]

    per_replica = strategy.run(step, args=(next(iter(dist)),))
    loss = strategy.reduce("SUM", per_replica[0], axis=None)
    grads = [strategy.reduce("SUM", g, axis=None) for g in per_replica[1]]
    return {"loss": float(loss), "grads": [g.numpy().tolist() for g in grads],
            "replicas": strategy.num_replicas_in_sync}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--strategy", choices=["mirrored", "multi_worker"], required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    import tensorflow as tf

    import tfmmrec  # noqa: F401
    from tfmmrec.train.distribute import resolve_strategy

    if args.strategy == "mirrored":
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        result: dict[str, Any] = {"exact": loss_and_gradients(strategy)}
    else:
        strategy = resolve_strategy("multi_worker")
        result = {}
    result["replicas"] = strategy.num_replicas_in_sync
    result["fit"] = train_and_score(strategy)
    with open(args.out, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    main()
