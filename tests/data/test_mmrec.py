"""Tests for the MMRec importer, on a small directory in MMRec's real format."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tfmmrec.data.manifest import DatasetError, Manifest
from tfmmrec.data.mmrec import import_mmrec

N_ITEMS = 12
# userID itemID rating timestamp x_label, as written by MMRec's preprocessing notebooks
ROWS = [(0, 0, 5.0, 1390694400, 0), (0, 3, 4.0, 1390694401, 0), (0, 5, 2.0, 1391990400, 1),
        (0, 7, 5.0, 1405123200, 2), (1, 3, 3.0, 1337212800, 0), (1, 10, 5.0, 1354838400, 1),
        (2, 1, 1.0, 1368230400, 0), (2, 4, 4.0, 1302220800, 2)]
HEADER = ["userID", "itemID", "rating", "timestamp", "x_label"]


def write_mmrec(root: Path, *, name: str = "baby", columns: list[str] = HEADER,
                rows: list[tuple] = ROWS, feats: dict[str, int] | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    keep = [HEADER.index(c) for c in columns]
    lines = ["\t".join(columns)] + ["\t".join(str(r[i]) for i in keep) for r in rows]
    (root / f"{name}.inter").write_text("\n".join(lines) + "\n")
    rng = np.random.default_rng(0)
    for modality, dim in (feats or {"image": 8, "text": 6}).items():
        np.save(root / f"{modality}_feat.npy", rng.normal(size=(N_ITEMS, dim)).astype("float32"))
    np.save(root / "user_graph_dict.npy", np.arange(3))  # MMRec side file, not a modality
    return root


def test_import_mmrec_layout(tmp_path: Path) -> None:
    src = write_mmrec(tmp_path / "baby")
    out = import_mmrec(src, tmp_path / "out")
    m = Manifest.load(out)
    assert (m.name, m.rating, m.timestamp) == ("baby", "rating", "timestamp")
    assert sorted(m.modalities) == ["image", "text"]
    assert all(s.kind == "vector" for s in m.modalities.values())
    assert m.modalities["image"].npy == "image_feat.npy"
    assert m.modalities["text"].npy == "text_feat.npy"
    items = pd.read_csv(out / "items.csv", dtype=str)
    assert items["item_id"].tolist() == [str(i) for i in range(N_ITEMS)]  # incl. unrated
    inter = pd.read_csv(out / "interactions.csv", dtype={"user_id": str, "item_id": str})
    assert list(inter.columns) == ["user_id", "item_id", "split", "rating", "timestamp"]
    assert inter["user_id"].tolist() == [str(r[0]) for r in ROWS]
    assert inter["item_id"].tolist() == [str(r[1]) for r in ROWS]
    assert inter["split"].tolist() == [["train", "valid", "test"][r[4]] for r in ROWS]
    assert inter["rating"].tolist() == [r[2] for r in ROWS]
    assert inter["timestamp"].tolist() == [r[3] for r in ROWS]
    for modality in ("image", "text"):
        copied = np.load(out / f"{modality}_feat.npy")
        original = np.load(src / f"{modality}_feat.npy")
        assert copied.dtype == original.dtype and np.array_equal(copied, original)
        assert copied.shape[0] == len(items)  # row i is item_id str(i)
    assert not (out / "user_graph_dict.npy").exists()


def test_minimal_inter_and_extra_modality(tmp_path: Path) -> None:
    src = write_mmrec(tmp_path / "d", name="clips", columns=["userID", "itemID", "x_label"],
                      feats={"image": 4, "text": 4, "audio": 3})
    out = import_mmrec(src, tmp_path / "out")
    m = Manifest.load(out)
    assert (m.name, m.rating, m.timestamp) == ("clips", None, None)
    assert m.modalities["audio"].npy == "audio_feat.npy"
    assert np.load(out / "audio_feat.npy").shape == (N_ITEMS, 3)
    inter = pd.read_csv(out / "interactions.csv")
    assert list(inter.columns) == ["user_id", "item_id", "split"]


def test_choosing_among_several_inter_files(tmp_path: Path) -> None:
    src = write_mmrec(tmp_path / "d", name="baby")
    write_mmrec(src, name="sports", rows=ROWS[:3])
    with pytest.raises(DatasetError, match="found baby.inter, sports.inter"):
        import_mmrec(src, tmp_path / "out")
    out = import_mmrec(src, tmp_path / "out", name="sports")
    assert Manifest.load(out).name == "sports"
    assert len(pd.read_csv(out / "interactions.csv")) == 3


def test_npy_row_mismatch_names_both_files(tmp_path: Path) -> None:
    src = write_mmrec(tmp_path / "d")
    np.save(src / "text_feat.npy", np.zeros((N_ITEMS - 1, 6), dtype="float32"))
    with pytest.raises(DatasetError) as err:
        import_mmrec(src, tmp_path / "out")
    message = str(err.value)
    assert "image_feat.npy has 12 rows" in message and "text_feat.npy has 11" in message


def test_item_ids_beyond_features(tmp_path: Path) -> None:
    rows = ROWS + [(3, 12, 5.0, 1, 0), (3, 40, 5.0, 2, 0)]
    src = write_mmrec(tmp_path / "d", rows=rows)
    with pytest.raises(DatasetError, match=r"2 interactions have itemID >= 12 .* e\.g\. "
                                           r"itemID 12"):
        import_mmrec(src, tmp_path / "out")


@pytest.mark.parametrize("bad, message", [
    ((0, 1, 5.0, 1, 3), r"line 10: x_label must be 0, 1 or 2, got '3'"),
    ((0, "x", 5.0, 1, 0), r"line 10: itemID must be a non-negative integer, got 'x'"),
])
def test_bad_inter_row_is_named(tmp_path: Path, bad: tuple, message: str) -> None:
    src = write_mmrec(tmp_path / "d", rows=ROWS + [bad])
    with pytest.raises(DatasetError, match=message):
        import_mmrec(src, tmp_path / "out")


def test_missing_column_and_features(tmp_path: Path) -> None:
    src = write_mmrec(tmp_path / "d", columns=["userID", "itemID", "rating"])
    with pytest.raises(DatasetError, match=r"missing column\(s\) \['x_label'\]"):
        import_mmrec(src, tmp_path / "out")
    src = write_mmrec(tmp_path / "e")
    for f in src.glob("*_feat.npy"):
        f.unlink()
    with pytest.raises(DatasetError, match=r"no \*_feat\.npy feature files"):
        import_mmrec(src, tmp_path / "out")


def test_blank_lines_are_skipped_and_line_numbers_stay_true(tmp_path: Path) -> None:
    src = write_mmrec(tmp_path / "d")
    inter = src / "baby.inter"
    lines = inter.read_text().splitlines()
    inter.write_text("\n".join(lines[:3] + [""] + lines[3:]) + "\n\n")
    out = import_mmrec(src, tmp_path / "out")
    assert len(pd.read_csv(out / "interactions.csv")) == len(ROWS)
    inter.write_text(inter.read_text().rstrip("\n") + "\n0\t1\t5.0\t1\t7\n")
    with pytest.raises(DatasetError, match=r"line 11: x_label"):  # header + 8 rows + blank
        import_mmrec(src, tmp_path / "out2")


def test_a_constant_rating_is_read_as_implicit_feedback_and_reported(tmp_path: Path) -> None:
    """MMRec's logs rate every interaction 1: that column is no rating, and the load report says so."""
    from tfmmrec.data.loader import load_dataset

    constant = [(u, i, 1.0, t, s) for u, i, _, t, s in ROWS]
    ds = load_dataset(import_mmrec(write_mmrec(tmp_path / "clips", rows=constant), tmp_path / "out"))
    assert "rating" not in ds.interactions.columns and ds.report.constant_rating == ("rating", 1.0)
    assert any("one value (1) in every interaction: not a rating" in line and "implicit feedback" in line
               for line in ds.report.lines())
    rated = load_dataset(import_mmrec(write_mmrec(tmp_path / "baby"), tmp_path / "rated"))
    assert rated.interactions["rating"].tolist() == [r[2] for r in ROWS] and not rated.report.lines()
