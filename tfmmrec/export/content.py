"""Raw item content -> item embedding, inside the exported graph.

A brand-new item has no id embedding and no row in the training-time feature table, so the
export carries the whole content path of the item tower: decode (image, audio), the same
frozen encoders as training, the same per-dimension z-scoring (statistics of the training
catalog), the same categorical vocabularies and numeric scaling, then the tower's own content
path (``ItemTower.content_embedding``), with the id part off (as for any item unseen in training).

Only core TensorFlow ops are used. Audio goes through ``tfmmrec.media.audio.decode_wav``, the
decoder the tf.data pipeline uses in training (RIFF parsing, PCM/float WAV, band-limited
resampling to 16 kHz in core ops), so a clip is embedded here exactly as it was in training.

Missing content is an empty string (text) or empty bytes (image/audio): that modality is
masked, exactly as an absent file is in training. Inputs over the run's ``limits`` (bytes per
file, image pixels from the header, audio seconds, text characters) fail the request with an
error naming the input and the limit, before anything is decoded. Precomputed-vector modalities cannot be
computed from raw content and are always masked here. Bytes that are not a PNG/JPEG/GIF/BMP
image, or not a RIFF/WAVE file, fail the request with an error naming the modality.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf
import tf_keras as keras

from tfmmrec.config import LimitsConfig
from tfmmrec.data.loader import Dataset
from tfmmrec.data.standardize import Standardizer
from tfmmrec.encoders.encode import ItemContent
from tfmmrec.encoders.registry import DEFAULT_ENCODERS, get_encoder_spec, load_encoder
from tfmmrec.media.audio import TARGET_RATE, decode_wav
from tfmmrec.media.image import decode_image
from tfmmrec.models.features import categorical_vocabulary

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
        """The statistics ``models.features.build_item_features`` applied, from the same catalog with
        the same functions (``Standardizer``, ``categorical_vocabulary``)."""
        names = {**DEFAULT_ENCODERS, **(encoders or {})}
        raw, zstats = {}, {}
        for m, spec in dataset.manifest.modalities.items():
            if content is None or m not in content.embeddings:
                continue
            fitted = Standardizer.fit(content.embeddings[m], content.masks[m].astype(bool))
            zstats[m] = (fitted.mean, fitted.std)
            if spec.kind != "vector":
                raw[m] = (spec.kind, content.encoders.get(m, names[spec.kind]))
        categorical = {c: categorical_vocabulary(dataset.items[c]) for c in dataset.manifest.categorical}
        numeric = list(dataset.manifest.numeric)
        values = dataset.items[numeric].to_numpy(np.float32) if numeric else np.zeros((dataset.num_items, 0))
        scaling = Standardizer.fit(values, np.isfinite(values).all(axis=1))
        return cls(raw, zstats, categorical, numeric, scaling.mean, scaling.std)


def decode_wav_core(contents: tf.Tensor, max_seconds: float, modality: str = "audio",
                    max_input_seconds: float | None = None) -> tf.Tensor:
    """WAV bytes -> 16 kHz mono ``[max_seconds * 16000]``: training's decoder, after a check that
    names the modality (compressed audio is decoded before the graph in training; not here)."""
    check = tf.debugging.Assert(tf.equal(tf.strings.substr(contents, 0, 4), "RIFF"),
                                [f"{modality}: bytes are not a RIFF/WAVE file (send b'' for no audio)"])
    with tf.control_dependencies([check]):
        contents = tf.identity(contents)
    return decode_wav(contents, max_seconds, max_input_seconds, name=modality)


def _within_limits(contents: tf.Tensor, modality: str, kind: str, limits: LimitsConfig) -> tf.Tensor:
    """``contents`` after asserting it is within ``limits`` (an error naming the input and the limit)."""
    if kind == "text":
        chars = tf.strings.length(contents, unit="UTF8_CHAR")
        checks = [tf.debugging.Assert(tf.reduce_all(chars <= limits.max_text_chars), [
            f"{modality}: text over limits.max_text_chars ({limits.max_text_chars} characters); longest:",
            tf.reduce_max(tf.concat([chars, [0]], 0))])]
    else:
        size = tf.strings.length(contents)
        checks = [tf.debugging.Assert(tf.reduce_all(size <= limits.max_file_bytes), [
            f"{modality}: file over limits.max_file_bytes ({limits.max_file_bytes} bytes); largest:",
            tf.reduce_max(tf.concat([size, [0]], 0))])]
        # Audio length: the decoder checks it from the parsed WAV header (after the header's own
        # checks, so a sample rate of 0 is reported as such), see ``decode_wav_core``.
    with tf.control_dependencies(checks):
        return tf.identity(contents)


def _checked_image(contents: tf.Tensor, modality: str) -> tf.Tensor:
    """``contents``, after checking it starts like an image file (a clearer error than the decoder's)."""
    ok = tf.reduce_any([tf.strings.substr(contents, 0, len(m)) == m for m in _IMAGE_MAGIC])
    check = tf.debugging.Assert(ok, [f"{modality}: bytes are not a PNG/JPEG/GIF/BMP image (an unsupported format "
                                     "such as WebP or TIFF, or not an image; send b'' for no image)"])
    with tf.control_dependencies([check]):
        return tf.identity(contents)


def checked_content_batch(names: list[str], args: tuple[tf.Tensor, ...] | list[tf.Tensor]) -> list[tf.Tensor]:
    """``args`` after checking there is at least one item and every input has one value per item.
    A batch-1 input is not broadcast over a bigger batch: each item's fields are its own."""
    rows = tf.shape(args[0])[0]
    checks = [tf.debugging.Assert(rows > 0, [f"{names[0]}: the batch is empty; send at least one item"])]
    checks += [tf.debugging.Assert(tf.equal(tf.shape(a)[0], rows), [
        f"{n} has", tf.shape(a)[0], f"rows and {names[0]} has", rows,
        "; every input of embed_item_content needs one value per item"]) for n, a in zip(names[1:], args[1:])]
    with tf.control_dependencies(checks):
        return [tf.identity(a) for a in args]


class ContentEncoder(tf.Module):
    """The item tower's content path as a module: raw content -> L2-normalised item embedding.

    ``embed`` takes one string tensor ``[batch]`` per raw modality (text, or encoded file bytes),
    one string tensor per categorical field and one float32 tensor per numeric field (NaN =
    unknown), in ``input_names`` order, and returns ``{"embedding": [batch, d]}``.
    """

    def __init__(self, item_tower: keras.Model, spec: ContentSpec, limits: LimitsConfig | None = None,
                 output_scale: float = 1.0) -> None:
        super().__init__()
        self.limits = limits or LimitsConfig()
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
        values = _within_limits(values, modality, kind, self.limits)
        present = tf.strings.length(values) > 0
        if kind == "text":
            batch = values
        elif kind == "image":
            size = spec.image_size

            def one(contents: tf.Tensor) -> tf.Tensor:
                def decode() -> tf.Tensor:
                    return decode_image(_checked_image(contents, modality), size, self.limits.max_image_pixels,
                                        name=modality)
                return tf.cond(tf.strings.length(contents) > 0, decode, lambda: tf.zeros([size, size, 3]))
            batch = tf.map_fn(one, values, fn_output_signature=tf.TensorSpec([size, size, 3], tf.float32))
        else:
            length = int(spec.audio_seconds * TARGET_RATE)

            def one(contents: tf.Tensor) -> tf.Tensor:
                return tf.cond(tf.strings.length(contents) > 0,
                               lambda: decode_wav_core(contents, spec.audio_seconds, modality,
                                                       self.limits.max_audio_seconds),
                               lambda: tf.zeros([length]))
            batch = tf.map_fn(one, values, fn_output_signature=tf.TensorSpec([length], tf.float32))
        emb = tf.cast(encoder(batch), tf.float32)
        emb = (emb - self.zmean[modality]) / self.zstd[modality]
        mask = tf.cast(present, tf.float32)
        return emb * mask[:, None], mask

    def _embed(self, *args: tf.Tensor) -> dict[str, tf.Tensor]:
        args = checked_content_batch(self.input_names, args)
        inputs = dict(zip(self.input_names, args))
        batch = tf.shape(args[0])[0]
        embeddings, masks = {}, {}
        for m, dim in sorted(self.modality_dims.items()):
            if m in self.raw:
                embeddings[m], masks[m] = self._encode(m, inputs[m])
            else:  # a precomputed vector: not computable from raw content
                embeddings[m], masks[m] = tf.zeros([batch, dim]), tf.zeros([batch])
        feats = {"content": embeddings, "masks": masks,
                 "numeric": tf.zeros([batch, 0]), "categorical": tf.zeros([batch, 0], tf.int32)}
        if self.numeric_fields:
            raw = tf.stack([inputs[f] for f in self.numeric_fields], axis=1)
            ok = tf.reduce_all(tf.math.is_finite(raw), axis=1, keepdims=True)
            scaled = (raw - self.numeric_mean) / self.numeric_std
            feats["numeric"] = tf.where(ok, scaled, tf.zeros_like(scaled))
        if self.categorical_fields:
            feats["categorical"] = tf.stack([tf.cast(self.vocab[c].lookup(inputs[c]), tf.int32)
                                             for c in self.categorical_fields], axis=1)
        out = self.tower.content_embedding(feats, training=False, onto=tf.zeros([batch, self.tower.embedding_dim]))
        return {"embedding": self.output_scale * tf.math.l2_normalize(out, axis=-1)}
