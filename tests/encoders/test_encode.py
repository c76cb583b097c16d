"""Encoding a real catalog: media streamed through the encoders into the embedding store,
which recomputes only new or changed items and resumes a run that failed halfway."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
import yaml

from tfmmrec.data.demo import write_demo_catalog
from tfmmrec.data.loader import load_dataset
from tfmmrec.encoders.builtin import TextEncoder
from tfmmrec.encoders.encode import encode_catalog, plan
from tfmmrec.encoders.registry import EncoderSpec, register_encoder
from tfmmrec.encoders.store import EmbeddingStore


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
    """The demo's tables with only the text modality (cheap to encode, for the resume test)."""
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


class TextEncoderThatFails(tf.Module):
    """The built-in text encoder, except that its call number ``fail_on_call`` after loading fails,
    as a model that runs out of memory halfway through a catalog would (a real SavedModel, loaded
    through the registry like any encoder; the counter restarts at 0 each time it is loaded)."""

    def __init__(self, fail_on_call: int) -> None:
        super().__init__()
        self.encoder = TextEncoder()  # seeded: the built-in encoder's weights
        self.calls = tf.Variable(0, trainable=False)
        self.fail_on_call = fail_on_call

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def __call__(self, texts: tf.Tensor) -> tf.Tensor:
        calls = self.calls.assign_add(1)
        tf.debugging.assert_less(calls, self.fail_on_call, message="the text encoder ran out of memory")
        return self.encoder(texts)


def test_an_encode_run_that_fails_halfway_resumes_where_it_stopped(demo_dir: Path, encoded, tmp_path: Path) -> None:
    data, cache = text_only_copy(demo_dir, tmp_path / "data"), tmp_path / "cache"
    tf.saved_model.save(TextEncoderThatFails(fail_on_call=6), str(tmp_path / "encoder"))
    name = register_encoder(EncoderSpec("builtin-text-that-fails", "text", str(tmp_path / "encoder"))).name
    # Batches of 8, chunks of 16: batches 1-5 encode rows 0-39, of which two whole chunks (rows 0-31)
    # reach the disk; batch 6 fails, and the 8 rows still buffered are lost, as in a killed process.
    with pytest.raises(tf.errors.InvalidArgumentError, match="ran out of memory"):
        encode_catalog(load_dataset(data), encoders={"text": name}, cache_dir=cache, batch_size=8, chunk_size=16,
                       progress=False)
    chunks = sorted(cache.glob("text/*/*"))
    assert [p.suffix for p in chunks] == [".npz", ".npz"]  # whole chunks only, no temporary file
    stored = [np.load(p)["keys"].tolist() for p in chunks]
    keys = [k for k in plan(load_dataset(data), EmbeddingStore(cache), {"text": name})[0].keys if k]  # row order
    assert stored == [keys[:16], keys[16:32]]  # the first rows, in order: exactly where it stopped

    # The next run (batches of 64: 2 calls, within the encoder's budget) encodes only the rest.
    resumed = encode_catalog(load_dataset(data), encoders={"text": name}, cache_dir=cache, progress=False)
    assert resumed.computed["text"] == len(keys) - 32
    assert [np.load(p)["keys"].tolist() for p in chunks] == stored  # the stored rows were kept, not rewritten
    fresh = encoded[1]  # the built-in encoder, uninterrupted
    np.testing.assert_allclose(resumed.embeddings["text"], fresh.embeddings["text"], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(resumed.masks["text"], fresh.masks["text"])
