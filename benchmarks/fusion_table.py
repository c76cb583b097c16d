"""Warm and cold Recall@20 / NDCG@20 on the demo catalog for ID-only and every item-tower fusion.

    PYTHONPATH=. python benchmarks/fusion_table.py                 # default demo, cold_start split, seeds 0 1 2
    PYTHONPATH=. python benchmarks/fusion_table.py --seeds 0 --fusions id_only concat gated --epochs 5

The demo catalog (default size: 2,000 items, 1,500 users, ~60k interactions; catalog seed 0) is
written once and encoded once with the built-in encoders; the split is ``cold_start`` (10% of the
items held out entirely), the same for every model. Each model is the two-tower of
``tfmmrec.train.fit.build_retrieval`` with the default ``RetrievalConfig`` except ``fusion``, so the
only difference between rows is the fusion layer (ID-only: no content at all). Seeds change the
model's initialisation, ID/modality dropout and batch order. Metrics: ``tfmmrec.evaluate.protocol.retrieval_metrics``
(full catalog, train+valid items excluded). For weighing fusions, the mean modality weights over
the catalog's items are reported too.

Writes ``--out`` (JSON, every number) and replaces the section between the fusion-table markers in
``benchmarks/README.md`` with the Markdown table (mean +- std over seeds).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import tensorflow as tf  # noqa: E402

import tfmmrec  # noqa: F401  (Keras 2 before TensorFlow)
from tfmmrec.config import RetrievalConfig  # noqa: E402
from tfmmrec.data.demo import write_demo_catalog  # noqa: E402
from tfmmrec.data.interactions import encode_interactions  # noqa: E402
from tfmmrec.data.loader import load_dataset  # noqa: E402
from tfmmrec.data.splits import split_interactions  # noqa: E402
from tfmmrec.encoders.encode import encode_catalog  # noqa: E402
from tfmmrec.evaluate.protocol import retrieval_metrics  # noqa: E402
from tfmmrec.fusion import FUSIONS, ITEM_TOWER_FUSIONS  # noqa: E402
from tfmmrec.models.build import build_retrieval  # noqa: E402
from tfmmrec.models.features import build_item_features  # noqa: E402
from tfmmrec.train.fit import train_retrieval  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from _readme import replace_section  # noqa: E402

COLUMNS = [("warm", "recall@20"), ("warm", "ndcg@20"), ("cold", "recall@20"), ("cold", "ndcg@20")]


def mean_modality_weights(model, num_items: int) -> dict[str, float]:
    """Mean weight of each modality over the catalog's items (inference mode)."""
    weights = model.item_tower.modality_weights(tf.range(1, num_items + 1))
    return {m: round(float(tf.reduce_mean(w)), 4) for m, w in weights.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", type=Path, default=Path("benchmarks/.fusion_table"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    models = ["id_only", *ITEM_TOWER_FUSIONS]
    parser.add_argument("--fusions", nargs="+", default=models, choices=models, help="rows of the table")
    parser.add_argument("--epochs", type=int, default=RetrievalConfig().epochs)
    parser.add_argument("--balance-weight", type=float, default=0.0,
                        help="modality-balance regulariser for the weighing fusions (default 0: off)")
    parser.add_argument("--size", nargs=3, type=int, default=[2000, 1500, 60000], metavar=("ITEMS", "USERS", "INTER"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/fusion_table.json"))
    parser.add_argument("--no-readme", action="store_true", help="do not rewrite the table in benchmarks/README.md")
    args = parser.parse_args()

    data_dir = args.workdir / "data"
    if not (data_dir / "manifest.yaml").exists():
        write_demo_catalog(data_dir, n_items=args.size[0], n_users=args.size[1], n_interactions=args.size[2], seed=0)
    ds = load_dataset(data_dir)
    inter = split_interactions(ds.interactions, "cold_start", valid_frac=0.1, test_frac=0.1, cold_item_frac=0.1, seed=0)
    data = encode_interactions(inter, ds.num_items, None)
    features = build_item_features(ds, encode_catalog(ds, progress=False), data.train_item_rows)

    runs = []
    variants = [(f, None if f == "id_only" else f) for f in args.fusions]
    for seed in args.seeds:
        for name, fusion in variants:
            balance = args.balance_weight if fusion and FUSIONS[fusion].weighs_modalities else 0.0
            cfg = dataclasses.replace(RetrievalConfig(), epochs=args.epochs, fusion=fusion or "concat",
                                      fusion_balance_weight=balance)
            tf.keras.utils.set_random_seed(seed)
            model = build_retrieval(features, data.num_users, cfg, use_content=fusion is not None)
            started = time.perf_counter()
            train_retrieval(model, data, cfg, seed=seed, verbose=0)
            seconds = time.perf_counter() - started
            metrics = retrieval_metrics(model, data, [10, 20, 50])
            run = {"model": name, "seed": seed, "train_seconds": round(seconds, 1), "metrics": metrics,
                   "params": int(sum(np.prod(v.shape) for v in model.trainable_variables))}
            if fusion and FUSIONS[fusion].weighs_modalities:
                run["mean_modality_weights"] = mean_modality_weights(model, ds.num_items)
            runs.append(run)
            print(f"seed {seed} {name:18s} " + " ".join(f"{g[0]}{m[0].upper()}@20={metrics[g][m]:.4f}"
                                                          for g, m in COLUMNS) + f"  ({seconds:.0f}s)", flush=True)

    table = markdown(runs, [n for n, _ in variants], args)
    result = {"machine": {"python": platform.python_version(), "tensorflow": tf.__version__,
                          "cpu_count": os.cpu_count(), "load_average_1m": round(os.getloadavg()[0], 1)},
              "setup": {"catalog": dict(zip(("items", "users", "interactions"), args.size)), "split": "cold_start",
                        "epochs": args.epochs, "seeds": args.seeds, "balance_weight": args.balance_weight,
                        "retrieval_config": dataclasses.asdict(RetrievalConfig())},
              "runs": runs, "table": table}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print("\n" + table)
    if not args.no_readme:
        replace_section("fusion-table", table)


def markdown(runs: list[dict], names: list[str], args: argparse.Namespace) -> str:
    lines = [f"Demo catalog {args.size[0]:,} items / {args.size[1]:,} users / ~{args.size[2]:,} interactions, "
             f"cold_start split, {args.epochs} epochs, seeds {', '.join(map(str, args.seeds))}, "
             f"balance weight {args.balance_weight:g} "
             "(mean ± std over seeds; test split, full catalog, train+valid items excluded).", "",
             "| model | warm R@20 | warm N@20 | cold R@20 | cold N@20 | params | train s | mean modality weights |",
             "|---|---:|---:|---:|---:|---:|---:|---|"]
    for name in names:
        mine = [r for r in runs if r["model"] == name]
        cells = []
        for g, m in COLUMNS:
            values = np.array([r["metrics"][g][m] for r in mine], float)
            cells.append(f"{values.mean():.4f} ± {values.std():.4f}" if len(values) > 1 else f"{values[0]:.4f}")
        weights = ""
        if "mean_modality_weights" in mine[0]:
            w = {k: np.mean([r["mean_modality_weights"][k] for r in mine]) for k in mine[0]["mean_modality_weights"]}
            weights = ", ".join(f"{k} {v:.2f}" for k, v in w.items())
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {mine[0]['params']:,} | "
                     f"{np.mean([r['train_seconds'] for r in mine]):.0f} | {weights} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
