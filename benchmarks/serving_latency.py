"""Latency of the retrieval export's ``serving_default`` against a numpy lower bound.

For each index size, a retrieval SavedModel is exported exactly as the pipeline does (raw user
id -> query tower -> brute-force matmul + exclusions + top_k), reloaded with
``tf.saved_model.load`` and called through its signature, at batch 1 and batch 64. Beside it,
in the same process and on the same embeddings, numpy computes ``queries @ items.T`` and an
``argpartition`` top-K: the least any exact brute-force server can do. The ratio is what the
SavedModel costs above that bound (id lookup, signature call, exclusion scatter, full top_k).
With ``scann`` installed, the same export with a ScaNN index is measured too.

Usage: python benchmarks/serving_latency.py [--sizes 10000 100000 1000000] [--dim 64] [--k 10]
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import tfmmrec  # noqa: E402,F401  (Keras 2 for TFRS)
from tfmmrec.export.retrieval import QueryEncoder, RetrievalServing, export_retrieval  # noqa: E402
from tfmmrec.models.towers import QueryTower  # noqa: E402


def percentiles(times: list[float]) -> tuple[float, float]:
    ms = np.array(times) * 1000
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def timed(fn, repeats: int) -> tuple[float, float]:
    fn()  # warm-up (TF Serving does this with the warm-up records)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return percentiles(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--no-scann", action="store_true")
    args = parser.parse_args()
    try:
        import scann  # noqa: F401
        has_scann = not args.no_scann
    except ImportError:
        has_scann = False

    rng = np.random.default_rng(0)
    user_ids = np.array([f"u{i}" for i in range(args.users)])
    tower = QueryTower(args.users, args.dim)
    tower(np.arange(2))
    query = QueryEncoder(user_ids, tower)
    user_vecs = tower(np.arange(1, args.users + 1)).numpy()
    workdir = Path(tempfile.mkdtemp(prefix="tfmmrec-bench-"))
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, TF {tf.__version__}, "
          f"dim {args.dim}, k {args.k}; p50 / p99 in ms")
    print("| items | index | batch | SavedModel p50 | p99 | numpy p50 | p99 | ratio p50 |")
    print("|------:|-------|------:|---------------:|----:|----------:|----:|----------:|")
    try:
        for n in args.sizes:
            items = rng.standard_normal((n, args.dim)).astype(np.float32)
            items /= np.linalg.norm(items, axis=1, keepdims=True)
            item_ids = np.array([f"i{i}" for i in range(n)])
            kinds = ["brute_force"] + (["scann"] if has_scann else [])
            for kind in kinds:
                serving = RetrievalServing(query, item_ids, items, max_k=100, index=kind)
                path = export_retrieval(workdir, f"{kind}_{n}", serving)
                del serving
                fn = tf.saved_model.load(str(path)).signatures["serving_default"]
                for batch in (1, 64):
                    users = tf.constant(rng.choice(user_ids, batch))
                    q = user_vecs[rng.integers(0, args.users, batch)]
                    feeds = dict(user_id=users, recent_item_ids=tf.constant([[""]]),
                                 exclude_item_ids=tf.constant([[""]]), k=tf.constant([args.k]))
                    repeats = max(20, min(200, int(2e8 / (n * batch))))

                    # Called at once, inside this iteration; the defaults bind its values all the same.
                    def lower_bound(q: np.ndarray = q, items: np.ndarray = items) -> np.ndarray:
                        scores = q @ items.T
                        top = np.argpartition(-scores, args.k, axis=1)[:, :args.k]
                        order = np.argsort(-np.take_along_axis(scores, top, 1), axis=1)
                        return np.take_along_axis(top, order, 1)

                    sm = timed(lambda fn=fn, feeds=feeds: fn(**feeds), repeats)
                    ref = timed(lower_bound, repeats)
                    print(f"| {n:,} | {kind} | {batch} | {sm[0]:.2f} | {sm[1]:.2f} | {ref[0]:.2f} | {ref[1]:.2f} | "
                          f"{sm[0] / ref[0]:.2f} |", flush=True)
                shutil.rmtree(path, ignore_errors=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
