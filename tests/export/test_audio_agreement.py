"""Training and serving embed a clip identically, whatever its sample rate.

The tf.data path (``encode_catalog``: ``media.stream`` + the frozen encoder, as in training) and
the exported ``embed_item_content`` signature (what TF Serving runs) decode audio with the same
core-TF decoder, so a stereo WAV at 8, 22.05, 44.1 or 48 kHz gives the same item embedding both
ways. Tolerance: 1e-5 per dimension of the unit-norm embedding (float32 batch arithmetic); the
former linear-interpolation resampler at serving missed it by far more (checked below).
"""
from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import tensorflow as tf
import yaml

from tfmmrec.data.loader import load_dataset
from tfmmrec.encoders.encode import encode_catalog
from tfmmrec.encoders.registry import get_encoder_spec, load_encoder
from tfmmrec.export.content import ContentSpec
from tfmmrec.media.audio import TARGET_RATE, decode_wav

RATES = [8000, 22050, 44100, 48000]
TOLERANCE = 1e-5


def write_stereo_wav(path: Path, rate: int, seconds: float, seed: int) -> None:
    """A pulsed chord with different left/right content (16-bit PCM, stereo)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(rate * seconds)) / rate
    pulse = 0.5 + 0.5 * np.sign(np.sin(2 * np.pi * rng.uniform(1, 4) * t))
    left = sum(np.sin(2 * np.pi * f * t) for f in rng.uniform(200, 3000, 3)) * pulse / 3
    right = np.sin(2 * np.pi * rng.uniform(300, 3800) * t) * (1 - pulse)
    pcm = np.clip(np.round(np.stack([left, right], axis=1) * 0.6 * 32767), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as f:
        f.setnchannels(2)
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes(pcm.tobytes())


def expected_item_embedding(tower, spec: ContentSpec, audio: np.ndarray) -> np.ndarray:
    """The item tower's content path for items that have only audio (as the signature computes it
    for empty text/image, empty categorical fields and NaN numeric fields), from given audio embeddings."""
    batch = len(audio)
    mean, std = spec.zstats["audio"]
    embeddings = {m: tf.zeros([batch, d]) for m, d in tower.table.modality_dims.items()}
    masks = {m: tf.zeros([batch]) for m in tower.table.modality_dims}
    embeddings["audio"], masks["audio"] = tf.constant((audio - mean) / std, tf.float32), tf.ones([batch])
    if tower.table.num_numeric:
        embeddings["_numeric"], masks["_numeric"] = tf.zeros([batch, tower.table.num_numeric]), tf.ones([batch])
    out = tower.fusion(embeddings, masks, training=False)
    for layer in tower.categorical_embeddings:
        out += layer(tf.zeros([batch], tf.int32))
    return tf.math.l2_normalize(out, axis=-1).numpy()


def test_tf_data_path_and_exported_signature_embed_stereo_clips_of_every_rate_identically(
        trained_run, tmp_path: Path) -> None:
    seconds = get_encoder_spec(trained_run.content.encoders["audio"]).audio_seconds
    root = tmp_path / "clips"
    root.mkdir()
    names = [f"clip_{rate}.wav" for rate in RATES]
    for i, (rate, name) in enumerate(zip(RATES, names)):
        write_stereo_wav(root / name, rate, seconds * 1.2, seed=i)
    (root / "items.csv").write_text("item_id,audio_path\n" + "".join(f"n{i},{n}\n" for i, n in enumerate(names)))
    (root / "interactions.csv").write_text("user_id,item_id\n" + "".join(f"u,n{i}\n" for i in range(len(names))))
    (root / "manifest.yaml").write_text(yaml.safe_dump({
        "name": "clips", "items": "items.csv", "interactions": "interactions.csv",
        "modalities": {"audio": {"kind": "audio", "column": "audio_path"}}}))

    # Training's path: files -> tf.data decoding -> the frozen encoder, batched.
    content = encode_catalog(load_dataset(root), encoders={"audio": trained_run.content.encoders["audio"]},
                             progress=False)
    assert content.masks["audio"].tolist() == [1] * len(RATES)
    served_tower = trained_run.models["multimodal"].item_tower  # warm/cold: new items are content-only items
    tower, scale = served_tower.content_tower, float(served_tower.cold_scale.numpy())
    spec = ContentSpec.from_catalog(trained_run.dataset, trained_run.content)
    expected = scale * expected_item_embedding(tower, spec, content.embeddings["audio"])

    # Serving's path: the exported signature, from the file bytes.
    signature = tf.saved_model.load(str(trained_run.exports["retrieval"])).signatures["embed_item_content"]
    feeds = {}
    for name, tensor_spec in signature.structured_input_signature[1].items():
        if tensor_spec.dtype == tf.float32:
            feeds[name] = tf.fill([len(RATES)], float("nan"))
        else:
            feeds[name] = tf.constant([""] * len(RATES))
    feeds["audio"] = tf.constant([(root / n).read_bytes() for n in names])
    served = signature(**feeds)["embedding"].numpy()
    for rate, got, want in zip(RATES, served, expected):
        assert np.abs(got - want).max() < TOLERANCE, rate

    # The test can tell: the former serving resampler (linear interpolation) gives other audio embeddings.
    encoder = load_encoder(get_encoder_spec(trained_run.content.encoders["audio"]))
    for i, (rate, name) in enumerate(zip(RATES[1:], names[1:]), start=1):
        with wave.open(str(root / name)) as f:
            pcm = np.frombuffer(f.readframes(f.getnframes()), "<i2").reshape(-1, 2).mean(axis=1) / 32768
        n = int(seconds * TARGET_RATE)
        linear = np.interp(np.arange(n) * rate / TARGET_RATE, np.arange(len(pcm)), pcm).astype(np.float32)
        ours = decode_wav(tf.constant((root / name).read_bytes()), seconds).numpy()
        gap = np.abs(encoder(linear[None]).numpy() - encoder(ours[None]).numpy()).max()
        assert gap > 100 * TOLERANCE * np.abs(content.embeddings["audio"][i]).max(), rate
