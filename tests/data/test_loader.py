"""Tests for load_dataset: what it reads, and that every malformed input is named precisely."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import SMALL_DEMO
from tfmmrec.data.loader import load_dataset
from tfmmrec.data.manifest import DatasetError, Manifest, ModalitySpec

ITEMS = pd.DataFrame({"item_id": ["a", "b", "c", "d"], "title": ["Ant", "Bee", "Cat", "Dog"],
                      "price": [1.5, 2.0, 3.25, 4.0]})
INTER = pd.DataFrame({"user_id": ["u1", "u1", "u2", "u3", "u3"], "item_id": ["a", "c", "b", "d", "a"],
                      "ts": [10, 20, 30, 40, 50]})
USERS = pd.DataFrame({"user_id": ["u1", "u2", "u3"], "region": ["n", "s", "e"]})


def make_dataset(root: Path, items: pd.DataFrame = ITEMS, interactions: pd.DataFrame = INTER,
                 users: pd.DataFrame | None = None, fmt: str = "csv", **manifest: object) -> Path:
    """Write tables in ``fmt`` plus a manifest (``manifest`` overrides its fields)."""
    root.mkdir(parents=True, exist_ok=True)
    names = {}
    for key, df in (("items", items), ("interactions", interactions), ("users", users)):
        if df is None:
            continue
        names[key] = f"{key}.{fmt}"
        if fmt == "csv":
            df.to_csv(root / names[key], index=False)
        else:
            df.to_parquet(root / names[key], index=False)
    fields = dict(name="tiny", timestamp="ts", numeric=["price"],
                  modalities={"text": ModalitySpec(kind="text", columns=["title"])})
    fields.update(names)
    fields.update(manifest)
    Manifest(**fields).save(root)
    return root


# --- the demo catalog ---------------------------------------------------------------------

def test_loads_demo(demo_dir: Path) -> None:
    ds = load_dataset(demo_dir)
    raw_items = pd.read_csv(demo_dir / "items.csv", dtype=str, keep_default_na=False)
    raw_inter = pd.read_csv(demo_dir / "interactions.csv", dtype=str, keep_default_na=False)
    assert ds.num_items == len(raw_items) == SMALL_DEMO["n_items"]
    assert len(ds.users) == SMALL_DEMO["n_users"]
    assert len(ds.interactions) == len(raw_inter)
    assert list(ds.item_ids) == list(raw_items["item_id"])  # file row order is item index order
    assert ds.report.lines() == []


def test_demo_item_idx_points_at_the_item_row(demo_dir: Path) -> None:
    ds = load_dataset(demo_dir)
    inter = ds.interactions
    assert (inter["item_idx"] >= 0).all()
    looked_up = ds.items["item_id"].iloc[inter["item_idx"].to_numpy()].to_numpy()
    np.testing.assert_array_equal(looked_up, inter["item_id"].to_numpy())


# --- table formats and ids ----------------------------------------------------------------

def test_ids_stay_strings(tmp_path: Path) -> None:
    (tmp_path / "items.csv").write_text("item_id,title\n007,Bond\n7,Seven\n010,Ten\n")
    (tmp_path / "interactions.csv").write_text("user_id,item_id\n0042,007\n42,010\n0042,7\n")
    Manifest(items="items.csv", interactions="interactions.csv").save(tmp_path)
    ds = load_dataset(tmp_path)
    assert list(ds.item_ids) == ["007", "7", "010"]
    assert list(ds.interactions["user_id"]) == ["0042", "42", "0042"]
    assert list(ds.interactions["item_idx"]) == [0, 2, 1]


def test_parquet_loads_like_csv(tmp_path: Path) -> None:
    from_csv = load_dataset(make_dataset(tmp_path / "csv", users=USERS))
    from_parquet = load_dataset(make_dataset(tmp_path / "pq", users=USERS, fmt="parquet"))
    pd.testing.assert_frame_equal(from_parquet.items, from_csv.items, check_dtype=False)
    pd.testing.assert_frame_equal(from_parquet.interactions, from_csv.interactions, check_dtype=False)
    pd.testing.assert_frame_equal(from_parquet.users, from_csv.users, check_dtype=False)
    assert list(from_parquet.interactions["item_idx"]) == [0, 2, 1, 3, 0]


def test_manifest_column_names_are_renamed(tmp_path: Path) -> None:
    items = ITEMS.rename(columns={"item_id": "sku"})
    inter = INTER.rename(columns={"item_id": "sku", "user_id": "who"})
    ds = load_dataset(make_dataset(tmp_path, items, inter, item_id="sku", user_id="who"))
    assert {"item_id", "user_id", "timestamp"} <= set(ds.interactions.columns)
    assert list(ds.interactions["timestamp"]) == [10, 20, 30, 40, 50]


# --- validation messages ------------------------------------------------------------------

def test_missing_column_names_file_and_column(tmp_path: Path) -> None:
    make_dataset(tmp_path, interactions=INTER.drop(columns="ts"))
    with pytest.raises(DatasetError) as err:
        load_dataset(tmp_path)
    assert "interactions.csv" in str(err.value) and "'ts'" in str(err.value)


def test_missing_text_column_names_items_file(tmp_path: Path) -> None:
    make_dataset(tmp_path, items=ITEMS.drop(columns="title"))
    with pytest.raises(DatasetError) as err:
        load_dataset(tmp_path)
    assert "items.csv" in str(err.value) and "'title'" in str(err.value)


def test_duplicate_item_ids_name_id_and_rows(tmp_path: Path) -> None:
    items = pd.DataFrame({"item_id": ["a", "b", "a", "d"], "title": list("wxyz"), "price": [1, 2, 3, 4]})
    make_dataset(tmp_path, items=items)
    with pytest.raises(DatasetError) as err:
        load_dataset(tmp_path)
    msg = str(err.value)
    assert "'a'" in msg and "'b'" not in msg
    assert re.search(r"rows 2, 4\b", msg), msg  # file lines of the two 'a' rows (line 1 is the header)


def test_non_numeric_timestamp_names_the_row(tmp_path: Path) -> None:
    inter = INTER.astype({"ts": object})
    inter.loc[2, "ts"] = "yesterday"
    make_dataset(tmp_path, interactions=inter)
    with pytest.raises(DatasetError) as err:
        load_dataset(tmp_path)
    msg = str(err.value)
    assert "'ts'" in msg and "row 4" in msg and "'yesterday'" in msg


def test_bad_split_value(tmp_path: Path) -> None:
    make_dataset(tmp_path, interactions=INTER.assign(split=["train", "train", "valid", "training", "test"]))
    with pytest.raises(DatasetError, match="training"):
        load_dataset(tmp_path)


def test_valid_split_column_is_kept(tmp_path: Path) -> None:
    splits = ["train", "train", "valid", "test", "test"]
    ds = load_dataset(make_dataset(tmp_path, interactions=INTER.assign(split=splits)))
    assert list(ds.interactions["split"]) == splits


# --- unknown items and users --------------------------------------------------------------

def with_unknown(df: pd.DataFrame, column: str, n: int) -> pd.DataFrame:
    planted = pd.DataFrame({"user_id": ["u1"] * n, "item_id": ["a"] * n, "ts": range(100, 100 + n)})
    planted[column] = [f"ghost{i}" for i in range(n)]
    return pd.concat([df.iloc[:2], planted, df.iloc[2:]], ignore_index=True)


def test_unknown_items_raise_with_count(tmp_path: Path) -> None:
    make_dataset(tmp_path, interactions=with_unknown(INTER, "item_id", 3))
    with pytest.raises(DatasetError, match=r"\b3 interactions\b.*ghost0"):
        load_dataset(tmp_path)


def test_unknown_items_dropped_and_counted(tmp_path: Path) -> None:
    ds = load_dataset(make_dataset(tmp_path, interactions=with_unknown(INTER, "item_id", 3)),
                      on_unknown_items="drop")
    assert ds.report.dropped_unknown_items == 3
    assert len(ds.interactions) == len(INTER)
    assert list(ds.interactions.index) == list(range(len(INTER)))
    assert list(ds.interactions["item_id"]) == list(INTER["item_id"])
    assert (ds.items["item_id"].iloc[ds.interactions["item_idx"]].to_numpy() == INTER["item_id"].to_numpy()).all()
    assert any("3" in line and "item" in line for line in ds.report.lines())


def test_unknown_users_raise_when_users_table_exists(tmp_path: Path) -> None:
    make_dataset(tmp_path, interactions=with_unknown(INTER, "user_id", 2), users=USERS)
    with pytest.raises(DatasetError, match=r"\b2 interactions\b.*user"):
        load_dataset(tmp_path)


def test_unknown_users_dropped_and_counted(tmp_path: Path) -> None:
    ds = load_dataset(make_dataset(tmp_path, interactions=with_unknown(INTER, "user_id", 2), users=USERS),
                      on_unknown_items="drop")
    assert ds.report.dropped_unknown_users == 2
    assert ds.report.dropped_unknown_items == 0
    assert list(ds.interactions["user_id"]) == list(INTER["user_id"])
    assert any("2" in line and "user" in line for line in ds.report.lines())


def test_unknown_users_are_fine_without_users_table(tmp_path: Path) -> None:
    ds = load_dataset(make_dataset(tmp_path, interactions=with_unknown(INTER, "user_id", 2)))
    assert len(ds.interactions) == len(INTER) + 2


# --- vector modalities --------------------------------------------------------------------

def vector_dataset(root: Path, name: str = "clip", **spec: str) -> Path:
    return make_dataset(root, modalities={name: ModalitySpec(kind="vector", **spec)})


def test_npy_vectors_are_aligned(tmp_path: Path) -> None:
    vecs = np.random.default_rng(0).normal(size=(len(ITEMS), 3)).astype(np.float32)
    root = vector_dataset(tmp_path, npy="clip.npy")
    np.save(root / "clip.npy", vecs)
    ds = load_dataset(root)
    np.testing.assert_array_equal(ds.vectors["clip"], vecs)
    assert ds.vectors["clip"].dtype == np.float32
    assert ds.vector_masks["clip"].all()
    assert ds.report.vectors_missing == {}


def test_npy_with_wrong_row_count_names_file_and_shape(tmp_path: Path) -> None:
    root = vector_dataset(tmp_path, npy="clip.npy")
    np.save(root / "clip.npy", np.zeros((len(ITEMS) + 1, 3), np.float32))
    with pytest.raises(DatasetError) as err:
        load_dataset(root)
    assert "clip.npy" in str(err.value) and f"({len(ITEMS) + 1}, 3)" in str(err.value)


def test_npy_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="clip.npy"):
        load_dataset(vector_dataset(tmp_path, npy="clip.npy"))


def test_npy_rows_with_nan_are_masked(tmp_path: Path) -> None:
    vecs = np.arange(len(ITEMS) * 3, dtype=np.float32).reshape(len(ITEMS), 3)
    vecs[1, 2] = np.nan
    vecs[3, 0] = np.inf
    root = vector_dataset(tmp_path, npy="clip.npy")
    np.save(root / "clip.npy", vecs)
    ds = load_dataset(root)
    assert list(ds.vector_masks["clip"]) == [True, False, True, False]
    assert np.isfinite(ds.vectors["clip"]).all()
    np.testing.assert_array_equal(ds.vectors["clip"][[0, 2]], vecs[[0, 2]])
    assert ds.report.vectors_missing == {"clip": 2}


def test_parquet_vectors_by_item_id(tmp_path: Path) -> None:
    root = vector_dataset(tmp_path, name="bert", parquet="bert.parquet")
    table = pd.DataFrame({"item_id": ["d", "ghost", "a", "b", "nobody"],  # 'c' has no vector
                          "vector": [[4.0, 40.0], [9.0, 9.0], [1.0, 10.0], [2.0, 20.0], [8.0, 8.0]]})
    table.to_parquet(root / "bert.parquet", index=False)
    ds = load_dataset(root)
    expected = np.array([[1, 10], [2, 20], [0, 0], [4, 40]], np.float32)
    np.testing.assert_array_equal(ds.vectors["bert"], expected)
    assert list(ds.vector_masks["bert"]) == [True, True, False, True]
    assert ds.report.vectors_missing == {"bert": 1}
    assert ds.report.vectors_unknown_ids == {"bert": 2}
    lines = "\n".join(ds.report.lines())
    assert "'bert'" in lines and "1 items" in lines and "2 rows" in lines


def test_parquet_vectors_need_item_id_and_vector_columns(tmp_path: Path) -> None:
    root = vector_dataset(tmp_path, name="bert", parquet="bert.parquet")
    pd.DataFrame({"item_id": ["a"], "emb": [[1.0]]}).to_parquet(root / "bert.parquet", index=False)
    with pytest.raises(DatasetError) as err:
        load_dataset(root)
    assert "bert.parquet" in str(err.value) and "'vector'" in str(err.value)


def test_parquet_null_vector_counts_as_missing(tmp_path: Path) -> None:
    root = vector_dataset(tmp_path, name="bert", parquet="bert.parquet")
    pd.DataFrame({"item_id": ["a", "b", "c"], "vector": [[1.0, 2.0], None, [3.0, 4.0]]}).to_parquet(
        root / "bert.parquet", index=False)
    ds = load_dataset(root)
    assert list(ds.vector_masks["bert"]) == [True, False, True, False]
    np.testing.assert_array_equal(ds.vectors["bert"][[0, 2]], [[1, 2], [3, 4]])
    assert ds.report.vectors_missing == {"bert": 2}


@pytest.mark.parametrize("table", [
    pd.DataFrame({"item_id": ["ghost"], "vector": [[1.0, 2.0]]}),  # no vector for any known item
    pd.DataFrame({"item_id": ["a", "b"], "vector": [[1.0, 2.0], [1.0, 2.0, 3.0]]}),  # ragged
], ids=["only-unknown-ids", "ragged"])
def test_unusable_parquet_vectors_name_the_file(tmp_path: Path, table: pd.DataFrame) -> None:
    root = vector_dataset(tmp_path, name="bert", parquet="bert.parquet")
    table.to_parquet(root / "bert.parquet", index=False)
    with pytest.raises(DatasetError, match="bert.parquet"):
        load_dataset(root)
