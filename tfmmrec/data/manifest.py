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
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

MANIFEST_NAME = "manifest.yaml"
MODALITY_KINDS = ("text", "image", "audio", "vector")
MAX_MANIFEST_BYTES = 2**20


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
        """Check every key's type before building (a manifest is untrusted input), so a list where
        a mapping belongs or a string where a list of columns belongs is named, not iterated."""
        if not isinstance(raw, dict):
            raise DatasetError(f"{source}: expected a mapping at the top level, got {_type_name(raw)}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(str(k) for k in set(raw) - known)
        if unknown:
            raise DatasetError(f"{source}: unknown keys {unknown}; known keys are {sorted(known)}")
        for required in ("items", "interactions"):
            if raw.get(required) in (None, ""):
                raise DatasetError(f"{source}: missing required key {required!r}")
        raw = dict(raw)
        for key in ("items", "interactions", "item_id", "user_id"):
            if key in raw:
                _require_str(raw[key], f"{source}: key {key!r}")
        for key in ("users", "timestamp", "rating", "label", "weight"):
            if raw.get(key) is not None:
                _require_str(raw[key], f"{source}: key {key!r}")
        if "name" in raw:
            raw["name"] = _plain_name(raw["name"], f"{source}: key 'name'")
        for key in ("categorical", "numeric"):
            raw[key] = _column_list(raw.get(key), f"{source}: key {key!r}")
        if raw.get("rating") and raw.get("label"):
            raise DatasetError(f"{source}: give 'rating' (explicit ratings) or 'label' (0/1 feedback), not both")
        modalities = {}
        raw_modalities = raw.pop("modalities", None) or {}
        if not isinstance(raw_modalities, dict):
            raise DatasetError(f"{source}: key 'modalities' must be a mapping of name -> {{kind: ...}}, "
                               f"got {_type_name(raw_modalities)}")
        spec_keys = {f.name for f in dataclasses.fields(ModalitySpec)}
        for name, spec in raw_modalities.items():
            where = f"{source}: modality {name!r}"
            _plain_name(name, f"{source}: modality name")
            if not isinstance(spec, dict):
                raise DatasetError(f"{where} must be a mapping, got {_type_name(spec)}")
            bad = sorted(str(k) for k in set(spec) - spec_keys)
            if bad:
                raise DatasetError(f"{where} has unknown keys {bad}")
            spec = dict(spec)
            _require_str(spec.get("kind"), f"{where}: key 'kind'")
            spec["columns"] = _column_list(spec.get("columns"), f"{where}: key 'columns'")
            for key in ("column", "npy", "parquet"):
                if spec.get(key) is not None:
                    _require_str(spec[key], f"{where}: key {key!r}")
            modalities[name] = ModalitySpec(**spec)
            modalities[name].validate(name)
        # Modalities and fields become the exported signature's input names: they must differ.
        clash = sorted((set(modalities) & set(raw["categorical"] + raw["numeric"]))
                       | (set(raw["categorical"]) & set(raw["numeric"])))
        if clash:
            raise DatasetError(f"{source}: {clash} named as more than one of modality / categorical / numeric; "
                               "each name can be only one (they are the export's input names)")
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
        if path.stat().st_size > MAX_MANIFEST_BYTES:
            raise DatasetError(f"{path}: over the {MAX_MANIFEST_BYTES} bytes a manifest may have")
        try:
            raw = yaml.safe_load(path.read_text())
        except yaml.YAMLError as err:
            raise DatasetError(f"{path}: not valid YAML: {err}") from err
        except (OSError, UnicodeDecodeError) as err:
            raise DatasetError(f"{path}: cannot be read: {err}") from err
        return cls.from_dict(raw, source=str(path))


#: A manifest ``name`` decides where a run writes (``runs/NAME``, ``saved_models/NAME_retrieval``),
#: so it must be one plain path component.
PLAIN_NAME = re.compile(r"[A-Za-z0-9._-]+")


def _type_name(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"[:80]


def _require_str(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise DatasetError(f"{where} must be a non-empty string, got {_type_name(value)}")
    return value


def _plain_name(value: Any, where: str) -> str:
    _require_str(value, where)
    if not PLAIN_NAME.fullmatch(value) or value in (".", ".."):
        raise DatasetError(f"{where} must be a plain name (letters, digits, '.', '_', '-'; not '.' or '..'), "
                           f"got {value!r}")
    return value


def _column_list(value: Any, where: str) -> list[str]:
    """A list of column names; a bare string is refused (it would be read letter by letter)."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise DatasetError(f"{where} must be a list of column names, e.g. [{value!r}], got {_type_name(value)}"
                           if isinstance(value, str) else f"{where} must be a list of column names, "
                           f"got {_type_name(value)}")
    for v in value:
        _require_str(v, f"{where}: each entry")
    if len(set(value)) != len(value):
        raise DatasetError(f"{where} lists a column twice: {value}")
    return list(value)
