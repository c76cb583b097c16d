"""Smoke test of ``benchmarks/train_speed.py`` on a toy dataset: the runner keeps working as the
library changes. No timing is asserted; speed is measured by running the benchmark itself."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tfmmrec.config import RetrievalConfig
from tfmmrec.data.manifest import Manifest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("train_speed", ROOT / "benchmarks" / "train_speed.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["train_speed"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _toy_dataset(root: Path) -> Path:
    rng = np.random.default_rng(0)
    items, users = 60, 80
    item_cluster = np.arange(items) % 4
    rows = [(f"u{u}", f"m{i}") for u in range(users)
            for i in np.unique(rng.choice(np.flatnonzero(item_cluster == u % 4), 8))]
    root.mkdir()
    pd.DataFrame({"item_id": [f"m{i}" for i in range(items)]}).to_csv(root / "items.csv", index=False)
    pd.DataFrame(rows, columns=["user_id", "item_id"]).to_csv(root / "interactions.csv", index=False)
    Manifest(items="items.csv", interactions="interactions.csv", name="toy").save(root)
    return root


def test_reference_and_tfmmrec_are_timed_and_scored_the_same_way(bench, tmp_path: Path) -> None:
    prep = bench.prepare(_toy_dataset(tmp_path / "toy"), "toy")
    assert len(prep.data.test) > 0 and len(prep.data.train) > 3 * len(prep.data.test)  # ~80/20

    ref = bench.run_reference(prep, epochs=2, batch_size=64)
    assert [p["steps"] for p in ref["curve"]] == [ref["steps"] // 2, ref["steps"]]  # evaluated per epoch
    assert ref["examples"] == 2 * len(prep.data.train)

    cfg = RetrievalConfig(embedding_dim=8, batch_size=32, epochs=2, learning_rate=0.05)
    # A target recall that every evaluation reaches (on the toy, 2 epochs do not reach the reference's
    # 1.0), so the time to it is reported: the training time of the first evaluation, every 2 steps.
    ours = bench.run_tfmmrec(prep, cfg, False, every_steps=2, target=0.0)
    seconds = [p["seconds"] for p in ours["curve"]]
    assert seconds == sorted(seconds) and len(seconds) >= ours["steps"] // 2
    assert [p["steps"] for p in ours["curve"][:2]] == [2, 4]
    assert ours["recall@20"] == ours["curve"][-1]["recall@20"]
    reached = ours["seconds_to_reference_recall"]
    assert reached == seconds[0] and 0.0 < reached < ours["train_seconds"]
    report = {"machine": "test", "datasets": {"toy": {"reference": ref, "models": {"id_only": ours},
                                                       "throughput_8192": ours}}}
    table = bench.markdown(report)
    assert "| toy | reference (TFRS tutorial) |" in table
    assert f"| {ours['recall@20']:.4f} | {ours['ndcg@20']:.4f} | {reached:.2f} |" in table


def test_first_time_reaching(bench) -> None:
    curve = [{"seconds": 1.0, "recall@20": 0.1}, {"seconds": 2.0, "recall@20": 0.3}, {"seconds": 3.0, "recall@20": 0.2}]
    assert bench.first_time_reaching(curve, 0.2) == 2.0
    assert bench.first_time_reaching(curve, 0.5) is None
