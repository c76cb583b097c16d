"""Probe: does LightGCN propagation (He et al. 2020) lift a tuned TFRS ID two-tower on MovieLens?

Issue 11 measured 0 to +0.5% from 2-layer LightGCN on its held-out sets and asked to keep graph
propagation as an option if it pays on our data. This trains, on the quality runner's splits
(``benchmarks/quality.py``: same seeds, split, validation early stopping and test protocol), the
``tfrs_id`` recipe (embeddings 128, temperature 0.2, logQ, accidental hits removed, Adam 0.01, batch
1024) with the id embeddings propagated over the normalised user-item graph of the training
interactions, ``(E + A E + ... + A^L E) / (L + 1)``, before L2 normalisation; every step propagates
the whole graph (a sparse matmul per layer). Result in benchmarks/README.md ("Quality"); it did not
pay, so it is not in the library.

    PYTHONPATH=. python benchmarks/lightgcn_probe.py --movielens ../shared/data/ml-latest-small --layers 2
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy as np  # noqa: E402
import quality  # noqa: E402  (imports tfmmrec first: the legacy-Keras switch before TF)
import tensorflow as tf  # noqa: E402
import tensorflow_recommenders as tfrs  # noqa: E402
import tf_keras as keras  # noqa: E402

from tfmmrec.config import RunConfig  # noqa: E402
from tfmmrec.data.loader import load_dataset  # noqa: E402
from tfmmrec.evaluate.protocol import valid_recalls  # noqa: E402
from tfmmrec.train.prepare import prepare_data  # noqa: E402


class LightGCNTwoTower(tfrs.Model):
    """User and item id embeddings in one table (users first), propagated over the training graph."""

    def __init__(self, num_users: int, num_items: int, users: np.ndarray, items: np.ndarray, layers: int,
                 dim: int = 128, temperature: float = 0.2) -> None:
        super().__init__()
        self.num_users, self.num_nodes, self.layers_n = num_users + 1, num_users + num_items + 2, layers
        self.embedding = keras.layers.Embedding(self.num_nodes, dim)
        pairs = np.unique(np.stack([users, items], 1), axis=0)
        rows = np.r_[pairs[:, 0], pairs[:, 1] + self.num_users]
        cols = np.r_[pairs[:, 1] + self.num_users, pairs[:, 0]]
        degree = np.bincount(rows, minlength=self.num_nodes).astype(np.float32)
        order = np.lexsort((cols, rows))
        self.adjacency = tf.sparse.SparseTensor(np.stack([rows, cols], 1)[order].astype(np.int64),
                                                (1 / np.sqrt(degree[rows] * degree[cols]))[order].astype(np.float32),
                                                [self.num_nodes, self.num_nodes])
        self.task = tfrs.tasks.Retrieval(temperature=temperature, remove_accidental_hits=True)

    def tables(self) -> tuple[tf.Tensor, tf.Tensor]:
        layer = self.embedding(tf.range(self.num_nodes))
        total = layer
        for _ in range(self.layers_n):
            layer = tf.sparse.sparse_dense_matmul(self.adjacency, layer)
            total += layer
        out = tf.math.l2_normalize(total / (self.layers_n + 1), -1)
        return out[:self.num_users], out[self.num_users:]

    def compute_loss(self, features: dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        users, items = self.tables()
        return self.task(tf.gather(users, features["user"]), tf.gather(items, features["item"]),
                         candidate_sampling_probability=features["prob"], candidate_ids=features["item"],
                         compute_metrics=False)


def run(prep: Any, seed: int, layers: int, max_epochs: int, patience: int) -> dict[str, Any]:
    data = prep.data
    tf.keras.utils.set_random_seed(seed)
    model = LightGCNTwoTower(data.num_users, data.num_items, data.train.user, data.train.item, layers)
    model.compile(optimizer=keras.optimizers.Adam(0.01))
    train = tf.data.Dataset.from_tensor_slices({"user": data.train.user.astype(np.int32),
                                                "item": data.train.item.astype(np.int32),
                                                "prob": data.item_prob[data.train.item]})
    train = train.shuffle(len(data.train), seed=seed, reshuffle_each_iteration=True).batch(1024)

    def embed() -> tuple[np.ndarray, np.ndarray]:
        users, items = model.tables()
        return users.numpy(), items.numpy()[1:]  # users with the unknown row 0; items without padding

    keep = quality.KeepBestEpoch(lambda: valid_recalls(*embed(), data, quality.K)["all"], patience)
    started = time.perf_counter()
    model.fit(train, epochs=max_epochs, verbose=0, callbacks=[keep])
    return {**quality.test_metrics(*embed(), data), "epochs": keep.best_epoch,
            "seconds": round(time.perf_counter() - started, 1)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--movielens", type=Path, required=True, help="extracted ml-latest-small directory")
    p.add_argument("--workdir", type=Path, default=Path("bench_out/quality/data"))
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--max-epochs", type=int, default=20)
    p.add_argument("--patience", type=int, default=3)
    args = p.parse_args(argv)
    dataset_dir = quality.import_movielens(args.movielens, args.workdir)
    ds, cfg, recalls = load_dataset(dataset_dir), RunConfig(), []
    for seed in args.seeds:
        split = dataclasses.replace(cfg.split, strategy="random", valid_frac=0.1, test_frac=0.1, seed=seed)
        prep = prepare_data(dataset_dir, dataclasses.replace(cfg, split=split, seed=seed), dataset=ds)
        result = run(prep, seed, args.layers, args.max_epochs, args.patience)
        recalls.append(result["all_recall@20"])
        print(f"seed {seed}: " + "  ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
                                           for k, v in result.items()), flush=True)
    print(f"ml_random LightGCN {args.layers} layers: R@20 {np.mean(recalls):.4f} ± {np.std(recalls):.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
