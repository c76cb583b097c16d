"""Encode a catalog's modalities with frozen encoders, through the embedding store.

``update_store`` is the streaming part (``tfmmrec encode``): for each modality it keys every
item by id + content hash, asks the store which keys it already has, and streams only the
rest through decode (parallel, in ``tf.data``) and the encoder, writing chunks as it goes; it
never holds more than a batch of media and one chunk of embeddings. ``encode_catalog`` runs
it and then reads the matrices ``train`` needs (one ``[num_items, dim]`` array per modality).
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tensorflow as tf

from tfmmrec.config import LimitsConfig
from tfmmrec.data.loader import Dataset
from tfmmrec.data.paths import PathRefused
from tfmmrec.encoders.registry import DEFAULT_ENCODERS, EncoderSpec, get_encoder_spec
from tfmmrec.encoders.store import EmbeddingStore, StoreSection, content_hash, default_cache_dir, file_hash, item_key
from tfmmrec.media.compressed import decode_audio
from tfmmrec.media.image import decode_image
from tfmmrec.media.stream import (
    DecodeReport,
    Precheck,
    audio_precheck,
    check_media_file,
    image_precheck,
    media_entry,
    stream_decoded,
)
from tfmmrec.progress import Progress


@dataclass
class ItemContent:
    """Per-modality item embeddings ``[num_items, dim]`` and presence masks ``[num_items]``,
    row i = item row i of the dataset."""

    embeddings: dict[str, np.ndarray]
    masks: dict[str, np.ndarray]
    reports: list[DecodeReport] = field(default_factory=list)
    encoders: dict[str, str] = field(default_factory=dict)
    computed: dict[str, int] = field(default_factory=dict)  # items encoded by this call (not from the store)

    @property
    def modalities(self) -> list[str]:
        return list(self.embeddings)


@dataclass
class ModalityPlan:
    """One modality's items as store keys ("" = nothing to encode), and where they stand."""

    modality: str
    encoder: str               # as configured: a registry name, or NAME@HANDLE
    spec: EncoderSpec
    keys: list[str]
    inputs: list[str]          # texts, or file paths relative to the dataset root
    report: DecodeReport | None
    section: StoreSection
    computed: int = 0          # items encoded by this run
    seconds: float = 0.0       # wall time of this run's encoding (decode + encoder + store writes)
    limits: LimitsConfig = field(default_factory=LimitsConfig)


def item_texts(dataset: Dataset, columns: list[str]) -> list[str]:
    """An item's text: its text columns joined by spaces (empty when all are empty)."""
    joined = dataset.items[columns].astype(str).agg(" ".join, axis=1)
    return [t.strip() for t in joined]


def resolve_encoders(encoders: dict[str, str] | None) -> dict[str, str]:
    """Modality kind -> encoder name, the built-in ones where not given."""
    return {**DEFAULT_ENCODERS, **(encoders or {})}


def media_precheck(kind: str, limits: LimitsConfig) -> Precheck:
    """The header check of a media kind under ``limits`` (pixels, seconds, format)."""
    if kind == "image":
        return image_precheck(limits.max_image_pixels, limits.max_file_bytes)
    return audio_precheck(limits.max_audio_seconds)


def plan(dataset: Dataset, store: EmbeddingStore, encoders: dict[str, str] | None = None,
         limits: LimitsConfig | None = None) -> list[ModalityPlan]:
    """Key every item of every raw-media modality (reads each file once to hash it).

    Every file passes ``media.stream.check_media_file`` first: a path outside the dataset root,
    a non-regular file, a file over ``limits`` or of an unsupported format gets no key (the
    modality is masked for that item) and is counted in the report with the item and the
    reason; so does a text over ``limits.max_text_chars``.
    """
    limits = limits or LimitsConfig()
    names = resolve_encoders(encoders)
    ids = [str(i) for i in dataset.item_ids]
    plans = []
    for modality, mspec in dataset.manifest.modalities.items():
        if mspec.kind == "vector":
            continue
        spec = get_encoder_spec(names[mspec.kind])
        report: DecodeReport | None = None
        if mspec.kind == "text":
            inputs = item_texts(dataset, mspec.columns)
            over = [len(t) > limits.max_text_chars for t in inputs]
            keys = [item_key(i, content_hash([t])) if t and not o else "" for i, t, o in zip(ids, inputs, over)]
            if any(over):  # a text report only when something was refused, as text never fails to decode
                report = DecodeReport(modality, total=len(inputs), absent=sum(not t for t in inputs))
                for item_id, o in zip(ids, over):
                    if o:
                        report.add("skipped", "over limits.max_text_chars", item_id)
        else:
            inputs = [str(v) for v in dataset.items[mspec.column].fillna("")]
            report = DecodeReport(modality, total=len(inputs))
            precheck = media_precheck(mspec.kind, limits)
            keys = []
            for item_id, rel in zip(ids, inputs):
                if not rel:
                    report.absent += 1
                    keys.append("")
                    continue
                full, category, reason = check_media_file(dataset.root, rel, precheck, limits.max_file_bytes)
                try:
                    if full is None:
                        raise PathRefused(rel, reason)
                    keys.append(item_key(item_id, file_hash(full, max_bytes=limits.max_file_bytes)))
                except PathRefused as err:
                    category = category if full is None else "skipped"
                    report.add(category, err.reason,
                               rel if category in ("missing", "failed") else media_entry(rel, item_id))
                    keys.append("")
        plans.append(ModalityPlan(modality, names[mspec.kind], spec, keys, inputs, report,
                                  store.section(modality, spec.encoder_id), limits=limits))
    return plans


