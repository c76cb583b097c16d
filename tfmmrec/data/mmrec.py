"""Importer for datasets prepared for MMRec (github.com/enoche/MMRec): Amazon baby/sports/
clothing/elec, MicroLens and anything else run through its preprocessing notebooks.

An MMRec dataset directory holds ``<name>.inter`` (tab-separated, header
``userID itemID rating timestamp x_label``; ``x_label`` 0/1/2 = train/valid/test) and one
``<modality>_feat.npy`` per modality whose row ``i`` is the feature of ``itemID == i``.
Importing keeps MMRec's split and features untouched, so results stay comparable with the
numbers published on these datasets, while the rest of tfmmrec only sees the standard
layout of :mod:`tfmmrec.data.manifest`.

MMRec logs are implicit feedback: their ``rating`` column usually holds one value (1) for every
interaction. It is kept in the file as it came, and ``load_dataset`` reads a rating column with a
single distinct value as no rating at all, saying so in its load report, so ranking learns
positives against sampled negatives (AUC) instead of fitting a constant (a meaningless RMSE).
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from tfmmrec.data.manifest import DatasetError, Manifest, ModalitySpec

SPLITS = {0: "train", 1: "valid", 2: "test"}
FEATURE_SUFFIX = "_feat.npy"
_REQUIRED = ("userID", "itemID", "x_label")
_OPTIONAL = ("rating", "timestamp")


def _find_inter(src: Path, name: str | None) -> Path:
    """MMRec names the interaction file after the dataset; find it or explain what is there."""
    if name is not None:
        path = src / f"{name}.inter"
        if not path.is_file():
            raise DatasetError(f"{path}: file not found")
        return path
    found = sorted(src.glob("*.inter"))
    if len(found) != 1:
        listed = ", ".join(p.name for p in found) or "none"
        raise DatasetError(f"{src}: expected exactly one *.inter file, found {listed}; "
                           "pass name=... to choose")
    return found[0]


def _feature_rows(src: Path) -> tuple[dict[str, Path], int]:
    """Map modality name -> npy path and check all files describe the same items.

    Files are opened memory-mapped: only the header is read, since real feature files
    (e.g. 4096-d image features) can be large.
    """
    files = sorted(src.glob(f"*{FEATURE_SUFFIX}"))
    if not files:
        raise DatasetError(f"{src}: no *{FEATURE_SUFFIX} feature files (MMRec datasets ship "
                           f"e.g. image{FEATURE_SUFFIX} and text{FEATURE_SUFFIX})")
    features: dict[str, Path] = {}
    rows: int | None = None
    first: Path | None = None
    for path in files:
        try:
            array = np.load(path, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError) as err:
            raise DatasetError(f"{path}: not a readable .npy array ({err})") from err
        if array.ndim != 2:
            raise DatasetError(f"{path}: expected a 2-D (items x dims) array, got shape "
                               f"{array.shape}")
        if rows is None:
            rows, first = array.shape[0], path
        elif array.shape[0] != rows:
            raise DatasetError(f"{first} has {rows} rows but {path} has {array.shape[0]}; "
                               "every feature file must have one row per item")
        features[path.name[: -len(FEATURE_SUFFIX)]] = path
    assert rows is not None
    return features, rows


def _read_inter(path: Path) -> pd.DataFrame:
    """Read the .inter file and validate ids and split labels, naming the first bad line."""
    try:
        header = list(pd.read_csv(path, sep="\t", nrows=0).columns)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise DatasetError(f"{path}: cannot read header ({err})") from err
    if missing := [c for c in _REQUIRED if c not in header]:
        raise DatasetError(f"{path}: missing column(s) {missing}; found {header}")
    columns = list(_REQUIRED) + [c for c in _OPTIONAL if c in header]
    try:
        df = pd.read_csv(path, sep="\t", usecols=columns, dtype=str, keep_default_na=False,
                         na_values=[""], skip_blank_lines=False)[columns]
    except pd.errors.ParserError as err:
        raise DatasetError(f"{path}: {err}") from err
    df = df.dropna(how="all")  # blank lines; kept while parsing so index + 2 = line number
    for col in columns:
        values = pd.to_numeric(df[col], errors="coerce")
        bad = values.isna()
        if col != "rating":
            bad |= values % 1 != 0
        if col in ("userID", "itemID"):
            bad |= values < 0
        if col == "x_label":
            bad |= ~values.isin(list(SPLITS))
        if bad.any():
            i = bad.idxmax()
            want = {"x_label": "0, 1 or 2", "rating": "a number"}.get(
                col, "a non-negative integer")
            raise DatasetError(f"{path}, line {i + 2}: {col} must be {want}, got "
                               f"{df.at[i, col]!r}")
        df[col] = values.astype("float64" if col == "rating" else "int64")
    return df


def import_mmrec(source_dir: str | Path, out_dir: str | Path, *,
                 name: str | None = None) -> Path:
    """Import an MMRec dataset directory into ``out_dir`` and return ``out_dir``.

    Items are ``0 .. n-1`` where ``n`` is the row count of the feature files, so items with
    features but no interactions stay in the catalog. Interactions keep MMRec's split as a
    ``split`` column (train/valid/test). Feature files are copied and declared as vector
    modalities named after the file (``image_feat.npy`` -> ``image``).
    """
    src = Path(source_dir)
    if not src.is_dir():
        raise DatasetError(f"{src}: not a directory (expected an MMRec dataset directory)")
    inter_path = _find_inter(src, name)
    features, n_items = _feature_rows(src)
    df = _read_inter(inter_path)
    beyond = df["itemID"] >= n_items
    if beyond.any():
        raise DatasetError(
            f"{inter_path}: {int(beyond.sum())} interactions have itemID >= {n_items} (the "
            f"row count of the feature files), e.g. itemID {df.loc[beyond, 'itemID'].iloc[0]}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"item_id": np.arange(n_items).astype(str)}).to_csv(out / "items.csv",
                                                                     index=False)
    inter = pd.DataFrame({"user_id": df["userID"], "item_id": df["itemID"],
                          "split": df["x_label"].map(SPLITS)})
    for col in _OPTIONAL:
        if col in df:
            inter[col] = df[col]
    inter.to_csv(out / "interactions.csv", index=False)
    modalities = {}
    for modality, path in features.items():
        if path.resolve() != (out / path.name).resolve():
            shutil.copyfile(path, out / path.name)
        modalities[modality] = ModalitySpec(kind="vector", npy=path.name)
    Manifest(items="items.csv", interactions="interactions.csv",
             name=name or inter_path.stem,
             timestamp="timestamp" if "timestamp" in df else None,
             rating="rating" if "rating" in df else None, modalities=modalities).save(out)
    return out
