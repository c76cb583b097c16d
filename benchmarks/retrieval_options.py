"""Warm, cold and new-user Recall@20 / NDCG@20 on the demo catalog for the retrieval options.

    PYTHONPATH=. python benchmarks/retrieval_options.py                       # all variants, seeds 0 1 2
    PYTHONPATH=. python benchmarks/retrieval_options.py --seeds 0 1 --variants default mixed_1024

Same setup as ``benchmarks/fusion_table.py``: the default demo catalog (2,000 items, 1,500 users,
~60k interactions, catalog seed 0), encoded once with the built-in encoders, ``cold_start`` split
(10% of the items held out entirely). Each variant is the default ``RetrievalConfig`` (concat fusion)
with the overrides listed in ``VARIANTS``; the multitask variant is ``build_multitask`` with the
default ``MultitaskConfig``. Metrics: ``tfmmrec.evaluate.protocol.retrieval_metrics`` (test split, full catalog,
train + valid items excluded), plus **new users**: the same test users scored as if they had never
been seen (user index 0, so no trained id row) but with their stored recent history and features --
what a model with a history / feature query serves to a newcomer after a few clicks. A model without
them serves every newcomer the same list.

Writes ``--out`` (JSON, every number) and prints the Markdown table (copied into docs/models.md).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import time
from pathlib import Path

import numpy as np
import tensorflow as tf  # noqa: E402, I001

import tfmmrec  # noqa: F401  (Keras 2 before TensorFlow)
from tfmmrec.config import MultitaskConfig, RetrievalConfig  # noqa: E402
from tfmmrec.data.demo import write_demo_catalog  # noqa: E402
from tfmmrec.data.interactions import encode_interactions  # noqa: E402
from tfmmrec.data.loader import load_dataset  # noqa: E402
from tfmmrec.data.splits import split_interactions  # noqa: E402
from tfmmrec.encoders.encode import encode_catalog  # noqa: E402
from tfmmrec.evaluate.protocol import retrieval_metrics  # noqa: E402
from tfmmrec.evaluate.retrieval import evaluate_retrieval  # noqa: E402
from tfmmrec.models.build import build_multitask, build_retrieval  # noqa: E402
from tfmmrec.models.features import build_item_features, build_user_features  # noqa: E402
from tfmmrec.train.fit import train_retrieval  # noqa: E402

VARIANTS: dict[str, dict] = {
    "default": {},
    "mixed_1024": {"mixed_negatives": 1024},
    "hard_128": {"num_hard_negatives": 128},
    "history_20_mean": {"history_length": 20},
    "history_20_mean+attention": {"history_length": 20, "history_pooling": "mean+attention"},
    "history_20_user_dropout_0.3": {"history_length": 20, "user_id_dropout": 0.3},
    "user_features": {"user_features": True},
    "fgsm_0.1": {"adversarial_epsilon": 0.1},
    "multitask": {},
    "popularity": {},  # no model: items by training count, the same list for everyone (a newcomer baseline)
}
COLUMNS = [("warm", "recall@20"), ("warm", "ndcg@20"), ("cold", "recall@20"), ("cold", "ndcg@20")]


def new_user_metrics(model, data) -> dict:
    """Test users scored with user index 0 and their stored history / features."""
    tower = model.query_tower
    users = np.arange(data.num_users + 1)
    inputs = {"user": tf.zeros(len(users), tf.int32)}
    if tower.history_length:
        inputs["history"] = tf.gather(tower.user_history, users)
    if tower.user_feature_cardinalities:
        inputs["user_features"] = tf.gather(tower.user_codes, users)
    user_emb = tower(inputs).numpy()
    item_emb = model.item_tower(tf.range(1, data.num_items + 1)).numpy()
    known = data.test.user > 0
    exclude = (np.concatenate([data.train.user, data.valid.user]),
               np.concatenate([data.train.item, data.valid.item]) - 1)
    return evaluate_retrieval(user_emb, item_emb, (data.test.user[known], data.test.item[known] - 1), exclude,
                              ks=(20,))


def popularity(data, seed: int) -> dict:
    """Every user gets the most popular training items (known and new users alike)."""
    user_emb = np.ones((data.num_users + 1, 1), np.float32)
    item_emb = np.log(data.item_prob[1:, None]).astype(np.float32)
    warm = np.zeros(data.num_items, bool)
    warm[data.train_item_rows] = True
    known = data.test.user > 0
    exclude = (np.concatenate([data.train.user, data.valid.user]),
               np.concatenate([data.train.item, data.valid.item]) - 1)
    metrics = evaluate_retrieval(user_emb, item_emb, (data.test.user[known], data.test.item[known] - 1), exclude,
                                 item_groups={"warm": warm, "cold": ~warm}, ks=(20,))
    print(f"seed {seed} popularity                   warm_recall@20={metrics['warm']['recall@20']:.4f}", flush=True)
    return {"variant": "popularity", "seed": seed, "overrides": {}, "train_seconds": 0.0, "metrics": metrics,
            "new_users": metrics}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", type=Path, default=Path("benchmarks/.retrieval_options"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/retrieval_options.json"))
    args = parser.parse_args()

    data_dir = args.workdir / "data"
    if not (data_dir / "manifest.yaml").exists():
        write_demo_catalog(data_dir, n_items=2000, n_users=1500, n_interactions=60000, seed=0)
    ds = load_dataset(data_dir)
    inter = split_interactions(ds.interactions, "cold_start", valid_frac=0.1, test_frac=0.1, cold_item_frac=0.1, seed=0)
    data = encode_interactions(inter, ds.num_items, None)
    features = build_item_features(ds, encode_catalog(ds, progress=False), data.train_item_rows)
    users = build_user_features(ds.users, data.user_ids)

    runs = []
    for seed in args.seeds:
        for name in args.variants:
            if name == "popularity":
                runs.append(popularity(data, seed))
                continue
            cfg = dataclasses.replace(RetrievalConfig(), **VARIANTS[name])
            tf.keras.utils.set_random_seed(seed)
            if name == "multitask":
                model = build_multitask(features, data.num_users, cfg, MultitaskConfig(), data=data, users=users)
            else:
                model = build_retrieval(features, data.num_users, cfg, data=data, users=users)
            started = time.perf_counter()
            train_retrieval(model, data, cfg, seed=seed, verbose=0)
            seconds = time.perf_counter() - started
            metrics = retrieval_metrics(model, data, [20])
            new = new_user_metrics(model, data)
            runs.append({"variant": name, "seed": seed, "overrides": VARIANTS[name], "train_seconds": round(seconds, 1),
                         "metrics": metrics, "new_users": new})
            print(f"seed {seed} {name:28s} " + " ".join(f"{g}_{m}={metrics[g][m]:.4f}" for g, m in COLUMNS)
                  + f" new_users_recall@20={new['all']['recall@20']:.4f} ({seconds:.0f}s)", flush=True)
    table = markdown(runs, args.variants)
    result = {"machine": {"python": platform.python_version(), "tensorflow": tf.__version__},
              "setup": {"catalog": "demo 2000/1500/60000 seed 0", "split": "cold_start", "seeds": args.seeds},
              "runs": runs, "table": table}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=float))
    print("\n" + table)


def markdown(runs: list[dict], names: list[str]) -> str:
    """Mean ± std over seeds per variant."""
    lines = ["| variant | warm R@20 | warm N@20 | cold R@20 | cold N@20 | new-user R@20 | train s |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for name in names:
        mine = [r for r in runs if r["variant"] == name]
        values = [[r["metrics"][g][m] for r in mine] for g, m in COLUMNS]
        values.append([r["new_users"]["all"]["recall@20"] for r in mine])
        cells = [f"{np.mean(v):.4f} ± {np.std(v):.4f}" if len(v) > 1 else f"{v[0]:.4f}" for v in values]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {np.mean([r['train_seconds'] for r in mine]):.0f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
