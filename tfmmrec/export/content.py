"""Raw item content -> item embedding, inside the exported graph.

A brand-new item has no id embedding and no row in the training-time feature table, so the
export carries the whole content path of the item tower: decode (image, audio), the same
frozen encoders as training, the same per-dimension z-scoring (statistics of the training
catalog), the same categorical vocabularies and numeric scaling, then the tower's fusion and
categorical embeddings, with the id part off (as for any item unseen in training).

Only core TensorFlow ops are used. Training decodes audio with tensorflow-io, which the
standard TF Serving binary lacks, so here WAV files are decoded with ``tf.audio.decode_wav``
and brought to 16 kHz mono by linear interpolation: identical for 16 kHz clips, a close
approximation for other rates (tensorflow-io resamples with a band-limited filter).

Missing content is an empty string (text) or empty bytes (image/audio): that modality is
masked, exactly as an absent file is in training. Precomputed-vector modalities cannot be
computed from raw content and are always masked here. Bytes that are not a PNG/JPEG/GIF/BMP
image, or not a RIFF/WAVE file, fail the request with an error naming the modality.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf
import tf_keras as keras

from tfmmrec.data.loader import Dataset
from tfmmrec.encoders.encode import ItemContent
from tfmmrec.encoders.registry import DEFAULT_ENCODERS, get_encoder_spec, load_encoder
from tfmmrec.media.image import decode_image

TARGET_RATE = 16000
_IMAGE_MAGIC = [b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"BM"]


@dataclass
class ContentSpec:
    """What the content path needs besides the tower's weights, computed from the catalog.

    Attributes:
      raw: modality name -> (kind, encoder name) for text/image/audio modalities.
      zstats: modality name -> (mean, std) of its encoder output over items that have it.
      categorical: field name -> sorted vocabulary (code = position + 1; unknown/"" = 0).
      numeric: field names, with their mean and std over items whose numeric fields are all finite.
    """

    raw: dict[str, tuple[str, str]]
    zstats: dict[str, tuple[np.ndarray, np.ndarray]]
    categorical: dict[str, list[str]]
    numeric: list[str]
    numeric_mean: np.ndarray
    numeric_std: np.ndarray

    @classmethod
    def from_catalog(cls, dataset: Dataset, content: ItemContent | None,
                     encoders: dict[str, str] | None = None) -> ContentSpec:
        """The statistics ``models.features.build_item_features`` applied, recomputed the same way."""
        names = {**DEFAULT_ENCODERS, **(encoders or {})}
        raw, zstats = {}, {}
        for m, spec in dataset.manifest.modalities.items():
            if content is None or m not in content.embeddings:
                continue
            values = content.embeddings[m].astype(np.float32)
            present = content.masks[m].astype(bool)
            if present.any():
                zstats[m] = (values[present].mean(axis=0), values[present].std(axis=0) + 1e-6)
            else:
                zstats[m] = (np.zeros(values.shape[1], np.float32), np.ones(values.shape[1], np.float32))
            if spec.kind != "vector":
                raw[m] = (spec.kind, content.encoders.get(m, names[spec.kind]))
        categorical = {c: sorted(set(dataset.items[c].astype(str)) - {""}) for c in dataset.manifest.categorical}
        numeric = list(dataset.manifest.numeric)
        mean, std = np.zeros(len(numeric), np.float32), np.ones(len(numeric), np.float32)
        if numeric:
            values = dataset.items[numeric].to_numpy(np.float32)
            ok = np.isfinite(values).all(axis=1)
            if ok.any():
                mean, std = values[ok].mean(axis=0), values[ok].std(axis=0) + 1e-6
        return cls(raw, zstats, categorical, numeric, mean.astype(np.float32), std.astype(np.float32))


def decode_wav_core(contents: tf.Tensor, max_seconds: float) -> tf.Tensor:
    """16-bit PCM WAV bytes -> 16 kHz mono ``[max_seconds * 16000]`` with core TF ops only."""
    check = tf.debugging.Assert(tf.equal(tf.strings.substr(contents, 0, 4), "RIFF"),
                                ["audio: bytes are not a RIFF/WAVE file (send b'' for no audio)"])
    with tf.control_dependencies([check]):
        contents = tf.identity(contents)
    audio, rate = tf.audio.decode_wav(contents)
    wave = tf.reduce_mean(audio, axis=1)
    length = int(max_seconds * TARGET_RATE)
    n_in = tf.shape(wave)[0]
    step = tf.cast(rate, tf.float32) / TARGET_RATE
    n_out = tf.minimum(tf.cast(tf.floor(tf.cast(n_in, tf.float32) / step), tf.int32), length)
    pos = tf.range(n_out, dtype=tf.float32) * step
    i0 = tf.minimum(tf.cast(tf.floor(pos), tf.int32), n_in - 1)
    i1 = tf.minimum(i0 + 1, n_in - 1)
    frac = pos - tf.cast(i0, tf.float32)
    out = tf.gather(wave, i0) * (1.0 - frac) + tf.gather(wave, i1) * frac
    return tf.pad(out, [[0, length - n_out]])


def _checked_image(contents: tf.Tensor, modality: str) -> tf.Tensor:
    """``contents``, after checking it starts like an image file (a clearer error than the decoder's)."""
    ok = tf.reduce_any([tf.strings.substr(contents, 0, len(m)) == m for m in _IMAGE_MAGIC])
    check = tf.debugging.Assert(ok, [f"{modality}: bytes are not a PNG/JPEG/GIF/BMP image (send b'' for no image)"])
    with tf.control_dependencies([check]):
        return tf.identity(contents)


class ContentEncoder(tf.Module):
    """The item tower's content path as a module: raw content -> L2-normalised item embedding.

    ``embed`` takes one string tensor ``[batch]`` per raw modality (text, or encoded file bytes),
    one string tensor per categorical field and one float32 tensor per numeric field (NaN =
    unknown), in ``input_names`` order, and returns ``{"embedding": [batch, d]}``.
    """

    def __init__(self, item_tower: keras.Model, spec: ContentSpec, output_scale: float = 1.0) -> None:
        super().__init__()
        self.tower = item_tower
        # A warm/cold model's cold-score factor (tfmmrec.models.coldstart): new items as its cold items.
        self.output_scale = tf.constant(float(output_scale), tf.float32)
        self.modality_dims = dict(item_tower.table.modality_dims)
        self.raw = dict(spec.raw)
        self.encoders = {m: load_encoder(get_encoder_spec(enc)) for m, (_, enc) in sorted(self.raw.items())}
        self.encoder_specs = {m: get_encoder_spec(enc) for m, (_, enc) in self.raw.items()}
        self.zmean = {m: tf.constant(v[0], tf.float32) for m, v in spec.zstats.items()}
        self.zstd = {m: tf.constant(v[1], tf.float32) for m, v in spec.zstats.items()}
        self.categorical_fields = list(spec.categorical)
        self.vocab = {
            c: tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(
                tf.constant(v or ["\x00"], tf.string),
                tf.range(1, len(v) + 1, dtype=tf.int64) if v else tf.zeros([1], tf.int64)), 0)
            for c, v in spec.categorical.items()}
        self.numeric_fields = list(spec.numeric)
        self.numeric_mean = tf.constant(spec.numeric_mean, tf.float32)
        self.numeric_std = tf.constant(spec.numeric_std, tf.float32)
        self.input_names = sorted(self.raw) + self.categorical_fields + self.numeric_fields
        specs = ([tf.TensorSpec([None], tf.string, name=m) for m in sorted(self.raw)]
                 + [tf.TensorSpec([None], tf.string, name=c) for c in self.categorical_fields]
                 + [tf.TensorSpec([None], tf.float32, name=f) for f in self.numeric_fields])
        if len(set(self.input_names)) != len(self.input_names):
            raise ValueError(f"modality and field names must be distinct to be signature inputs: {self.input_names}")
        if not self.raw:
            raise ValueError("the model has no text/image/audio modality: nothing to embed from raw content")
        self.embed = tf.function(self._embed, input_signature=specs)

    def _encode(self, modality: str, values: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        kind = self.raw[modality][0]
        spec, encoder = self.encoder_specs[modality], self.encoders[modality]
        present = tf.strings.length(values) > 0
        if kind == "text":
            batch = values
        elif kind == "image":
            size = spec.image_size

            def one(contents: tf.Tensor) -> tf.Tensor:
                def decode() -> tf.Tensor:
                    return decode_image(_checked_image(contents, modality), size)
                return tf.cond(tf.strings.length(contents) > 0, decode, lambda: tf.zeros([size, size, 3]))
            batch = tf.map_fn(one, values, fn_output_signature=tf.TensorSpec([size, size, 3], tf.float32))
        else:
            length = int(spec.audio_seconds * TARGET_RATE)

            def one(contents: tf.Tensor) -> tf.Tensor:
                return tf.cond(tf.strings.length(contents) > 0, lambda: decode_wav_core(contents, spec.audio_seconds),
                               lambda: tf.zeros([length]))
            batch = tf.map_fn(one, values, fn_output_signature=tf.TensorSpec([length], tf.float32))
        emb = tf.cast(encoder(batch), tf.float32)
        emb = (emb - self.zmean[modality]) / self.zstd[modality]
        mask = tf.cast(present, tf.float32)
        return emb * mask[:, None], mask

    def _embed(self, *args: tf.Tensor) -> dict[str, tf.Tensor]:
        inputs = dict(zip(self.input_names, args))
        batch = tf.shape(args[0])[0]
        embeddings, masks = {}, {}
        for m, dim in sorted(self.modality_dims.items()):
            if m in self.raw:
                embeddings[m], masks[m] = self._encode(m, inputs[m])
            else:  # a precomputed vector: not computable from raw content
                embeddings[m], masks[m] = tf.zeros([batch, dim]), tf.zeros([batch])
        out = tf.zeros([batch, self.tower.embedding_dim])
        if self.numeric_fields:
            raw = tf.stack([inputs[f] for f in self.numeric_fields], axis=1)
            ok = tf.reduce_all(tf.math.is_finite(raw), axis=1, keepdims=True)
            scaled = (raw - self.numeric_mean) / self.numeric_std
            embeddings["_numeric"] = tf.where(ok, scaled, tf.zeros_like(scaled))
            masks["_numeric"] = tf.ones([batch])
        if embeddings:
            out += self.tower.fusion(embeddings, masks, training=False)
        for i, layer in enumerate(self.tower.categorical_embeddings):
            code = self.vocab[self.categorical_fields[i]].lookup(inputs[self.categorical_fields[i]])
            out += layer(tf.cast(code, tf.int32))
        return {"embedding": self.output_scale * tf.math.l2_normalize(out, axis=-1)}
