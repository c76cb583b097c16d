"""Encode a catalog's modalities into one frozen embedding matrix per modality.

Media are streamed in batches (never all in memory), each batch goes through the encoder,
and the result is cached in the ``EmbeddingStore``: a second run on the same catalog reads
the cache and costs nothing.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tensorflow as tf

from tfmmrec.data.loader import Dataset
from tfmmrec.encoders.registry import DEFAULT_ENCODERS, EncoderSpec, get_encoder_spec, load_encoder
from tfmmrec.encoders.store import EmbeddingStore, content_hash, file_fingerprints
from tfmmrec.media.audio import decode_wav
from tfmmrec.media.image import decode_image
from tfmmrec.media.stream import DecodeReport, stream_decoded
from tfmmrec.progress import Progress


@dataclass
class ItemContent:
    """Per-modality item embeddings ``[num_items, dim]`` and presence masks ``[num_items]``,
    row i = item row i of the dataset."""

    embeddings: dict[str, np.ndarray]
    masks: dict[str, np.ndarray]
    reports: list[DecodeReport] = field(default_factory=list)
    encoders: dict[str, str] = field(default_factory=dict)

    @property
    def modalities(self) -> list[str]:
        return list(self.embeddings)


def item_texts(dataset: Dataset, columns: list[str]) -> list[str]:
    """An item's text: its text columns joined by spaces (empty when all are empty)."""
    joined = dataset.items[columns].astype(str).agg(" ".join, axis=1)
    return [t.strip() for t in joined]


def encode_catalog(dataset: Dataset, *, encoders: dict[str, str] | None = None,
                   cache_dir: str | Path | None = None, batch_size: int = 64,
                   progress: bool = True) -> ItemContent:
    """Embed every modality of ``dataset`` with frozen encoders (cached).

    Args:
      encoders: modality kind -> encoder name (defaults: the built-in ones).
      cache_dir: embedding store directory; default ``<dataset root>/.tfmmrec_cache``.
    """
    names = {**DEFAULT_ENCODERS, **(encoders or {})}
    store = EmbeddingStore(cache_dir or dataset.root / ".tfmmrec_cache")
    content = ItemContent({}, {})
    for modality, spec in dataset.manifest.modalities.items():
        if spec.kind == "vector":
            content.embeddings[modality] = dataset.vectors[modality]
            content.masks[modality] = dataset.vector_masks[modality]
            content.encoders[modality] = "precomputed"
            continue
        encoder = get_encoder_spec(names[spec.kind])
        if spec.kind == "text":
            inputs = item_texts(dataset, spec.columns)
            fingerprint = inputs
        else:
            inputs = dataset.items[spec.column].tolist()
            fingerprint = file_fingerprints(dataset.root, inputs)
        key = f"{modality}-{encoder.name}-{content_hash([*fingerprint, *dataset.item_ids])}"
        cached = store.get(key)
        if cached is not None:
            emb, mask = cached
        else:
            emb, mask, report = _encode_modality(dataset.root, modality, spec.kind, inputs, encoder,
                                                 batch_size, progress)
            if report is not None:
                content.reports.append(report)
            store.put(key, emb, mask)
        content.embeddings[modality], content.masks[modality] = emb, mask
        content.encoders[modality] = encoder.name
    return content


def _encode_modality(root: Path, modality: str, kind: str, inputs: list[str], spec: EncoderSpec,
                     batch_size: int, progress: bool) -> tuple[np.ndarray, np.ndarray, DecodeReport | None]:
    layer = load_encoder(spec)
    n = len(inputs)
    chunks: Iterator[tuple[np.ndarray, tf.Tensor]]
    if kind == "text":
        mask = np.array([bool(t) for t in inputs])
        text_rows = np.flatnonzero(mask)
        chunks = ((text_rows[i:i + batch_size], tf.constant([inputs[r] for r in text_rows[i:i + batch_size]]))
                  for i in range(0, len(text_rows), batch_size))
        report = None
        to_encode = len(text_rows)
    else:
        decode: Callable[[tf.Tensor], tf.Tensor]
        if kind == "image":
            decode = lambda b: decode_image(b, spec.image_size)  # noqa: E731
        else:
            decode = lambda b: decode_wav(b, spec.audio_seconds)  # noqa: E731
        chunks, report = stream_decoded(root, inputs, decode, modality=modality, batch_size=batch_size)
        mask = np.zeros(n, bool)
        to_encode = report.total - report.absent - len(report.missing)
    bar = Progress(f"encoding {modality} ({spec.name})", to_encode, enabled=progress)
    emb: np.ndarray | None = None
    for rows, batch in chunks:
        out = layer(batch).numpy().astype(np.float32)
        if emb is None:
            emb = np.zeros((n, out.shape[1]), np.float32)
        emb[rows] = out
        mask[rows] = True
        bar.update(len(rows))
    if emb is None:  # nothing decodable: keep the modality with every item masked
        emb = np.zeros((n, 1), np.float32)
    bar.close()
    return emb, mask, report
