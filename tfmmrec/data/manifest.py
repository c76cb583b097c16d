"""The dataset manifest: one small YAML file that says what a dataset directory holds.

Every dataset tfmmrec reads (the demo catalog, MovieLens and MMRec imports, users' own
data) lives in one layout on disk, described by ``manifest.yaml`` in its root::

    name: demo
    items: items.csv                 # CSV or Parquet, one row per item
    interactions: interactions.csv   # user_id, item_id [, timestamp, rating, label, weight, split]
    users: users.csv                 # optional
    item_id: item_id                 # column names; these are the defaults
    user_id: user_id
    timestamp: timestamp             # null when the log has no time
    rating: null                     # explicit ratings (ranking reports RMSE)
    label: null                      # binary 0/1 feedback (ranking reports AUC)
    weight: null                     # per-interaction sample weight
    modalities:
      text:  {kind: text,  columns: [title, description]}
      image: {kind: image, column: image_path}      # paths relative to the root
      audio: {kind: audio, column: audio_path}
      clip:  {kind: vector, npy: clip.npy}          # row i = item row i
      bert:  {kind: vector, parquet: bert.parquet}  # item_id -> vector
    categorical: [brand]
    numeric: [price]                 # empty cells = missing (that item's numeric fields are masked)
    user_numeric: [age]              # users-table columns read as numbers; the others are categorical

Keeping the description in one file (rather than in code or CLI flags) means a dataset
can be handed around, validated and re-read without knowing who wrote it.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

MANIFEST_NAME = "manifest.yaml"
MODALITY_KINDS = ("text", "image", "audio", "vector")


class DatasetError(ValueError):
    """Raised when a dataset on disk does not match its manifest; the message names the file,
    column or row at fault."""


@dataclass
class ModalitySpec:
    """Where one modality of an item lives.

    Attributes:
      kind: ``text`` (one or more string columns, joined with a space), ``image`` or ``audio``
        (a column of file paths relative to the dataset root; empty means absent), or
        ``vector`` (precomputed vectors: ``npy`` aligned to item rows, or ``parquet`` with an
        item id column and one vector column).
      columns: text columns (kind ``text``).
      column: path column (``image``/``audio``).
      npy: ``.npy`` file relative to the root (``vector``).
      parquet: Parquet file relative to the root (``vector``), columns ``item_id`` and ``vector``.
    """

    kind: str
    columns: list[str] = field(default_factory=list)
    column: str | None = None
    npy: str | None = None
    parquet: str | None = None

    def validate(self, name: str) -> None:
        where = f"manifest modality {name!r}"
        if self.kind not in MODALITY_KINDS:
            raise DatasetError(f"{where}: kind must be one of {MODALITY_KINDS}, got {self.kind!r}")
        if self.kind == "text" and not self.columns:
            raise DatasetError(f"{where}: a text modality needs 'columns: [...]'")
        if self.kind in ("image", "audio") and not self.column:
            raise DatasetError(f"{where}: an {self.kind} modality needs 'column: <path column>'")
        if self.kind == "vector" and (self.npy is None) == (self.parquet is None):
            raise DatasetError(f"{where}: a vector modality needs exactly one of 'npy' or 'parquet'")


@dataclass
class Manifest:
    """The parsed ``manifest.yaml``; see the module docstring for the file format."""

    items: str
    interactions: str
    name: str = "dataset"
    users: str | None = None
    item_id: str = "item_id"
    user_id: str = "user_id"
    timestamp: str | None = None
    rating: str | None = None
    label: str | None = None
    weight: str | None = None
    modalities: dict[str, ModalitySpec] = field(default_factory=dict)
    categorical: list[str] = field(default_factory=list)
    numeric: list[str] = field(default_factory=list)
    user_numeric: list[str] = field(default_factory=list)

    def modalities_of(self, kind: str) -> dict[str, ModalitySpec]:
        return {n: m for n, m in self.modalities.items() if m.kind == kind}

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["modalities"] = {
            n: {k: v for k, v in dataclasses.asdict(m).items() if v not in (None, [])}
            for n, m in self.modalities.items()
        }
        return out

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str = "manifest") -> Manifest:
        if not isinstance(raw, dict):
            raise DatasetError(f"{source}: expected a mapping at the top level")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise DatasetError(f"{source}: unknown keys {unknown}; known keys are {sorted(known)}")
        for required in ("items", "interactions"):
            if not raw.get(required):
                raise DatasetError(f"{source}: missing required key {required!r}")
        raw = dict(raw)
        modalities = {}
        for name, spec in (raw.pop("modalities", None) or {}).items():
            if not isinstance(spec, dict):
                raise DatasetError(f"{source}: modality {name!r} must be a mapping")
            spec_keys = {f.name for f in dataclasses.fields(ModalitySpec)}
            bad = sorted(set(spec) - spec_keys)
            if bad:
                raise DatasetError(f"{source}: modality {name!r} has unknown keys {bad}")
            modalities[name] = ModalitySpec(**spec)
            modalities[name].validate(name)
        return cls(modalities=modalities, **raw)

    def save(self, root: str | Path) -> Path:
        path = Path(root) / MANIFEST_NAME
        path.write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))
        return path

    @classmethod
    def load(cls, root: str | Path) -> Manifest:
        path = Path(root) / MANIFEST_NAME
        if not path.is_file():
            raise DatasetError(f"{path}: no manifest; a dataset directory needs a {MANIFEST_NAME}")
        try:
            raw = yaml.safe_load(path.read_text())
        except yaml.YAMLError as err:
            raise DatasetError(f"{path}: not valid YAML: {err}") from err
        return cls.from_dict(raw, source=str(path))
