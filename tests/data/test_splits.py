"""Tests for split_interactions: each strategy's promise, checked on data built for it."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tfmmrec.data.manifest import DatasetError
from tfmmrec.data.splits import split_interactions


def random_log(n: int, n_users: int = 300, n_items: int = 500, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "user_id": [f"u{u}" for u in rng.integers(0, n_users, n)],
        "item_id": [f"i{i}" for i in rng.integers(0, n_items, n)],
        "timestamp": rng.integers(0, 10**9, n),
    })


def test_auto_keeps_predefined_split() -> None:
    log = random_log(50).assign(split=["train", "valid", "test", "train", "test"] * 10)
    out = split_interactions(log, "auto", seed=1)
    assert list(out["split"]) == list(log["split"])
    assert out is not log


def test_auto_without_split_column_is_random() -> None:
    log = random_log(2000)
    assert "split" not in log.columns
    out = split_interactions(log, "auto", seed=0)
    assert set(out["split"]) == {"train", "valid", "test"}
    assert "split" not in log.columns  # the input is not modified


def test_predefined_needs_split_column() -> None:
    with pytest.raises(DatasetError, match="split"):
        split_interactions(random_log(10), "predefined")


def test_random_fractions_close_to_requested() -> None:
    log = random_log(20_000)
    out = split_interactions(log, "random", valid_frac=0.15, test_frac=0.05, seed=4)
    frac = out["split"].value_counts(normalize=True)
    # binomial std at n=20k is at most 0.0036; allow ~4 sigma
    assert frac["valid"] == pytest.approx(0.15, abs=0.015)
    assert frac["test"] == pytest.approx(0.05, abs=0.01)
    assert frac["train"] == pytest.approx(0.80, abs=0.015)
    pd.testing.assert_frame_equal(out.drop(columns="split"), log)


def test_random_is_deterministic_per_seed() -> None:
    log = random_log(5000)
    a = split_interactions(log, "random", seed=7)["split"]
    b = split_interactions(log, "random", seed=7)["split"]
    c = split_interactions(log, "random", seed=8)["split"]
    assert (a == b).all()
    assert (a != c).any()


def test_fractions_must_leave_room_for_train() -> None:
    with pytest.raises(ValueError):
        split_interactions(random_log(10), "random", valid_frac=0.5, test_frac=0.5)


def test_unknown_strategy() -> None:
    with pytest.raises(ValueError, match="sideways"):
        split_interactions(random_log(10), "sideways")  # type: ignore[arg-type]


def test_temporal_leave_last_out() -> None:
    log = random_log(3000, n_users=400)
    log = log.set_index(np.random.default_rng(1).permutation(len(log)) * 3 + 5)  # index is not 0..n-1
    out = split_interactions(log, "temporal")
    assert list(out.index) == list(log.index)
    for _, rows in out.groupby("user_id"):
        by_time = rows.sort_values("timestamp")["split"].tolist()
        if len(rows) >= 3:
            assert by_time[-1] == "test" and by_time[-2] == "valid"
            assert set(by_time[:-2]) <= {"train"}
        else:
            assert set(by_time) == {"train"}
    counts = log["user_id"].value_counts()
    assert (out["split"] == "test").sum() == (counts >= 3).sum()
    assert (counts < 3).any() and (counts >= 3).any()  # both cases were exercised


def test_temporal_ignores_file_order() -> None:
    log = pd.DataFrame({"user_id": ["u"] * 4, "item_id": ["a", "b", "c", "d"], "timestamp": [30, 10, 40, 20]})
    out = split_interactions(log, "temporal")
    assert list(out["split"]) == ["valid", "train", "test", "train"]


def test_temporal_needs_timestamp() -> None:
    with pytest.raises(DatasetError, match="timestamp"):
        split_interactions(random_log(30).drop(columns="timestamp"), "temporal")


def test_cold_start_holds_out_whole_items() -> None:
    log = random_log(20_000, n_items=400)
    out = split_interactions(log, "cold_start", cold_item_frac=0.2, seed=3)
    train_items = set(out.loc[out["split"] == "train", "item_id"])
    all_items = set(log["item_id"])
    cold = all_items - train_items
    # with ~50 interactions per item, a warm item losing all of them to valid/test is ~impossible
    assert len(cold) / len(all_items) == pytest.approx(0.2, abs=0.02)
    # every interaction of a cold item is held out
    assert set(out.loc[out["item_id"].isin(cold), "split"]) <= {"valid", "test"}
    test_items = set(out.loc[out["split"] == "test", "item_id"])
    valid_items = set(out.loc[out["split"] == "valid", "item_id"])
    assert test_items & cold and valid_items & cold
    assert test_items - cold  # warm items are tested too
    # a cold item lives in exactly one of valid/test
    per_item = out.loc[out["item_id"].isin(cold)].groupby("item_id")["split"].nunique()
    assert (per_item == 1).all()


def test_cold_start_is_deterministic_per_seed() -> None:
    log = random_log(3000)
    a = split_interactions(log, "cold_start", seed=5)["split"]
    b = split_interactions(log, "cold_start", seed=5)["split"]
    assert (a == b).all()


def test_temporal_accepts_concatenated_logs_with_repeated_index() -> None:
    first = pd.DataFrame({"user_id": ["u"] * 3, "item_id": list("abc"), "timestamp": [1, 2, 3]})
    second = pd.DataFrame({"user_id": ["v"] * 3, "item_id": list("abc"), "timestamp": [3, 1, 2]})
    out = split_interactions(pd.concat([first, second]), "temporal")  # index 0, 1, 2, 0, 1, 2
    assert list(out["split"]) == ["train", "valid", "test", "test", "train", "valid"]
