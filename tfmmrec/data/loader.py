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
from tfmmrec.data.paths import manifest_file

#: Bytes of one table or vector file (a real interaction log is far larger than a media file).
MAX_TABLE_BYTES = 16 * 2**30
_NPY_MAGIC = b"\x93NUMPY"

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
                    null = df[c].isna().to_numpy()
                    if null.any():  # astype(str) would turn them into an id "None"
                        raise DatasetError(f"{path}: column {c!r} has null ids in row(s) {_first_rows(null, base=1)} "
                                           f"({int(null.sum())} in all)")
                    df[c] = df[c].astype(str)
        elif suffix in (".csv", ".tsv"):
            sep = "\t" if suffix == ".tsv" else ","
            df = pd.read_csv(path, sep=sep, dtype={c: str for c in str_columns}, keep_default_na=False,
                             na_values={c: [] for c in str_columns}, encoding="utf-8-sig")  # a BOM is not a column
        else:
            raise DatasetError(f"{path}: unsupported table format {suffix!r} (use .csv, .tsv or .parquet)")
    except (pd.errors.ParserError, UnicodeDecodeError, OSError, ValueError, TypeError, ImportError) as err:
        if isinstance(err, DatasetError):
            raise
        raise DatasetError(f"{path}: cannot be read as a table: {err}") from err
    if len(set(map(str, df.columns))) != len(df.columns):
        raise DatasetError(f"{path}: duplicate column names in {list(df.columns)}")
    df.columns = [str(c) for c in df.columns]
    return df


def _require_columns(df: pd.DataFrame, columns: list[str], path: Path) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DatasetError(f"{path}: missing column(s) {missing}; it has {list(df.columns)}")


def _require_numeric(df: pd.DataFrame, column: str, path: Path, what: str = "numeric",
                     ok: np.ndarray | None = None, *, allow_empty: bool = False) -> None:
    """``column`` as finite numbers (``ok``: a further per-row condition, named by ``what``);
    ``allow_empty``: an empty cell is a missing value (NaN), as for a movie without a release
    year (the models mask that item's numeric fields)."""
    column_values = df[column]
    if isinstance(column_values.dtype, pd.DatetimeTZDtype):  # Parquet timestamps: nanoseconds, UTC
        column_values = column_values.dt.tz_convert("UTC").dt.tz_localize(None)
    try:
        values = pd.to_numeric(column_values, errors="coerce")
        as_float = values.to_numpy(np.float64, na_value=np.nan)
    except (TypeError, ValueError):
        raise DatasetError(f"{path}: column {column!r} must be {what}; it holds {df[column].dtype} values such as "
                           f"{str(df[column].iloc[0])[:40]!r}") from None
    good = np.isfinite(as_float)
    if ok is not None:
        with np.errstate(invalid="ignore"):
            good &= ok(as_float)
    if allow_empty:
        good |= (df[column].isna() | (df[column].astype(str).str.strip() == "")).to_numpy()
    bad = np.flatnonzero(~good)
    if len(bad):
        row = int(bad[0])
        value = df[column].iloc[row]
        value = value.item() if isinstance(value, np.generic) else value  # -3, not numpy 2's np.int64(-3)
        raise DatasetError(f"{path}: column {column!r} must be {what}; row {row + 2} has "
                           f"{value!r} ({len(bad)} bad rows in all)")
    df[column] = values


def _first_rows(mask: np.ndarray, n: int = 5, base: int = 2) -> str:
    """Row numbers as a user sees them: CSV lines (``base`` 2: header + 1-based)."""
    return ", ".join(str(int(i) + base) for i in np.flatnonzero(mask)[:n])


