"""Encoding a real catalog: media streamed through the encoders into the embedding store,
which recomputes only new or changed items and resumes a run that was killed halfway."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
import yaml

from tfmmrec.data.demo import write_demo_catalog
from tfmmrec.data.loader import load_dataset
from tfmmrec.encoders.encode import DELAY_ENV, encode_catalog


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 150-item demo catalog (with its one corrupt PNG and one truncated WAV). Read-only."""
    return write_demo_catalog(tmp_path_factory.mktemp("demo"), n_items=150, n_users=60, n_interactions=900, seed=2)


@pytest.fixture(scope="module")
def encoded(demo_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """The catalog encoded once into a fresh store: (store directory, content)."""
    cache = tmp_path_factory.mktemp("store") / "cache"
    return cache, encode_catalog(load_dataset(demo_dir), cache_dir=cache, batch_size=32, chunk_size=40,
                                 progress=False)


def text_only_copy(demo_dir: Path, out: Path) -> Path:
    """The demo's tables with only the text modality (cheap to encode, for the kill test)."""
    out.mkdir()
    for name in ("items.csv", "interactions.csv", "users.csv"):
        shutil.copy(demo_dir / name, out / name)
    manifest = yaml.safe_load((demo_dir / "manifest.yaml").read_text())
    manifest["modalities"] = {"text": manifest["modalities"]["text"]}
    (out / "manifest.yaml").write_text(yaml.safe_dump(manifest))
    return out


def test_encode_catalog_embeds_every_modality_and_masks_what_is_absent_or_broken(demo_dir: Path, encoded) -> None:
    _, content = encoded
    ds = load_dataset(demo_dir)
    latent = pd.read_csv(demo_dir / "latent" / "items.csv")
    assert set(content.modalities) == {"text", "image", "audio"}
    for modality, column in (("image", "image_path"), ("audio", "audio_path")):
        has_file = ds.items[column].ne("").to_numpy()
        corrupt = (latent["corrupt"].fillna("") == modality).to_numpy()
        np.testing.assert_array_equal(content.masks[modality], has_file & ~corrupt)
        assert content.embeddings[modality].shape[0] == ds.num_items
        assert not content.embeddings[modality][~content.masks[modality]].any()
        assert content.computed[modality] == has_file.sum()
    reports = {r.modality: r for r in content.reports}
    assert len(reports["image"].failed) == 1 and len(reports["audio"].failed) == 1


def test_store_recomputes_only_changed_items_and_remembers_broken_files(demo_dir: Path, encoded,
                                                                        tmp_path: Path) -> None:
    # The store is keyed by item id + content hash: a copy of the catalog reuses a copy of its store.
    data, cache = tmp_path / "data", tmp_path / "cache"
    shutil.copytree(demo_dir, data, ignore=shutil.ignore_patterns(".tfmmrec_cache"))
    shutil.copytree(encoded[0], cache)
    first = encoded[1]
    again = encode_catalog(load_dataset(data), cache_dir=cache, chunk_size=40, progress=False)
    assert again.computed == {"text": 0, "image": 0, "audio": 0}  # all from the store, broken files included
    assert [(r.decoded, r.failed) for r in again.reports] == [(r.decoded, r.failed) for r in first.reports]
    for m in first.modalities:
        np.testing.assert_array_equal(first.embeddings[m], again.embeddings[m])
        np.testing.assert_array_equal(first.masks[m], again.masks[m])

    items = pd.read_csv(data / "items.csv", dtype=str, keep_default_na=False)
    items.loc[0, "description"] = "an entirely new description"
    items.to_csv(data / "items.csv", index=False)
    row = int(np.flatnonzero(items["image_path"].ne("").to_numpy())[3])
    (data / items.loc[row, "image_path"]).write_bytes(tf.io.encode_png(np.full((16, 16, 3), 200, np.uint8)).numpy())
    changed = encode_catalog(load_dataset(data), cache_dir=cache, chunk_size=40, progress=False)
    assert changed.computed == {"text": 1, "image": 1, "audio": 0}
    assert not np.allclose(changed.embeddings["text"][0], first.embeddings["text"][0])
    np.testing.assert_array_equal(changed.embeddings["text"][1:], first.embeddings["text"][1:])
    assert not np.allclose(changed.embeddings["image"][row], first.embeddings["image"][row])
    others = np.arange(len(items)) != row
    np.testing.assert_array_equal(changed.embeddings["image"][others], first.embeddings["image"][others])


def test_a_killed_encode_run_resumes_where_it_stopped(demo_dir: Path, encoded, tmp_path: Path) -> None:
    data, cache = text_only_copy(demo_dir, tmp_path / "data"), tmp_path / "cache"
    env = {**os.environ, DELAY_ENV: "0.2", "PYTHONPATH": str(Path(__file__).parents[2])}
    proc = subprocess.Popen([sys.executable, "-m", "tfmmrec.cli", "encode", str(data), "--cache", str(cache),
                             "--batch-size", "8", "--chunk-size", "16", "--quiet"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while len(list(cache.glob("text/*/chunk-*.npz"))) < 3:
        assert proc.poll() is None, proc.stdout.read().decode()[-2000:]  # type: ignore[union-attr]
        assert time.monotonic() < deadline, "the encode run wrote no chunks in time"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL
    written = sum(len(np.load(p)["keys"]) for p in cache.glob("text/*/chunk-*.npz"))
    assert written % 16 == 0 and 48 <= written < 130  # whole chunks of 16 survived; the run was far from done

    resumed = encode_catalog(load_dataset(data), cache_dir=cache, progress=False)
    fresh = encoded[1]
    assert resumed.computed["text"] == int(fresh.masks["text"].sum()) - written  # only what was not stored
    np.testing.assert_allclose(resumed.embeddings["text"], fresh.embeddings["text"], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(resumed.masks["text"], fresh.masks["text"])
