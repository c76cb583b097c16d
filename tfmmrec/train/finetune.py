"""Fine-tune mode's input pipeline: each batch's raw content read and decoded in ``tf.data``, for
``tfmmrec.models.finetune.FineTuneRetrieval`` (an encoder inside the item tower, trained with its
own, lower learning rate).

In frozen mode (the default) each modality is encoded once into the embedding store and the
towers train on cached vectors at the speed of an ID-only model. Fine-tuning moves one
modality's encoder into the graph: the media pipeline (``tf.data``) reads and decodes each
batch's raw content -- text, or image/audio files -- and the encoder's weights receive
gradients from the retrieval loss, through a second optimizer whose learning rate is a
fraction of the towers' (pretrained weights need small steps, freshly initialised heads do not).

It pays off when the catalog's content differs from what the encoder was pretrained on and
there are enough interactions to move many weights; it costs a forward and backward pass of
the encoder per training example on every epoch (see ``benchmarks/``), and raw media in the
input pipeline. For cold-start items on small data, frozen embeddings are the safer default.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import tensorflow as tf

from tfmmrec.config import LimitsConfig
from tfmmrec.data.interactions import EncodedInteractions
from tfmmrec.data.paths import PathRefused, resolve_in_root
from tfmmrec.encoders.contracts import ContentEncoder
from tfmmrec.media.audio import decode_wav
from tfmmrec.media.image import decode_image
from tfmmrec.models.finetune import PRESENT, RAW, FineTuneRetrieval


def _raw_loader(kind: str, encoder: ContentEncoder, root: Path, inputs: list[str]) -> tuple[tf.Tensor, Callable]:
    """Per item index (0 = unknown): its raw input, and a function decoding one of them."""
    table = tf.constant(["", *inputs])
    if kind == "text":
        return table, lambda value, present: value
    paths = tf.constant(["", *gated_paths(root, inputs)[0]])
    spec = encoder.spec
    if kind == "image":
        def decode(path: tf.Tensor, present: tf.Tensor) -> tf.Tensor:
            return tf.cond(present > 0, lambda: decode_image(tf.io.read_file(path), spec.image_size,
                                                             LimitsConfig().max_image_pixels),
                           lambda: tf.zeros([spec.image_size, spec.image_size, 3]))
    else:
        length = int(spec.audio_seconds * 16000)

        def decode(path: tf.Tensor, present: tf.Tensor) -> tf.Tensor:
            return tf.cond(present > 0, lambda: decode_wav(tf.io.read_file(path), spec.audio_seconds),
                           lambda: tf.zeros([length]))
    return paths, decode


def gated_paths(root: Path, inputs: list[str]) -> tuple[list[str], np.ndarray]:
    """Resolved paths of the media files that pass the catalog path gate ("" for the others), and
    which passed: a path outside the root, a fifo or an oversized file is never handed to tf.data."""
    out, ok = [], np.zeros(len(inputs), bool)
    for i, rel in enumerate(inputs):
        try:
            out.append(str(resolve_in_root(root, rel, max_bytes=LimitsConfig().max_file_bytes)) if rel else "")
            ok[i] = bool(rel)
        except PathRefused:
            out.append("")
    return out, ok


def _with_raw(ds: tf.data.Dataset, kind: str, encoder: ContentEncoder, root: Path, inputs: list[str],
              present: np.ndarray) -> tf.data.Dataset:
    values, decode = _raw_loader(kind, encoder, root, inputs)
    if kind != "text":
        present = np.asarray(present, bool) & gated_paths(root, inputs)[1]
    present_table = tf.constant(np.concatenate([[0.0], present.astype(np.float32)]))

    def add(features: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        flag = tf.gather(present_table, features["item"])
        return {**features, RAW: decode(tf.gather(values, features["item"]), flag), PRESENT: flag}

    return ds.map(add, num_parallel_calls=tf.data.AUTOTUNE)


def finetune_dataset(data: EncodedInteractions, kind: str, encoder: ContentEncoder, root: Path, inputs: list[str],
                     present: np.ndarray, batch_size: int, seed: int) -> tf.data.Dataset:
    """Training batches with each positive item's raw content read and decoded in ``tf.data``.

    Args:
      inputs: per dataset row, the item's text or its media path relative to ``root``.
      present: per dataset row, whether that content is usable (e.g. the frozen pass decoded it);
        absent items get an empty input and a 0 flag instead of a failed read.
    """
    tensors = {"user": data.train.user, "item": data.train.item, "item_prob": data.item_prob[data.train.item]}
    ds = tf.data.Dataset.from_tensor_slices(tensors).shuffle(len(data.train), seed=seed, reshuffle_each_iteration=True)
    return _with_raw(ds, kind, encoder, root, inputs, present).batch(batch_size).prefetch(2)


def embed_items(model: FineTuneRetrieval, kind: str, root: Path, inputs: list[str], present: np.ndarray,
                batch_size: int = 256) -> np.ndarray:
    """Item embeddings for dataset rows 0..n-1 (the encoder runs on every item's raw content)."""
    items = tf.data.Dataset.from_tensor_slices({"item": np.arange(1, len(inputs) + 1, dtype=np.int32)})
    ds = _with_raw(items, kind, model.content_encoder, root, inputs, present).batch(batch_size)
    return np.concatenate([model.item_embedding(b["item"], b[RAW], b[PRESENT]).numpy() for b in ds])