def _require_ids(df: pd.DataFrame, column: str, path: Path, what: str) -> None:
    empty = df[column].str.strip().eq("").to_numpy()
    if empty.any():
        raise DatasetError(f"{path}: empty {what} id in column {column!r}, row(s) {_first_rows(empty)}")
    control = df[column].str.contains("[\x00-\x1f]", regex=True).to_numpy()
    if control.any():  # NUL separates id and content hash in the embedding store; newlines break reports
        raise DatasetError(f"{path}: {what} id with a control character (NUL, tab, newline ...) in column "
                           f"{column!r}, row(s) {_first_rows(control)}: {df[column][control].iloc[0]!r}")


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

    items_path = manifest_file(root, m.items, "items", MAX_TABLE_BYTES)
    items = read_table(items_path, [m.item_id])
    text_cols = [c for spec in m.modalities_of("text").values() for c in spec.columns]
    path_cols = [str(spec.column) for k in ("image", "audio") for spec in m.modalities_of(k).values()]
    _require_columns(items, [m.item_id, *text_cols, *path_cols, *m.categorical, *m.numeric], items_path)
    if not len(items):
        raise DatasetError(f"{items_path}: the items table has no rows")
    items = items.rename(columns={m.item_id: "item_id"})
    _require_ids(items, "item_id", items_path, "item")
    dup = items["item_id"].duplicated(keep=False).to_numpy()
    if dup.any():
        examples = items.loc[dup, "item_id"].unique()[:5].tolist()
        raise DatasetError(f"{items_path}: duplicate item ids {examples} in rows {_first_rows(dup)}")
    for c in [*text_cols, *path_cols, *m.categorical]:
        items[c] = items[c].fillna("").astype(str)
    for c in m.numeric:
        _require_numeric(items, c, items_path, allow_empty=True)
    items = items.reset_index(drop=True)

    inter_path = manifest_file(root, m.interactions, "interactions", MAX_TABLE_BYTES)
    inter = read_table(inter_path, [m.user_id, m.item_id])
    optional = [c for c in (m.timestamp, m.rating, m.label, m.weight) if c]
    _require_columns(inter, [m.user_id, m.item_id, *optional], inter_path)
    if not len(inter):
        raise DatasetError(f"{inter_path}: the interactions table has no rows")
    inter = inter.rename(columns={m.user_id: "user_id", m.item_id: "item_id"})
    for c in optional:
        if c == m.label:
            _require_numeric(inter, c, inter_path, "0 or 1 (binary feedback)", lambda v: (v == 0) | (v == 1))
        elif c == m.weight:
            _require_numeric(inter, c, inter_path, "a finite number >= 0 (a sample weight)", lambda v: v >= 0)
        else:
            _require_numeric(inter, c, inter_path)
    inter = inter.rename(columns={c: n for c, n in zip(
        (m.timestamp, m.rating, m.label, m.weight), ("timestamp", "rating", "label", "weight")) if c})
    if "rating" in inter.columns and len(inter) > 1 and inter["rating"].nunique(dropna=False) == 1:
        # e.g. MMRec logs, whose constant rating column only marks an interaction: an RMSE against it
        # would measure nothing, so the log is treated as implicit feedback.
        report.constant_rating = (str(m.rating), float(inter["rating"].iloc[0]))
        inter = inter.drop(columns="rating")
    if "split" in inter.columns:
        _check_split_column(inter, inter_path)
    _require_ids(inter, "user_id", inter_path, "user")

    item_index = pd.Index(items["item_id"])
    inter["item_idx"] = item_index.get_indexer(inter["item_id"])
    inter, report.dropped_unknown_items = _handle_unknown(
        inter, (inter["item_idx"] < 0).to_numpy(), "item_id", inter_path, items_path, on_unknown_items)

    users = None
    if m.users:
        users_path = manifest_file(root, m.users, "users", MAX_TABLE_BYTES)
        users = read_table(users_path, [m.user_id])
        _require_columns(users, [m.user_id, *m.user_numeric], users_path)
        for c in m.user_numeric:
            _require_numeric(users, c, users_path, allow_empty=True)
        users = users.rename(columns={m.user_id: "user_id"})
        _require_ids(users, "user_id", users_path, "user")
        dup = users["user_id"].duplicated(keep=False).to_numpy()
        if dup.any():
            raise DatasetError(f"{users_path}: duplicate user ids {users.loc[dup, 'user_id'].unique()[:5].tolist()} "
                               f"in rows {_first_rows(dup)}")
        inter, report.dropped_unknown_users = _handle_unknown(
            inter, ~inter["user_id"].isin(users["user_id"]).to_numpy(), "user_id", inter_path, users_path,
            on_unknown_items)
    inter = inter.reset_index(drop=True)
    if not len(inter):
        raise DatasetError(f"{inter_path}: no interactions left after dropping unknown ids")
    if "split" in inter.columns:
        present = set(inter["split"])
        for needed in ("train", "test"):
            if needed not in present:
                raise DatasetError(f"{inter_path}: column 'split' has no {needed!r} rows (it has "
                                   f"{sorted(present)}); a predefined split needs train and test rows")

    vectors, masks = {}, {}
    for name, spec in m.modalities_of("vector").items():
        vectors[name], masks[name] = _load_vectors(root, name, spec.npy, spec.parquet, item_index, report)
    return Dataset(root, m, items, inter, users, vectors, masks, report)


