"""Encoding a real catalog: media streamed through the encoders, cached on disk."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from tfmmrec.data.loader import load_dataset
from tfmmrec.encoders.encode import encode_catalog


def test_encode_catalog_embeds_every_modality_and_masks_what_is_absent_or_broken(demo_dir: Path,
                                                                                 tmp_path: Path) -> None:
    ds = load_dataset(demo_dir)
    content = encode_catalog(ds, cache_dir=tmp_path / "cache", batch_size=32, progress=False)
    latent = pd.read_csv(demo_dir / "latent" / "items.csv")
    assert set(content.modalities) == {"text", "image", "audio"}
    for modality, column in (("image", "image_path"), ("audio", "audio_path")):
        has_file = ds.items[column].ne("").to_numpy()
        corrupt = (latent["corrupt"].fillna("") == modality).to_numpy()
        np.testing.assert_array_equal(content.masks[modality], has_file & ~corrupt)
        assert content.embeddings[modality].shape[0] == ds.num_items
        assert not content.embeddings[modality][~content.masks[modality]].any()
    reports = {r.modality: r for r in content.reports}
    assert len(reports["image"].failed) == 1 and len(reports["audio"].failed) == 1


def test_second_run_reads_the_cache_and_a_changed_text_is_re_encoded(demo_dir: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(demo_dir, data, ignore=shutil.ignore_patterns(".tfmmrec_cache"))
    cache = tmp_path / "cache"
    first = encode_catalog(load_dataset(data), cache_dir=cache, progress=False)
    assert len(list(cache.glob("*.npz"))) == 3
    again = encode_catalog(load_dataset(data), cache_dir=cache, progress=False)
    assert again.reports == []  # nothing was decoded: all three came from the store
    for m in first.modalities:
        np.testing.assert_array_equal(first.embeddings[m], again.embeddings[m])

    items = pd.read_csv(data / "items.csv", dtype=str, keep_default_na=False)
    items.loc[0, "description"] = "an entirely new description"
    items.to_csv(data / "items.csv", index=False)
    changed = encode_catalog(load_dataset(data), cache_dir=cache, progress=False)
    assert len(list(cache.glob("text-*.npz"))) == 2  # a new text entry; image/audio reused
    assert len(list(cache.glob("image-*.npz"))) == 1
    assert not np.allclose(changed.embeddings["text"][0], first.embeddings["text"][0])
    np.testing.assert_array_equal(changed.embeddings["text"][1:], first.embeddings["text"][1:])