def update_store(dataset: Dataset, *, encoders: dict[str, str] | None = None,
                 cache_dir: str | Path | None = None, batch_size: int = 64, chunk_size: int = 1024,
                 progress: bool = True, limits: LimitsConfig | None = None) -> list[ModalityPlan]:
    """Encode every item the store does not have yet (new or changed content); return the plans,
    whose reports now cover the whole catalog (stored and newly encoded items)."""
    store = EmbeddingStore(cache_dir or default_cache_dir(dataset.root))
    plans = plan(dataset, store, encoders, limits)
    for p in plans:
        _encode_missing(dataset.root, p, batch_size, chunk_size, progress)
    return plans


def encode_dataset(dataset_dir: str | Path, *, encoders: dict[str, str] | None = None,
                   cache_dir: str | Path | None = None, batch_size: int = 64, chunk_size: int = 1024,
                   progress: bool = True, limits: LimitsConfig | None = None) -> list[ModalityPlan]:
    """``tfmmrec encode``: load a dataset directory and bring its embedding store up to date."""
    from tfmmrec.data.loader import load_dataset

    return update_store(load_dataset(dataset_dir, on_unknown_items="drop"), encoders=encoders, cache_dir=cache_dir,
                        batch_size=batch_size, chunk_size=chunk_size, progress=progress, limits=limits)


def encode_catalog(dataset: Dataset, *, encoders: dict[str, str] | None = None,
                   cache_dir: str | Path | None = None, batch_size: int = 64, chunk_size: int = 1024,
                   progress: bool = True, limits: LimitsConfig | None = None) -> ItemContent:
    """Embed every modality of ``dataset`` with frozen encoders, through the store.

    Args:
      encoders: modality kind -> encoder name (defaults: the built-in ones).
      cache_dir: embedding store directory; default ``<dataset root>/.tfmmrec_cache``.
      limits: bounds on each file and text (``RunConfig.limits``); over them, masked and reported.
    """
    content = ItemContent({}, {})
    for modality, mspec in dataset.manifest.modalities.items():
        if mspec.kind == "vector":
            content.embeddings[modality] = dataset.vectors[modality]
            content.masks[modality] = dataset.vector_masks[modality]
            content.encoders[modality] = "precomputed"
    for p in update_store(dataset, encoders=encoders, cache_dir=cache_dir, batch_size=batch_size,
                          chunk_size=chunk_size, progress=progress, limits=limits):
        content.embeddings[p.modality], content.masks[p.modality] = p.section.read(p.keys)
        content.encoders[p.modality] = p.spec.name
        content.computed[p.modality] = p.computed
        if p.report is not None:
            content.reports.append(p.report)
    return content


def _encode_missing(root: Path, p: ModalityPlan, batch_size: int, chunk_size: int, progress: bool) -> None:
    known = p.section.lookup(p.keys)
    todo = np.array([i for i, k in enumerate(p.keys) if k and not known.found[i]], np.int64)
    p.computed = len(todo)
    if p.report is not None:
        cached = known.found & np.array([bool(k) for k in p.keys])
        p.report.decoded = int((cached & known.ok).sum())
        p.report.failed += [p.inputs[i] for i in np.flatnonzero(cached & ~known.ok)]  # after the precheck's
    if not len(todo):
        return
    from tfmmrec.encoders.contracts import ContentEncoder  # loads TF-Hub models only when needed

    encoder = ContentEncoder(p.encoder, name="encoder")
    started = time.perf_counter()
    bar = Progress(f"encoding {p.modality} ({p.spec.name}; {len(p.keys) - len(todo)} already stored)", len(todo),
                   enabled=progress)
    done: set[int] = set()
    with p.section.writer(chunk_size) as writer:
        for rows, batch in _batches(root, p, todo, batch_size):
            vectors = encoder(batch).numpy()
            writer.add([p.keys[r] for r in rows], vectors)
            done.update(rows.tolist())
            bar.update(len(rows))
        failed = [int(r) for r in todo if int(r) not in done]
        if failed:  # remembered, so a broken file is not decoded again on every run
            writer.add([p.keys[r] for r in failed], None, np.zeros(len(failed), bool))
    bar.close()
    p.seconds = time.perf_counter() - started
    if p.report is not None:
        p.report.decoded += len(done)
        p.report.failed += [p.inputs[r] for r in failed]


def _batches(root: Path, p: ModalityPlan, todo: np.ndarray, batch_size: int) -> Iterator[tuple[np.ndarray, tf.Tensor]]:
    kind = p.spec.kind
    if kind == "text":
        for i in range(0, len(todo), batch_size):
            rows = todo[i:i + batch_size]
            yield rows, tf.constant([p.inputs[r] for r in rows])
        return
    decode: Callable[[tf.Tensor], tf.Tensor]
    if kind == "image":
        decode = lambda b: decode_image(b, p.spec.image_size, p.limits.max_image_pixels)  # noqa: E731
    else:
        # WAV, or FLAC/Ogg/MP3 made WAV; the header check has refused long WAVs already, the decoder
        # bounds the length of a decompressed clip.
        decode = lambda b: decode_audio(b, p.spec.audio_seconds, p.limits.max_audio_seconds)  # noqa: E731
    chunks, _ = stream_decoded(root, [p.inputs[r] for r in todo], decode, modality=p.modality, batch_size=batch_size,
                               precheck=media_precheck(kind, p.limits), max_bytes=p.limits.max_file_bytes)
    for sub_rows, batch in chunks:
        yield todo[sub_rows], batch
