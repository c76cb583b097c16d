"""The built-in encoders: TF-Hub-format SavedModels loaded through hub.KerasLayer."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_hub as hub

from tfmmrec.encoders.builtin import AUDIO_DIM, IMAGE_DIM, TEXT_DIM
from tfmmrec.encoders.registry import get_encoder_spec, load_encoder, tfmmrec_home


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.fixture(scope="module")
def encoders() -> dict[str, hub.KerasLayer]:
    return {kind: load_encoder(get_encoder_spec(f"builtin-{kind}")) for kind in ("text", "image", "audio")}


def test_builtins_are_saved_models_loaded_by_hub_keras_layer(encoders: dict[str, hub.KerasLayer]) -> None:
    for kind, layer in encoders.items():
        assert isinstance(layer, hub.KerasLayer)
        assert not layer.trainable
        assert (tfmmrec_home() / "hub" / f"builtin-{kind}-v1" / "saved_model.pb").is_file()


def test_text_encoder_maps_shared_words_close(encoders: dict[str, hub.KerasLayer]) -> None:
    out = encoders["text"](tf.constant(["red vintage lamp", "red vintage lamp", "Vintage red LAMP!",
                                        "fast techno track"])).numpy()
    assert out.shape == (4, TEXT_DIM)
    np.testing.assert_allclose(out[0], out[1])
    assert cosine(out[0], out[2]) > cosine(out[0], out[3]) + 0.3


def test_image_encoder_separates_colours(encoders: dict[str, hub.KerasLayer]) -> None:
    rng = np.random.default_rng(0)

    def tinted(rgb: list[float]) -> np.ndarray:
        return np.clip(np.array(rgb) + 0.05 * rng.standard_normal((32, 32, 3)), 0, 1).astype(np.float32)

    out = encoders["image"](tf.constant(np.stack([tinted([0.9, 0.1, 0.1]), tinted([0.85, 0.15, 0.1]),
                                                  tinted([0.1, 0.1, 0.9])]))).numpy()
    assert out.shape == (3, IMAGE_DIM)
    assert cosine(out[0], out[1]) > cosine(out[0], out[2])


def test_audio_encoder_hears_tempo(encoders: dict[str, hub.KerasLayer]) -> None:
    t = np.arange(32000) / 16000

    def pulses(hz: float, phase: float) -> np.ndarray:
        envelope = (np.sin(2 * np.pi * hz * t + phase) > 0.7).astype(np.float32)
        return (envelope * np.sin(2 * np.pi * 330 * t)).astype(np.float32)

    out = encoders["audio"](tf.constant(np.stack([pulses(2, 0), pulses(2, 1.0), pulses(5, 0)]))).numpy()
    assert out.shape == (3, AUDIO_DIM)
    rhythm = out[:, 64:]  # the modulation-spectrum block
    assert cosine(rhythm[0], rhythm[1]) > cosine(rhythm[0], rhythm[2]) + 0.2
