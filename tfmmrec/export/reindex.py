"""Rebuild a retrieval export's index from a changed catalog, without retraining.

The newest version of ``BASE/NAME`` is loaded as a SavedModel (no Keras objects needed): items
still in the catalog keep their embeddings (id + content, as trained), items no longer in the
catalog are dropped, and new items are embedded from their content files by the export's own
``embed_item_content`` (the item tower with content only, as for any item unseen in training).
The query tower, the content path and the index settings are carried over unchanged, and the
result is written as the next version, atomically.

A new item whose image or audio file cannot be decoded is embedded with that modality masked,
and reported; an item whose content cannot be embedded at all stops the reindex with its id.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tensorflow as tf

from tfmmrec.config import ConfigError, LimitsConfig
from tfmmrec.data.loader import Dataset
from tfmmrec.data.manifest import DatasetError
from tfmmrec.export.build import raw_content_inputs
from tfmmrec.export.retrieval import RetrievalServing, export_retrieval
from tfmmrec.export.tf_serving import WARMUP_FILE
from tfmmrec.export.versioning import existing_versions


@dataclass
class ReindexResult:
    path: Path
    kept: int
    added: list[str]
    removed: list[str]
    masked: dict[str, list[str]] = field(default_factory=dict)  # item id -> modalities masked (undecodable)

    def summary(self) -> str:
        text = (f"{self.path}: {self.kept} items kept, {len(self.added)} added from content, "
                f"{len(self.removed)} removed")
        if self.masked:
            text += f"; {len(self.masked)} new items had media masked (undecodable or refused): " + ", ".join(
                f"{k} ({'/'.join(v)})" for k, v in list(self.masked.items())[:5])
        return text


def _embed_rows(embed: tf.types.experimental.ConcreteFunction, inputs: dict[str, np.ndarray],
                binary: list[str], ids: list[str], masked: dict[str, list[str]]) -> np.ndarray:
    def call(batch: dict[str, np.ndarray]) -> np.ndarray:
        return embed(**{k: tf.constant(v.tolist() if v.dtype == object else v) for k, v in batch.items()}
                     )["embedding"].numpy()
    try:
        return call(inputs)
    except tf.errors.InvalidArgumentError:
        pass
    rows = []
    for i, item in enumerate(ids):  # find the culprit: embed row by row, masking what fails
        row = {k: v[i:i + 1].copy() for k, v in inputs.items()}
        for attempt in [None, *binary]:
            if attempt is not None:
                row[attempt] = np.array([b""], dtype=object)
                masked.setdefault(item, []).append(attempt)
            try:
                rows.append(call(row)[0])
                break
            except tf.errors.InvalidArgumentError as e:
                if attempt == (binary[-1] if binary else None):
                    raise DatasetError(f"item {item}: its content cannot be embedded: {e.message}") from None
    return np.stack(rows)


def reindex(base: str | Path, name: str, dataset: Dataset, *, version: int | None = None,
            batch_size: int = 64, limits: LimitsConfig | None = None) -> ReindexResult:
    """Export ``BASE/NAME/<next version>`` indexing exactly ``dataset``'s items.

    New items' files are read through the catalog path gate under ``limits``: one outside the
    dataset root, not a regular file, over a limit or of an unsupported format is masked, and
    named in ``ReindexResult.masked`` with its reason.
    """
    model_dir = Path(base) / name
    versions = existing_versions(model_dir)
    if not versions:
        raise FileNotFoundError(f"{model_dir} has no version to reindex from")
    source = model_dir / str(versions[-1])
    loaded = tf.saved_model.load(str(source))
    if not all(hasattr(loaded, a) for a in ("item_ids", "item_embeddings", "query", "max_k_var", "index_kind")):
        raise ConfigError(f"{source} is not a tfmmrec retrieval export (no item index); reindex needs "
                          "saved_models/<name>_retrieval")
    if "embed_item_content" not in loaded.signatures:
        raise ConfigError(f"{source} has no embed_item_content signature (an ID-only model cannot embed new items)")
    old_ids = [b.decode() for b in loaded.item_ids.numpy()]
    old_emb = loaded.item_embeddings.numpy()
    position = {item: i for i, item in enumerate(old_ids)}
    catalog = [str(i) for i in dataset.item_ids]
    new_rows = np.array([r for r, item in enumerate(catalog) if item not in position], np.int64)
    removed = sorted(set(old_ids) - set(catalog))
    emb = np.zeros((len(catalog), old_emb.shape[1]), np.float32)
    kept_rows = np.array([r for r, item in enumerate(catalog) if item in position], np.int64)
    emb[kept_rows] = old_emb[[position[catalog[r]] for r in kept_rows]]
    embed = loaded.signatures["embed_item_content"]
    names = list(embed.structured_input_signature[1])
    binary = [n for n in names if n in dataset.manifest.modalities and dataset.manifest.modalities[n].kind
              in ("image", "audio")]
    masked: dict[str, list[str]] = {}
    for start in range(0, len(new_rows), batch_size):
        rows = new_rows[start:start + batch_size]
        inputs = raw_content_inputs(dataset, rows, names, limits=limits, masked=masked)
        emb[rows] = _embed_rows(embed, inputs, binary, [catalog[r] for r in rows], masked)
    # New items: the added ones, and those that were new in the previous version (an export
    # made before the flag existed has none).
    old_new = loaded.item_is_new.numpy() if hasattr(loaded, "item_is_new") else np.zeros(len(old_ids), bool)
    new_items = np.zeros(len(catalog), bool)
    new_items[new_rows] = True
    new_items[kept_rows] = old_new[[position[catalog[r]] for r in kept_rows]]
    serving = RetrievalServing(loaded.query, np.array(catalog), emb, int(loaded.max_k_var.numpy()),
                               content=loaded.content, index=loaded.index_kind.numpy().decode(),
                               new_items=new_items)
    # The previous version's warm-up requests stay valid (same users and signatures): reuse them.
    old_warmup = source / "assets.extra" / WARMUP_FILE
    warmup = {WARMUP_FILE: old_warmup.read_bytes()} if old_warmup.is_file() else None
    path = export_retrieval(base, name, serving, version, assets_extra=warmup)
    return ReindexResult(path, len(kept_rows), [catalog[r] for r in new_rows], removed, masked)
