"""Users per second of full-catalog evaluation at 10k, 100k and 1M items (d=64).

    PYTHONPATH=. python benchmarks/eval_speed.py [--items 10000 100000 1000000] [--repeat 3]

For each catalog size, on random embeddings (every user: 20 excluded items, 3 held-out items):
- ``evaluate_retrieval``: Recall/NDCG/HitRate/MRR/MAP/coverage at K=10,20,50, warm/cold groups;
- ``factorized_top_k_accuracy``: the TFRS protocol, per held-out interaction;
- reference, side by side: the bare batched matmul + ``tf.math.top_k(50)`` over the same users, the
  floor any full-catalog evaluation pays. ``overhead`` = reference time / evaluate time.
Each timing is the best of ``--repeat`` runs after one warm-up run.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import tensorflow as tf  # noqa: E402

import tfmmrec  # noqa: F401  (Keras 2 before TensorFlow)
from tfmmrec.evaluate import evaluate_retrieval, factorized_top_k_accuracy  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from _readme import replace_section  # noqa: E402

DIM = 64


def users_for(num_items: int) -> int:
    return int(min(4000, max(200, 4e8 // num_items)))  # ~0.4 G scores per measurement


def best_of(repeat: int, fn) -> float:
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def bare_top_k(users: np.ndarray, items: np.ndarray, batch: int) -> None:
    items_t = tf.constant(items)
    for s in range(0, len(users), batch):
        tf.math.top_k(tf.matmul(tf.constant(users[s:s + batch]), items_t, transpose_b=True), k=50).indices.numpy()


def measure(num_items: int, repeat: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    num_users = users_for(num_items)
    users = rng.standard_normal((num_users, DIM)).astype(np.float32)
    items = rng.standard_normal((num_items, DIM)).astype(np.float32)
    heldout = (np.repeat(np.arange(num_users), 3), rng.integers(0, num_items, num_users * 3))
    exclude = (np.repeat(np.arange(num_users), 20), rng.integers(0, num_items, num_users * 20))
    warm = rng.random(num_items) < 0.9
    groups = {"warm": warm, "cold": ~warm}
    batch = max(1, min(1024, 20_000_000 // num_items))
    t_eval = best_of(repeat, lambda: evaluate_retrieval(users, items, heldout, exclude, item_groups=groups))
    t_topk = best_of(repeat, lambda: factorized_top_k_accuracy(users, items, heldout, item_groups=groups))
    t_ref = best_of(repeat, lambda: bare_top_k(users, items, batch))
    return {"items": num_items, "users": num_users, "dim": DIM,
            "evaluate_retrieval_users_per_s": round(num_users / t_eval, 1),
            "factorized_top_k_interactions_per_s": round(len(heldout[0]) / t_topk, 1),
            "reference_matmul_top_k_users_per_s": round(num_users / t_ref, 1),
            "reference_over_evaluate": round(t_ref / t_eval, 3)}


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "tensorflow": tf.__version__,
            "load_average_1m": round(os.getloadavg()[0], 1)}  # the machine may be shared: numbers scale with it


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", default="benchmarks/results/eval_speed.json")
    parser.add_argument("--no-readme", action="store_true", help="do not rewrite the table in benchmarks/README.md")
    args = parser.parse_args()
    rows = []
    for n in args.items:
        rows.append(measure(n, args.repeat))
        print(json.dumps(rows[-1]), flush=True)
    result = {"machine": machine(), "results": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    m = result["machine"]
    lines = [f"Machine: {m['cpu']}, {m['cores']} cores (shared; 1-min load average {m['load_average_1m']} at the "
             f"end), Python {m['python']}, TensorFlow {m['tensorflow']}. Best of {args.repeat} runs.", "",
             "| items | users | evaluate_retrieval users/s | FactorizedTopK interactions/s "
             "| bare matmul+top_k users/s | bare / evaluate time |", "|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['items']:,} | {r['users']:,} | {r['evaluate_retrieval_users_per_s']:,.0f} | "
                     f"{r['factorized_top_k_interactions_per_s']:,.0f} | "
                     f"{r['reference_matmul_top_k_users_per_s']:,.0f} | {r['reference_over_evaluate']:.2f} |")
    print("\n" + "\n".join(lines))
    if not args.no_readme:
        replace_section("eval-speed", "\n".join(lines))


if __name__ == "__main__":
    main()
