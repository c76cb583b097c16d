"""Tests for the dataset manifest: round trip through YAML and validation messages."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tfmmrec.data.manifest import MANIFEST_NAME, DatasetError, Manifest, ModalitySpec


def write_manifest(root: Path, raw: dict) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / MANIFEST_NAME).write_text(yaml.safe_dump(raw))
    return root


def full_manifest() -> Manifest:
    return Manifest(
        items="items.parquet", interactions="inter.csv", name="shop", users="users.csv",
        item_id="sku", user_id="customer", timestamp="ts", rating="stars", label=None, weight="w",
        modalities={
            "text": ModalitySpec(kind="text", columns=["title", "description"]),
            "image": ModalitySpec(kind="image", column="image_path"),
            "audio": ModalitySpec(kind="audio", column="audio_path"),
            "clip": ModalitySpec(kind="vector", npy="clip.npy"),
            "bert": ModalitySpec(kind="vector", parquet="bert.parquet"),
        },
        categorical=["brand"], numeric=["price", "weight_kg"],
    )


def test_save_load_round_trip(tmp_path: Path) -> None:
    m = full_manifest()
    path = m.save(tmp_path)
    assert path == tmp_path / MANIFEST_NAME
    loaded = Manifest.load(tmp_path)
    assert loaded.to_dict() == m.to_dict()
    assert loaded == m
    assert set(loaded.modalities_of("vector")) == {"clip", "bert"}


def test_minimal_manifest_gets_defaults(tmp_path: Path) -> None:
    m = Manifest.load(write_manifest(tmp_path, {"items": "a.csv", "interactions": "b.csv"}))
    assert (m.item_id, m.user_id, m.timestamp, m.users, m.modalities) == ("item_id", "user_id", None, None, {})


def test_unknown_top_level_key_is_named(tmp_path: Path) -> None:
    write_manifest(tmp_path, {"items": "a.csv", "interactions": "b.csv", "timestmap": "ts"})
    with pytest.raises(DatasetError, match="timestmap"):
        Manifest.load(tmp_path)


@pytest.mark.parametrize("missing", ["items", "interactions"])
def test_missing_required_key(tmp_path: Path, missing: str) -> None:
    raw = {"items": "a.csv", "interactions": "b.csv"}
    del raw[missing]
    write_manifest(tmp_path, raw)
    with pytest.raises(DatasetError, match=missing):
        Manifest.load(tmp_path)


@pytest.mark.parametrize("spec", [
    {"kind": "video", "column": "v"},
    {"kind": "vector", "npy": "a.npy", "parquet": "a.parquet"},
    {"kind": "vector"},
    {"kind": "text"},
    {"kind": "image"},
    {"kind": "text", "columns": ["t"], "colour": "red"},
], ids=["bad-kind", "npy-and-parquet", "vector-without-file", "text-without-columns",
        "image-without-column", "unknown-spec-key"])
def test_bad_modality_is_named(tmp_path: Path, spec: dict) -> None:
    write_manifest(tmp_path, {"items": "a.csv", "interactions": "b.csv", "modalities": {"my_feature": spec}})
    with pytest.raises(DatasetError, match="my_feature"):
        Manifest.load(tmp_path)


def test_missing_manifest_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(DatasetError) as err:
        Manifest.load(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere" / MANIFEST_NAME) in str(err.value)


def test_invalid_yaml_and_non_mapping(tmp_path: Path) -> None:
    (tmp_path / MANIFEST_NAME).write_text("items: [unclosed\n")
    with pytest.raises(DatasetError, match="YAML"):
        Manifest.load(tmp_path)
    (tmp_path / MANIFEST_NAME).write_text("- just\n- a list\n")
    with pytest.raises(DatasetError, match="mapping"):
        Manifest.load(tmp_path)


@pytest.mark.parametrize("change, message", [
    ({"name": "../../../somewhere"}, r"key 'name' must be a plain name"),
    ({"name": ".."}, r"key 'name' must be a plain name"),
    ({"categorical": "brand"}, r"key 'categorical' must be a list of column names, e\.g\. \['brand'\]"),
    ({"modalities": ["text"]}, r"key 'modalities' must be a mapping"),
    ({"items": 5}, r"key 'items' must be a non-empty string, got int 5"),
    ({"modalities": {"t": {"kind": "text", "columns": "title"}}}, r"modality 't': key 'columns' must be a list"),
])
def test_every_key_has_its_type_checked(tmp_path: Path, change: dict, message: str) -> None:
    """A manifest is untrusted input: a string where a list belongs is refused, not read letter by letter."""
    write_manifest(tmp_path, {"items": "a.csv", "interactions": "b.csv", **change})
    with pytest.raises(DatasetError, match=message):
        Manifest.load(tmp_path)
