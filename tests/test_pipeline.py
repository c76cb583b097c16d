"""A whole run on the small demo catalog: what it writes and what it shows."""
from __future__ import annotations

import json

import numpy as np

from tfmmrec.config import RunConfig
from tfmmrec.evaluate.ranking import auc


def test_run_writes_metrics_and_its_config(trained_run) -> None:
    written = json.loads((trained_run.run_dir / "metrics.json").read_text())
    assert set(written["retrieval"]) == {"multimodal", "id_only"}
    for groups in written["retrieval"].values():
        assert set(groups) == {"all", "warm", "cold"}
        assert {"recall@10", "recall@20", "recall@50", "ndcg@20", "users"} <= set(groups["cold"])
    assert {"auc", "auc_warm", "auc_cold", "examples"} <= set(written["ranking"])
    cfg = RunConfig.from_yaml(trained_run.run_dir / "config.yaml")
    assert cfg.split.strategy == "cold_start" and cfg.retrieval.batch_size == 512


def test_decode_report_names_the_broken_files(trained_run) -> None:
    decode = {r["modality"]: r for r in trained_run.metrics["decode"]}
    assert len(decode["image"]["failed"]) == 1 and decode["image"]["failed"][0].endswith(".png")
    assert len(decode["audio"]["failed"]) == 1 and decode["audio"]["failed"][0].endswith(".wav")


def within_cold_auc(model, data) -> float:
    """Mean over users of the AUC of their held-out cold items against all other cold items.

    Ranking among cold items only removes where untrained vectors happen to land relative to warm
    items: an ID-only model knows nothing about cold items and is at chance here (0.5 in
    expectation; users share the same random item vectors, so one run can be off by ~0.1).
    """
    cold = np.setdiff1d(np.arange(1, data.num_items + 1), data.train.item)
    is_cold_test = np.isin(data.test.item, cold) & (data.test.user > 0)
    users = np.unique(data.test.user[is_cold_test])
    scores = model.query_tower(users).numpy() @ model.item_tower(cold).numpy().T
    aucs = []
    for row, user in enumerate(users):
        positives = np.isin(cold, data.test.item[is_cold_test & (data.test.user == user)])
        aucs.append(auc(positives, scores[row]))
    return float(np.nanmean(aucs))


def test_content_ranks_cold_items_that_ids_cannot(trained_run) -> None:
    data = trained_run.data
    multimodal = within_cold_auc(trained_run.models["multimodal"], data)
    id_only = within_cold_auc(trained_run.models["id_only"], data)
    assert multimodal > 0.6, multimodal
    assert multimodal > id_only + 0.08, (multimodal, id_only)
    cold = {v: trained_run.metrics["retrieval"][v]["cold"]["recall@20"] for v in ("multimodal", "id_only")}
    assert cold["multimodal"] > 1.5 * cold["id_only"], cold