def _check_split_column(inter: pd.DataFrame, inter_path: Path) -> None:
    values = inter["split"].map(lambda v: v if isinstance(v, str) else None)
    bad = ~values.isin(SPLITS).to_numpy()
    if bad.any():
        raise DatasetError(f"{inter_path}: column 'split' must be one of {SPLITS}; rows "
                           f"{_first_rows(bad)} have {inter.loc[bad, 'split'].iloc[0]!r}")


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
        path = manifest_file(root, npy, f"modalities.{name}.npy", MAX_TABLE_BYTES)
        arr = _read_npy(path, name)
        if arr.ndim != 2 or arr.shape[0] != n or arr.shape[1] < 1:
            raise DatasetError(f"{path}: vector file of modality {name!r}: expected a 2-D array with one row per "
                               f"item ({n} rows) and at least one column, got shape {arr.shape}")
        arr = np.asarray(arr, dtype=np.float32)
        present = np.isfinite(arr).all(axis=1)
    else:
        path = manifest_file(root, str(parquet), f"modalities.{name}.parquet", MAX_TABLE_BYTES)
        if path.suffix.lower() != ".parquet":
            raise DatasetError(f"manifest key 'modalities.{name}.parquet' ({parquet}): a vector table must be a "
                               ".parquet file (columns item_id and vector, a list of floats per row)")
        table = read_table(path, ["item_id"])
        _require_columns(table, ["item_id", "vector"], path)
        dup = table["item_id"].duplicated(keep=False).to_numpy()
        if dup.any():
            raise DatasetError(f"{path}: duplicate item ids {table.loc[dup, 'item_id'].unique()[:5].tolist()} "
                               f"in rows {_first_rows(dup, base=1)}")
        rows = item_index.get_indexer(table["item_id"])
        known = rows >= 0
        if (~known).any():
            report.vectors_unknown_ids[name] = int((~known).sum())
        cells = [_vector_cell(c, path, name, r) if k else None
                 for r, (c, k) in enumerate(zip(table["vector"].tolist(), known))]
        usable = np.array([c is not None and c.size > 0 for c in cells], bool)
        if not usable.any():
            raise DatasetError(f"{path}: no usable vector for any item of the catalog "
                               f"({int(known.sum())} rows with known item ids)")
        lengths = {int(c.size) for c, u in zip(cells, usable) if u}
        if len(lengths) > 1:
            raise DatasetError(f"{path}: vectors of modality {name!r} have different lengths {sorted(lengths)}")
        vecs = np.stack([c for c, u in zip(cells, usable) if u]).astype(np.float32)
        arr = np.zeros((n, vecs.shape[1]), np.float32)
        arr[rows[usable]] = vecs
        present = np.zeros(n, bool)
        present[rows[usable]] = True
        present &= np.isfinite(arr).all(axis=1)
    arr = np.where(present[:, None], arr, 0.0).astype(np.float32)
    if (~present).any():
        report.vectors_missing[name] = int((~present).sum())
    return arr, present


def _read_npy(path: Path, name: str) -> np.ndarray:
    """A real ``.npy`` of numbers (not an ``.npz`` or pickle renamed, not strings or objects)."""
    with open(path, "rb") as f:
        magic = f.read(len(_NPY_MAGIC))
    if magic != _NPY_MAGIC:
        raise DatasetError(f"{path}: vector file of modality {name!r} is not a .npy array file "
                           "(write it with numpy.save; .npz archives and pickles are not read)")
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise DatasetError(f"{path}: vector file of modality {name!r} cannot be read: {err}") from err
    if arr.dtype.kind not in "fiub":
        raise DatasetError(f"{path}: vector file of modality {name!r} must hold numbers, got dtype {arr.dtype}")
    return arr


def _vector_cell(cell: object, path: Path, name: str, row: int) -> np.ndarray | None:
    """One Parquet vector: None (no vector) or a 1-D list of numbers; anything else is named."""
    if cell is None:
        return None
    if isinstance(cell, (str, bytes)) or np.ndim(cell) == 0:
        raise DatasetError(f"{path}: column 'vector' of modality {name!r}, row {row + 1}: expected a list of "
                           f"numbers, got {type(cell).__name__} {str(cell)[:40]!r}")
    try:
        arr = np.asarray(cell, dtype=np.float64)
    except (ValueError, TypeError):
        raise DatasetError(f"{path}: column 'vector' of modality {name!r}, row {row + 1}: expected a flat list "
                           "of numbers (nested or ragged lists, or non-numbers, are not vectors)") from None
    if arr.ndim != 1:
        raise DatasetError(f"{path}: column 'vector' of modality {name!r}, row {row + 1}: expected a flat list "
                           f"of numbers, got a nested array of shape {arr.shape}")
    return arr
