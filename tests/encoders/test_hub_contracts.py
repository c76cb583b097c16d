"""The pretrained encoders' input contracts, run on SavedModels with the real models' interfaces.

``hub_models`` writes stand-ins for BERT (+ its TF.Text preprocessing model), the Universal
Sentence Encoder, Inception v3 / MobileNet v2 feature vectors, YAMNet, VGGish and TRILL; the
registry's real entries are pointed at them with ``NAME@DIR``, and the whole path runs as it
would with the downloaded models: catalog -> decode -> encoder -> store -> item tower.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_hub as hub

from tfmmrec.config import RunConfig
from tfmmrec.data.demo import write_demo_catalog
from tfmmrec.encoders.contracts import ContentEncoder
from tfmmrec.encoders.handles import EncoderUnavailable, cached_path
from tfmmrec.encoders.registry import ENCODERS, get_encoder_spec
from tfmmrec.pipeline import run


@pytest.fixture(scope="module")
def tiny(tiny_hub: dict[str, Path]) -> dict[str, Path]:
    return tiny_hub


def local(name: str, tiny: dict[str, Path], **extra: str) -> str:
    """A registry name pointed at the stand-in (``NAME@DIR``, BERT with ``+PREPROCESS``)."""
    handle = f"{name}@{tiny[name]}"
    return handle + f"+{tiny['bert-preprocess']}" if get_encoder_spec(name).contract == "bert" else handle


def test_registry_has_the_real_handles_and_contracts() -> None:
    assert get_encoder_spec("bert-base").handle.endswith("/en-uncased-l-12-h-768-a-12/4")
    assert get_encoder_spec("bert-base").preprocess.endswith("/en-uncased-preprocess/3")
    assert get_encoder_spec("inception-v3").image_size == 299
    assert get_encoder_spec("yamnet").output == 1  # (scores, embeddings, log_mel): embeddings
    assert {s.kind for s in ENCODERS.values()} == {"text", "image", "audio"}
    assert get_encoder_spec("builtin-text").handle is None  # written on first use, offline
    # The store key changes with anything that changes the embeddings.
    a = get_encoder_spec("small-bert")
    assert a.encoder_id != get_encoder_spec("small-bert@/elsewhere").encoder_id
    assert a.encoder_id == get_encoder_spec("small-bert").encoder_id


@pytest.mark.parametrize("name", ["small-bert", "use", "inception-v3", "mobilenet-v2", "yamnet", "vggish", "trill"])
def test_each_contract_gives_one_vector_of_the_documented_width(name: str, tiny: dict[str, Path]) -> None:
    spec = get_encoder_spec(name)
    if spec.kind == "text":
        batch = tf.constant(["a red vintage lamp", "fast jazz songs", "the blue chair"])
    elif spec.kind == "image":
        batch = tf.random.uniform([3, spec.image_size, spec.image_size, 3])
    else:
        batch = tf.random.uniform([3, 16000], -0.5, 0.5)
    out = ContentEncoder(local(name, tiny))(batch).numpy()
    assert out.shape == (3, spec.dim) and out.dtype == np.float32
    assert np.isfinite(out).all() and not np.allclose(out[0], out[1])


def test_bert_mean_pooling_ignores_padding_and_seq_length_is_configurable(tiny: dict[str, Path]) -> None:
    from tfmmrec.encoders import registry

    base = get_encoder_spec(local("small-bert", tiny))
    registry.register_encoder(registry.dataclasses.replace(base, name="small-bert-mean-32", seq_length=32,
                                                           pooling="mean"))
    try:
        encoder = ContentEncoder("small-bert-mean-32")
        alone = encoder(tf.constant(["red lamp"])).numpy()
        padded = encoder(tf.constant(["red lamp", "the fast blue modern vintage rocking songs " * 3])).numpy()
        np.testing.assert_allclose(alone[0], padded[0], rtol=1e-5, atol=1e-5)  # padding is masked out
        packed = encoder._bert_inputs(tf.constant(["red lamp"]))
        assert packed["input_word_ids"].shape[1] == 32
        assert not np.allclose(alone[0], ContentEncoder(local("small-bert", tiny))(tf.constant(["red lamp"]))[0])
    finally:
        del registry.ENCODERS["small-bert-mean-32"]


def test_yamnet_frames_are_mean_pooled_embeddings(tiny: dict[str, Path]) -> None:
    clip = tf.random.uniform([40000], -0.5, 0.5)
    scores, frames, log_mel = hub.load(str(tiny["yamnet"]))(clip)
    assert scores.shape[1:] == (521,) and frames.shape[1:] == (1024,) and log_mel.shape[1:] == (64,)
    assert frames.shape[0] > 1  # several 0.96 s patches in 2.5 s
    pooled = ContentEncoder(local("yamnet", tiny))(clip[None]).numpy()[0]
    np.testing.assert_allclose(pooled, frames.numpy().mean(axis=0), rtol=1e-5, atol=1e-6)


def test_whole_path_catalog_decode_encoder_store_tower(tiny: dict[str, Path], tmp_path: Path) -> None:
    data = write_demo_catalog(tmp_path / "data", n_items=40, n_users=30, n_interactions=400, seed=1)
    cfg = RunConfig().with_overrides(["split.strategy=random", "train.ranking=false", "train.id_only=false",
                                      "retrieval.epochs=1", "retrieval.batch_size=64", "evaluate.ks=[5]"])
    cfg.encoders = {"text": local("small-bert", tiny), "image": local("inception-v3", tiny),
                    "audio": local("yamnet", tiny)}
    result = run(data, tmp_path / "run", cfg, export_dir=None, verbose=0)
    tower = result.models["multimodal"].item_tower
    assert tower.table.modality_dims == {"text": 512, "image": 2048, "audio": 1024}
    sections = sorted(p.relative_to(data / ".tfmmrec_cache").parts[:2]
                      for p in (data / ".tfmmrec_cache").glob("*/*") if p.is_dir())
    assert sections == sorted((m, get_encoder_spec(cfg.encoders[k]).encoder_id)
                              for m, k in (("text", "text"), ("image", "image"), ("audio", "audio")))
    items = tower(tf.range(1, 41)).numpy()
    assert items.shape == (40, cfg.retrieval.embedding_dim) and np.isfinite(items).all()
    assert result.metrics["retrieval"]["multimodal"]["all"]["recall@5"] >= 0.0


def test_offline_uncached_handle_is_one_clear_error_and_the_cache_is_used(tiny: dict[str, Path], tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TFHUB_CACHE_DIR", str(tmp_path / "hub_cache"))
    handle = get_encoder_spec("yamnet").handle
    with pytest.raises(EncoderUnavailable) as err:
        ContentEncoder("yamnet")
    message = str(err.value)
    assert handle in message and "hub.resolve" in message and str(cached_path(handle)) in message
    # Pre-downloaded into TFHUB_CACHE_DIR (as hub.resolve would have): loads with no network call.
    shutil.copytree(tiny["yamnet"], cached_path(handle))
    assert ContentEncoder("yamnet")(tf.zeros([1, 16000])).shape == (1, 1024)
    with pytest.raises(EncoderUnavailable, match="not a SavedModel directory"):
        ContentEncoder(f"yamnet@{tmp_path}")
