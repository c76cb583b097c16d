"""Read a dataset directory (manifest + tables + vector files) and validate it.

Validation happens here, once, with messages that name the file, column or row at fault,
so that nothing downstream (tf.data, Keras) ever sees a malformed table.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from tfmmrec.data.manifest import DatasetError, Manifest

SPLITS = ("train", "valid", "test")
OnUnknown = Literal["error", "drop"]


@dataclass
class LoadReport:
    """What loading had to skip; printed by the CLI and kept in run metadata."""

    dropped_unknown_items: int = 0
    dropped_unknown_users: int = 0
    vectors_missing: dict[str, int] = field(default_factory=dict)
    vectors_unknown_ids: dict[str, int] = field(default_factory=dict)
    constant_rating: tuple[str, float] | None = None  # (column, its only value): read as implicit feedback

    def lines(self) -> list[str]:
        out = []
        if self.constant_rating is not None:
            column, value = self.constant_rating
            out.append(f"rating column {column!r} has one value ({value:g}) in every interaction: not a rating; "
                       "the log is implicit feedback (ranking learns positives against sampled negatives and "
                       "reports AUC, not RMSE)")
        if self.dropped_unknown_items:
            out.append(f"dropped {self.dropped_unknown_items} interactions with item ids not in the items table")
        if self.dropped_unknown_users:
            out.append(f"dropped {self.dropped_unknown_users} interactions with user ids not in the users table")
        for name, n in self.vectors_missing.items():
            out.append(f"vector modality {name!r}: {n} items have no vector (modality masked)")
        for name, n in self.vectors_unknown_ids.items():
            out.append(f"vector modality {name!r}: ignored {n} rows for unknown item ids")
        return out


@dataclass
class Dataset:
    """A validated dataset in memory.

    ``items`` keeps the file's row order: row i of ``items`` is item index i everywhere in
    tfmmrec (embedding rows, the export index). ``interactions`` gains an ``item_idx`` column.
    Vector modalities are float32 arrays aligned to item rows with a boolean presence mask.
    """

    root: Path
    manifest: Manifest
    items: pd.DataFrame
    interactions: pd.DataFrame
    users: pd.DataFrame | None
    vectors: dict[str, np.ndarray]
    vector_masks: dict[str, np.ndarray]
    report: LoadReport

    @property
    def item_ids(self) -> np.ndarray:
        return self.items["item_id"].to_numpy()

    @property
    def num_items(self) -> int:
        return len(self.items)


def read_table(path: Path, str_columns: list[str]) -> pd.DataFrame:
    """Read a CSV or Parquet table; id columns stay strings ("007" is not 7)."""
    if not path.is_file():
        raise DatasetError(f"{path}: file not found")
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            df = pd.read_parquet(path)
            for c in str_columns:
                if c in df.columns:
                    df[c] = df[c].astype(str)
        elif suffix in (".csv", ".tsv"):
            sep = "\t" if suffix == ".tsv" else ","
            df = pd.read_csv(path, sep=sep, dtype={c: str for c in str_columns}, keep_default_na=False,
                             na_values={c: [] for c in str_columns})
        else:
            raise DatasetError(f"{path}: unsupported table format {suffix!r} (use .csv, .tsv or .parquet)")
    except (pd.errors.ParserError, UnicodeDecodeError, OSError, ValueError) as err:
        if isinstance(err, DatasetError):
            raise
        raise DatasetError(f"{path}: cannot be read as a table: {err}") from err
    return df


def _require_columns(df: pd.DataFrame, columns: list[str], path: Path) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DatasetError(f"{path}: missing column(s) {missing}; it has {list(df.columns)}")


def _require_numeric(df: pd.DataFrame, column: str, path: Path, *, allow_empty: bool = False) -> None:
    """Parse ``column`` as numbers; ``allow_empty``: an empty cell is a missing value (NaN), as for a
    movie without a release year (the models mask that item's numeric fields)."""
    values = pd.to_numeric(df[column], errors="coerce")
    missing = values.isna().to_numpy()
    if allow_empty:
        missing &= ~df[column].isna().to_numpy() & (df[column].astype(str).str.strip() != "").to_numpy()
    bad = np.flatnonzero(missing)
    if len(bad):
        row = int(bad[0])
        raise DatasetError(f"{path}: column {column!r} must be numeric; row {row + 2} has "
                           f"{df[column].iloc[row]!r} ({len(bad)} bad rows in all)")
    df[column] = values


def _first_rows(mask: np.ndarray, n: int = 5) -> str:
    return ", ".join(str(int(i) + 2) for i in np.flatnonzero(mask)[:n])  # +2: header + 1-based


def load_dataset(root: str | Path, *, on_unknown_items: OnUnknown = "error") -> Dataset:
    """Load and validate the dataset in ``root``.

    Args:
      root: a directory holding ``manifest.yaml`` and the tables it names.
      on_unknown_items: interactions whose item (or user, if a users table exists) is unknown
        either stop loading (``"error"``, the default: such rows usually mean a broken export)
        or are dropped and counted in ``Dataset.report`` (``"drop"``).
    """
    root = Path(root)
    m = Manifest.load(root)
    report = LoadReport()

    items_path = root / m.items
    items = read_table(items_path, [m.item_id])
    text_cols = [c for spec in m.modalities_of("text").values() for c in spec.columns]
    path_cols = [str(spec.column) for k in ("image", "audio") for spec in m.modalities_of(k).values()]
    _require_columns(items, [m.item_id, *text_cols, *path_cols, *m.categorical, *m.numeric], items_path)
    items = items.rename(columns={m.item_id: "item_id"})
    if (items["item_id"] == "").any():
        raise DatasetError(f"{items_path}: empty item id in row(s) {_first_rows(items['item_id'].eq('').to_numpy())}")
    dup = items["item_id"].duplicated(keep=False).to_numpy()
    if dup.any():
        examples = items.loc[dup, "item_id"].unique()[:5].tolist()
        raise DatasetError(f"{items_path}: duplicate item ids {examples} in rows {_first_rows(dup)}")
    for c in [*text_cols, *path_cols, *m.categorical]:
        items[c] = items[c].fillna("").astype(str)
    for c in m.numeric:
        _require_numeric(items, c, items_path, allow_empty=True)
    items = items.reset_index(drop=True)

    inter_path = root / m.interactions
    inter = read_table(inter_path, [m.user_id, m.item_id])
    optional = [c for c in (m.timestamp, m.rating, m.label, m.weight) if c]
    _require_columns(inter, [m.user_id, m.item_id, *optional], inter_path)
    inter = inter.rename(columns={m.user_id: "user_id", m.item_id: "item_id"})
    for c in optional:
        _require_numeric(inter, c, inter_path)
    inter = inter.rename(columns={c: n for c, n in zip(
        (m.timestamp, m.rating, m.label, m.weight), ("timestamp", "rating", "label", "weight")) if c})
    if "rating" in inter.columns and len(inter) > 1 and inter["rating"].nunique(dropna=False) == 1:
        # e.g. MMRec logs, whose constant rating column only marks an interaction: an RMSE against it
        # would measure nothing, so the log is treated as implicit feedback.
        report.constant_rating = (str(m.rating), float(inter["rating"].iloc[0]))
        inter = inter.drop(columns="rating")
    if "split" in inter.columns:
        bad = ~inter["split"].isin(SPLITS).to_numpy()
        if bad.any():
            raise DatasetError(f"{inter_path}: column 'split' must be one of {SPLITS}; rows "
                               f"{_first_rows(bad)} have {inter.loc[bad, 'split'].iloc[0]!r}")
    if (inter["user_id"] == "").any():
        raise DatasetError(f"{inter_path}: empty user id in row(s) {_first_rows(inter['user_id'].eq('').to_numpy())}")

    item_index = pd.Index(items["item_id"])
    inter["item_idx"] = item_index.get_indexer(inter["item_id"])
    inter, report.dropped_unknown_items = _handle_unknown(
        inter, (inter["item_idx"] < 0).to_numpy(), "item_id", inter_path, items_path, on_unknown_items)

    users = None
    if m.users:
        users_path = root / m.users
        users = read_table(users_path, [m.user_id])
        _require_columns(users, [m.user_id, *m.user_numeric], users_path)
        for c in m.user_numeric:
            _require_numeric(users, c, users_path, allow_empty=True)
        users = users.rename(columns={m.user_id: "user_id"})
        inter, report.dropped_unknown_users = _handle_unknown(
            inter, ~inter["user_id"].isin(users["user_id"]).to_numpy(), "user_id", inter_path, users_path,
            on_unknown_items)
    inter = inter.reset_index(drop=True)

    vectors, masks = {}, {}
    for name, spec in m.modalities_of("vector").items():
        vectors[name], masks[name] = _load_vectors(root, name, spec.npy, spec.parquet, item_index, report)
    return Dataset(root, m, items, inter, users, vectors, masks, report)


def _handle_unknown(inter: pd.DataFrame, unknown: np.ndarray, column: str, inter_path: Path, table_path: Path,
                    policy: OnUnknown) -> tuple[pd.DataFrame, int]:
    """Stop on interactions whose ``column`` id is not in ``table_path`` or drop and count them."""
    if not unknown.any():
        return inter, 0
    if policy == "error":
        raise DatasetError(f"{inter_path}: {int(unknown.sum())} interactions reference {column.split('_')[0]} ids "
                           f"not in {table_path.name} (first: {inter.loc[unknown, column].iloc[0]!r} in row "
                           f"{_first_rows(unknown, 1)}); pass on_unknown_items='drop' (CLI: --drop-unknown) "
                           "to drop and count them")
    return inter.loc[~unknown], int(unknown.sum())


def _load_vectors(root: Path, name: str, npy: str | None, parquet: str | None,
                  item_index: pd.Index, report: LoadReport) -> tuple[np.ndarray, np.ndarray]:
    n = len(item_index)
    if npy is not None:
        path = root / npy
        if not path.is_file():
            raise DatasetError(f"{path}: vector file for modality {name!r} not found")
        arr = np.load(path, mmap_mode="r")
        if arr.ndim != 2 or arr.shape[0] != n:
            raise DatasetError(f"{path}: expected a 2-D array with one row per item ({n} rows), got shape {arr.shape}")
        arr = np.asarray(arr, dtype=np.float32)
        present = np.isfinite(arr).all(axis=1)
    else:
        path = root / str(parquet)
        table = read_table(path, ["item_id"])
        _require_columns(table, ["item_id", "vector"], path)
        rows = item_index.get_indexer(table["item_id"])
        known = rows >= 0
        if (~known).any():
            report.vectors_unknown_ids[name] = int((~known).sum())
        cells = table["vector"].to_numpy()
        usable = known & np.array([c is not None and np.size(c) > 0 for c in cells], bool)
        if not usable.any():
            raise DatasetError(f"{path}: no usable vector for any item of the catalog "
                               f"({int(known.sum())} rows with known item ids)")
        lengths = {int(np.size(c)) for c in cells[usable]}
        if len(lengths) > 1:
            raise DatasetError(f"{path}: vectors of modality {name!r} have different lengths {sorted(lengths)}")
        vecs = np.stack([np.asarray(c, np.float32) for c in cells[usable]])
        arr = np.zeros((n, vecs.shape[1]), np.float32)
        arr[rows[usable]] = vecs
        present = np.zeros(n, bool)
        present[rows[usable]] = True
        present &= np.isfinite(arr).all(axis=1)
    arr = np.where(present[:, None], arr, 0.0).astype(np.float32)
    if (~present).any():
        report.vectors_missing[name] = int((~present).sum())
    return arr, present
