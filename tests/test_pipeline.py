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
    # The TFRS tutorials' protocol, for comparison: one example per test interaction of a known user,
    # no exclusion of seen items, so accuracy only grows with K.
    for variant in ("multimodal", "id_only"):
        tfrs = written["tfrs_protocol"][variant]["all"]
        assert tfrs["interactions"] == int((trained_run.data.test.user > 0).sum())
        assert 0 <= tfrs["top_1_categorical_accuracy"] <= tfrs["top_10_categorical_accuracy"] \
            <= tfrs["top_100_categorical_accuracy"] <= 1
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


def test_binary_labels_train_retrieval_on_positives_and_ranking_on_both(tmp_path) -> None:
    """A log with explicit 0/1 labels (e.g. click / no click) and precomputed item vectors."""
    import pandas as pd

    from tfmmrec.data.manifest import Manifest, ModalitySpec
    from tfmmrec.pipeline import run

    rng = np.random.default_rng(0)
    n_items, n_users = 60, 40
    group = np.arange(n_items) % 2
    np.save(tmp_path / "vec.npy", (np.eye(2)[group] + 0.1 * rng.normal(size=(n_items, 2))).astype(np.float32))
    pd.DataFrame({"item_id": [f"i{i}" for i in range(n_items)]}).to_csv(tmp_path / "items.csv", index=False)
    rows = [(f"u{u}", f"i{i}", int(group[i] == u % 2)) for u in range(n_users)
            for i in rng.choice(n_items, 20, replace=False)]
    pd.DataFrame(rows, columns=["user_id", "item_id", "clicked"]).to_csv(tmp_path / "interactions.csv", index=False)
    Manifest(items="items.csv", interactions="interactions.csv", name="clicks", label="clicked",
             modalities={"vec": ModalitySpec(kind="vector", npy="vec.npy")}).save(tmp_path)

    cfg = RunConfig().with_overrides(["retrieval.epochs=5", "ranking.epochs=10", "train.id_only=false"])
    result = run(tmp_path, tmp_path / "run", cfg, export_dir=None, verbose=0)
    positives = sum(label for *_, label in rows)
    assert sum(result.metrics["interactions"].values()) == positives  # retrieval saw positives only
    ranking = result.metrics["ranking"]
    assert {"auc", "log_loss"} <= set(ranking)
    test_positives = result.metrics["interactions"]["test"]
    # The test split's 0s and 1s (about half are 1s), not positives plus 4 sampled negatives each:
    assert test_positives < ranking["examples"] < 3 * test_positives
    assert ranking["auc"] > 0.8  # the vector says which group a user clicks


def test_keras_evaluate_gives_the_numbers_of_metrics_json(trained_run) -> None:
    """``model.evaluate`` on the test split (the Keras way) and the run's metrics.json agree."""
    from tfmmrec.train.eval_inputs import retrieval_eval_dataset

    written = json.loads((trained_run.run_dir / "metrics.json").read_text())
    for variant in ("multimodal", "id_only"):
        got = trained_run.models[variant].evaluate(retrieval_eval_dataset(trained_run.data, "test"),
                                                   return_dict=True, verbose=0)
        for group, suffix in (("all", ""), ("warm", "_warm"), ("cold", "_cold")):
            expected = written["retrieval"][variant][group]
            assert got[f"users{suffix}"] == expected["users"] > 0
            for name in ("recall@10", "recall@20", "recall@50", "ndcg@20", "mrr@10", "map@50"):
                metric, k = name.split("@")
                assert abs(got[f"{metric}_at_{k}{suffix}"] - expected[name]) < 1e-6, (variant, group, name)
    selection = written["training"]["multimodal"]
    assert selection["monitor"] == "val_recall_at_20" and 1 <= selection["best_epoch"] <= selection["epochs_run"]
    # The multimodal (warm/cold) model's warm stage on a cold-start split is selected on warm items.
    assert selection["objective"] == "warm"
    assert all(point["objective"] == point["val_recall_at_20_warm"] for point in selection["val_curve"])
    curve = [point["objective"] for point in selection["val_curve"]]
    assert max(curve) == selection["best"] == curve[selection["best_epoch"] - 1]
