"""Self-supervised cross-modal alignment: InfoNCE over an item's modalities, all items included."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from tfmmrec.cli import main
from tfmmrec.config import PretrainConfig, RunConfig
from tfmmrec.data.demo import write_demo_catalog
from tfmmrec.data.loader import load_dataset
from tfmmrec.encoders.align import ALIGNED, add_aligned_modality, align_modalities, info_nce
from tfmmrec.encoders.encode import ItemContent, encode_catalog
from tfmmrec.models.features import build_item_features


def test_info_nce_is_low_for_matching_pairs_and_skips_items_missing_a_modality() -> None:
    rng = np.random.default_rng(0)
    z = tf.math.l2_normalize(tf.constant(rng.standard_normal((8, 16)), tf.float32), axis=-1)
    shuffled = tf.gather(z, [1, 0, 3, 2, 5, 4, 7, 6])
    both = tf.constant([True] * 8)
    assert float(info_nce(z, z, both, 0.1)) < 0.1 < float(info_nce(z, shuffled, both, 0.1))
    # Rows and columns of items without both modalities are left out entirely.
    partial = tf.constant([True, True, False, True, False, True, True, True])
    sub = tf.boolean_mask(z, partial)
    noise = tf.constant(rng.standard_normal((8, 16)), tf.float32)
    zb = tf.where(partial[:, None], z, noise)
    assert float(info_nce(z, zb, partial, 0.1)) == pytest.approx(float(info_nce(sub, sub, tf.ones(6, bool), 0.1)))


def synthetic_content(n: int = 400, seed: int = 0) -> ItemContent:
    """Two modalities that see one shared latent through different random maps (plus noise)."""
    rng = np.random.default_rng(seed)
    latent = rng.standard_normal((n, 6))
    text = latent @ rng.standard_normal((6, 24)) + 0.3 * rng.standard_normal((n, 24))
    image = np.tanh(latent @ rng.standard_normal((6, 24))) + 0.3 * rng.standard_normal((n, 24))
    masks = {"text": rng.random(n) > 0.1, "image": rng.random(n) > 0.1}
    masks["text"][:5] = masks["image"][:5] = False  # five items with neither modality
    emb = {"text": np.where(masks["text"][:, None], text, 0), "image": np.where(masks["image"][:, None], image, 0)}
    return ItemContent({m: v.astype(np.float32) for m, v in emb.items()}, masks)


def test_alignment_makes_an_items_modalities_find_each_other() -> None:
    cfg = PretrainConfig(dim=16, hidden=32, epochs=30, batch_size=128, learning_rate=0.01)
    result = align_modalities(synthetic_content(), cfg)
    assert result.losses[-1] < result.losses[0] * 0.7
    before, after = result.match_before["text-image"], result.match_after["text-image"]
    assert after > 0.3 and after > 5 * before  # raw spaces are unrelated: near chance (1/360)
    assert result.embeddings.shape == (400, 16)
    np.testing.assert_array_equal(result.mask, synthetic_content().masks["text"] | synthetic_content().masks["image"])
    assert not result.embeddings[:5].any()  # no modality at all: masked, zeros
    norms = np.linalg.norm(result.embeddings[result.mask], axis=1)
    np.testing.assert_allclose(norms, 1.0, rtol=1e-4)


def test_pretrain_command_caches_the_aligned_modality_that_train_picks_up(tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture) -> None:
    data = write_demo_catalog(tmp_path / "data", n_items=120, n_users=50, n_interactions=800, seed=5)
    assert main(["pretrain", str(data), "--quiet",
                 "--set", "pretrain.epochs=5", "--set", "pretrain.batch_size=64"]) == 0
    out = capsys.readouterr().out
    assert "aligned 120/120 items" in out and "nearest image is its own" in out
    cached = list((data / ".tfmmrec_cache" / ALIGNED).glob("*.npz"))
    assert len(cached) == 1
    written = cached[0].stat().st_mtime_ns

    cfg = RunConfig().with_overrides(["pretrain.enabled=true", "pretrain.epochs=5", "pretrain.batch_size=64"])
    ds = load_dataset(data)
    content = encode_catalog(ds, progress=False)
    with_aligned, alignment = add_aligned_modality(ds, content, cfg.pretrain)
    assert cached[0].stat().st_mtime_ns == written  # read from the cache written by the command, not retrained
    assert alignment.match_after["text-image"] > 0.0  # the command's diagnostics travel with the cache
    np.testing.assert_array_equal(alignment.embeddings, np.load(cached[0])["embeddings"])
    features = build_item_features(ds, with_aligned, np.arange(60))
    assert features.modality_dims[ALIGNED] == 64 and set(features.modality_dims) == {"text", "image", "audio",
                                                                                     ALIGNED}
    assert RunConfig.from_dict(cfg.to_dict()).pretrain == cfg.pretrain
    cfg.pretrain.only_aligned = True  # the aligned embedding instead of the per-modality ones (same cache)
    only, again = add_aligned_modality(ds, content, cfg.pretrain)
    assert only.modalities == [ALIGNED] and cached[0].stat().st_mtime_ns == written
