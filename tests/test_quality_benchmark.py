"""Smoke test of ``benchmarks/quality.py``: every model is trained, selected and scored by one
protocol, and the report keeps working as the library changes. Quality is measured by running
the benchmark itself; here only properties that hold at any size are asserted."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tfmmrec.config import RunConfig
from tfmmrec.data.manifest import Manifest
from tfmmrec.train.prepare import prepare_data

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("quality", ROOT / "benchmarks" / "quality.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["quality"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_every_model_is_selected_on_validation_and_scored_on_one_protocol(bench, demo_dir: Path) -> None:
    setting = bench.Setting("demo_cold", demo_dir, "cold_start", 0.2)
    cfg = RunConfig().with_overrides(["retrieval.batch_size=512", "retrieval.temperature_candidates=[]",
                                      "retrieval.warm_tower=id_content"])
    res = bench.run_setting(setting, [0], cfg, list(bench.MODELS), max_epochs=3, patience=1, ranking=False,
                            log=lambda _m: None, frontier=True)
    runs = {m: r["runs"][0] for m, r in res["models"].items()}
    # The warm/cold model is also reported served with the other blend objective (re-blended, not retrained).
    assert set(runs) == {*bench.MODELS, "tfmmrec_multimodal_blend_all", "tfmmrec_multimodal_blend_balanced",
                         "tfmmrec_content_only"}  # the last: --frontier's ensemble
    for name, r in runs.items():
        for key in ("all_recall@20", "warm_recall@20", "cold_recall@20", "cold_pool_recall@20", "all_ndcg@20"):
            assert 0.0 <= r[key] <= 1.0, (name, key, r[key])
        epochs = [r[k] for k in ("epochs", "warm_epochs", "content_epochs") if k in r]
        assert epochs and all(1 <= e <= 3 for e in epochs), (name, r)
    # A ranking among cold items only is an easier task than among the whole catalog.
    assert all(r["cold_pool_recall@20"] >= r["cold_recall@20"] for r in runs.values())
    # The demo's content carries the cold items: towers that see it rank them far better than ids alone.
    assert runs["tfrs_content"]["cold_pool_recall@20"] > 1.5 * runs["tfrs_id"]["cold_pool_recall@20"]
    assert runs["tfmmrec_multimodal"]["cold_pool_recall@20"] > 1.5 * runs["tfmmrec_id_only"]["cold_pool_recall@20"]

    # The frontier scores every blend of the grid, and the blend validation chose is the model as served.
    served = runs["tfmmrec_multimodal"]
    grid = cfg.retrieval
    assert len(served["frontier"]["points"]) == len(grid.warm_blend_c) * len(grid.cold_scale)
    (chosen,) = [p for p in served["frontier"]["points"]  # the served blend is read back from float32 variables
                 if (p["c"], p["s"]) == pytest.approx((served["blend_c"], served["cold_scale"]), rel=1e-6)]
    assert (chosen["warm"], chosen["cold"], chosen["all"]) == pytest.approx(
        (served["warm_recall@20"], served["cold_recall@20"], served["all_recall@20"]), abs=1e-6)
    assert len({(p["warm"], p["cold"]) for p in served["frontier"]["points"]}) > 1  # the blends do trade warm for cold
    (row,) = bench.frontier_rows(res)
    assert row["id_warm"] == runs["tfmmrec_id_only"]["warm_recall@20"]
    assert row["content_cold"] == runs["tfrs_content"]["cold_recall@20"]
    assert 0 <= row["blend"]["beat_content"] <= row["blend"]["points"] == len(served["frontier"]["points"])
    if served["warm_recall@20"] >= 0.95 * row["id_warm"]:
        assert row["blend"]["cold_at_95"] >= served["cold_recall@20"]
    # The ensemble of the ID-only and content-only models: a larger s raises only the cold items'
    # scores (positive at the top of a list), so along s (w fixed) cold recall never falls and warm
    # recall never rises.
    ensemble = runs["tfmmrec_content_only"]["ensemble"]
    assert ensemble["balanced"] in ensemble["points"] and row["ensemble"]["points"] == len(ensemble["points"])
    for w in bench.ENSEMBLE_WEIGHTS:
        line = sorted((p for p in ensemble["points"] if p["w"] == w), key=lambda p: p["s"])
        assert all(a["cold"] <= b["cold"] + 1e-9 and a["warm"] >= b["warm"] - 1e-9 for a, b in zip(line, line[1:]))
    assert len({p["cold"] for p in ensemble["points"]}) > 1

    report = {"machine": "test", "seeds": [0], "max_epochs": 3, "patience": 1, "settings": {"demo_cold": res}}
    merged = bench.merge([report, json.loads(json.dumps(report))])  # as two seed runs read back from JSON
    assert merged["seeds"] == [0] and len(merged["settings"]["demo_cold"]["models"]["tfrs_id"]["runs"]) == 2
    summary = merged["settings"]["demo_cold"]["models"]["tfrs_id"]["summary"]
    assert summary["all_recall@20"] == pytest.approx([runs["tfrs_id"]["all_recall@20"], 0.0])
    table = bench.markdown(merged)
    assert all(f"| demo_cold | {m} |" in table for m in runs)
    assert "Frontiers" in table and table.count("| demo_cold | 0 | blend |") == 2  # a row per run, merged twice
    assert table.count("| demo_cold | 0 | ensemble |") == 2
    # Paired by seed: the multimodal model minus each reference, run by run on the same split.
    paired = {row["reference"]: row for row in bench.paired_rows(merged["settings"]["demo_cold"])}
    assert set(paired) == {"tfrs_id", "tfrs_id_content", "tfrs_content", "tfmmrec_id_only"}
    delta = runs["tfmmrec_multimodal"]["cold_pool_recall@20"] - runs["tfrs_content"]["cold_pool_recall@20"]
    assert paired["tfrs_content"]["cold_pool_recall@20"] == pytest.approx(
        {"mean": delta, "std": 0.0, "ahead": 2 if delta > 0 else 0})
    assert "| demo_cold | tfrs_content | 2 |" in table and "seed" not in summary  # (a seed is no metric)


def _rated_toy(root: Path) -> Path:
    """Users rate items of their own cluster high and the others low."""
    rng = np.random.default_rng(0)
    rows = [(f"u{u}", f"m{i}", 4.5 if i % 3 == u % 3 else 1.5)
            for u in range(60) for i in rng.choice(45, 15, replace=False)]
    root.mkdir()
    pd.DataFrame({"item_id": [f"m{i}" for i in range(45)]}).to_csv(root / "items.csv", index=False)
    pd.DataFrame(rows, columns=["user_id", "item_id", "rating"]).to_csv(root / "interactions.csv", index=False)
    Manifest(items="items.csv", interactions="interactions.csv", name="toy", rating="rating").save(root)
    return root


def test_rankers_are_scored_by_test_rmse_on_the_same_split(bench, tmp_path: Path) -> None:
    cfg = RunConfig().with_overrides(["split.strategy=random", "ranking.batch_size=128", "ranking.epochs=10"])
    prep = prepare_data(_rated_toy(tmp_path / "toy"), cfg)
    assert prep.mode == "rating"
    out = bench.run_ranking(prep, cfg, seed=0, epochs=30)
    test = prep.rank_data.test.target
    predict_zero = float(np.sqrt(np.mean(test ** 2)))  # ~2.9: what an untrained output gives
    for name in ("tfmmrec", "tfrs_dcn_tutorial", "biased_mf"):
        assert 0.0 < out[name]["rmse"] < 0.75 * predict_zero, (name, out[name])
        assert 1 <= out[name]["epochs"] <= (10 if name == "tfmmrec" else 30)
