"""From trained models and their catalog to SavedModels with warm-up records.

The Python API behind the pipeline's export step and ``tfmmrec export`` / ``tfmmrec serving-config``; ``export.reindex``
reuses ``raw_content_inputs`` to embed new catalog items from their files.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from tfmmrec.config import LimitsConfig, RunConfig
from tfmmrec.data.loader import Dataset
from tfmmrec.data.paths import PathRefused, read_bounded
from tfmmrec.encoders.encode import ItemContent, item_texts, media_precheck
from tfmmrec.evaluate.protocol import embed_all
from tfmmrec.export.content import ContentEncoder, ContentSpec
from tfmmrec.export.ranking import RankingServing, export_ranking
from tfmmrec.export.retrieval import QueryEncoder, RetrievalServing, export_retrieval
from tfmmrec.export.tf_serving import WARMUP_FILE, warmup_records
from tfmmrec.export.versioning import ExportError
from tfmmrec.media.stream import Precheck, check_media_file
from tfmmrec.train.prepare import PreparedData


def raw_content_inputs(dataset: Dataset, rows: np.ndarray, names: list[str], *, limits: LimitsConfig | None = None,
                       masked: dict[str, list[str]] | None = None) -> dict[str, np.ndarray]:
    """The ``embed_item_content`` inputs for dataset ``rows``: texts, file bytes, field values.

    Files are read through the same gate and header checks as in training
    (``media.stream.check_media_file`` under ``limits``): a missing or empty file, one outside the
    dataset root, not regular, over a limit or of an unsupported format gives empty bytes (the
    modality is masked), as does a text over ``limits.max_text_chars``; ``masked`` (item id ->
    ``"modality (reason)"``) collects the refusals.
    """
    limits = limits or LimitsConfig()
    rows = np.asarray(rows, np.int64)
    ids = [str(i) for i in dataset.items["item_id"].iloc[rows]]
    items, manifest = dataset.items.iloc[rows], dataset.manifest
    out: dict[str, np.ndarray] = {}
    for name in names:
        if name in manifest.modalities:
            spec = manifest.modalities[name]
            if spec.kind == "text":
                texts = item_texts(dataset, spec.columns)
                values = []
                for item, r in zip(ids, rows):
                    over = len(texts[r]) > limits.max_text_chars
                    if over and masked is not None:
                        masked.setdefault(item, []).append(f"{name} (over limits.max_text_chars)")
                    values.append(b"" if over else texts[r].encode("utf-8"))
                out[name] = np.array(values, dtype=object)
            else:
                precheck = media_precheck(spec.kind, limits)
                out[name] = np.array([_read(dataset.root, p, precheck, limits, name, item, masked)
                                      for item, p in zip(ids, items[spec.column].tolist())], dtype=object)
        elif name in manifest.categorical:
            out[name] = np.array([str(v).encode("utf-8") for v in items[name].astype(str)], dtype=object)
        elif name in manifest.numeric:
            out[name] = items[name].to_numpy(np.float32)
        else:
            raise KeyError(f"the export expects item input {name!r}, which dataset {dataset.root} does not have "
                           f"(modalities {sorted(manifest.modalities)}, categorical {manifest.categorical}, "
                           f"numeric {manifest.numeric})")
    return out


def _read(root: Path, rel: Any, precheck: Precheck, limits: LimitsConfig, modality: str, item: str,
          masked: dict[str, list[str]] | None) -> bytes:
    if not isinstance(rel, str) or not rel:
        return b""
    full, category, reason = check_media_file(root, rel, precheck, limits.max_file_bytes)
    try:
        if full is not None:
            return read_bounded(full, limits.max_file_bytes, rel=rel)
    except PathRefused as err:
        category, reason = "skipped", err.reason
    if masked is not None and category != "missing":
        masked.setdefault(item, []).append(f"{modality} ({'unsupported format ' if category == 'unsupported' else ''}"
                                           f"{reason})")
    return b""


def retrieval_serving(model: Any, user_ids: np.ndarray, item_ids: np.ndarray, item_embeddings: np.ndarray,
                      max_k: int, *, dataset: Dataset | None = None, content: ItemContent | None = None,
                      encoders: dict[str, str] | None = None, index: str = "brute_force",
                      limits: LimitsConfig | None = None, new_items: np.ndarray | None = None
                      ) -> RetrievalServing:
    """Serving module of a ``TwoTowerRetrieval``; with the catalog, it can embed raw content too
    (refusing request inputs over ``limits``). ``new_items``: the items without training
    interactions, which ``recommend_new_items`` ranks (``tfmmrec.export.retrieval``)."""
    content_encoder = None
    # The content path: a warm/cold item tower's content tower (tfmmrec.models.coldstart), else the tower itself.
    tower = getattr(model.item_tower, "content_tower", model.item_tower)
    if dataset is not None and tower.use_content and any(
            s.kind != "vector" for s in dataset.manifest.modalities.values()):
        scale = getattr(model.item_tower, "cold_scale", None)
        content_encoder = ContentEncoder(tower, ContentSpec.from_catalog(dataset, content, encoders), limits=limits,
                                         output_scale=1.0 if scale is None else float(scale.numpy()))
    return RetrievalServing(QueryEncoder(user_ids, model.query_tower), item_ids, item_embeddings, max_k,
                            content=content_encoder, index=index, new_items=new_items)


def retrieval_warmup(name: str, serving: RetrievalServing, user_ids: np.ndarray, item_ids: np.ndarray,
                     dataset: Dataset | None, limits: LimitsConfig | None = None) -> dict[str, bytes]:
    """Warm-up requests for each signature, built from real ids (and real content files)."""
    users = [str(u) for u in user_ids[:3]]
    items = [str(i) for i in item_ids[:2]]
    k = min(10, serving.max_k)
    requests: list[tuple[str, dict[str, Any]]] = [
        ("serving_default", {"user_id": users}),
        ("serving_default", {"user_id": users, "recent_item_ids": [items] * len(users),
                             "exclude_item_ids": [items] * len(users),
                             "k": np.full(len(users), k, np.int32)}),  # the signature's dtype, exactly
        ("recommend_new_items", {"user_id": users}),
        ("embed_query", {"user_id": users}),
    ]
    if serving.content is not None and dataset is not None:
        names = [spec.name for spec in serving.content_input_specs]
        requests.append(("embed_item_content", raw_content_inputs(dataset, np.arange(min(2, dataset.num_items)),
                                                                      names, limits=limits)))
    return {WARMUP_FILE: warmup_records(name, requests)}


def export_retrieval_model(base: str | Path, name: str, model: Any, user_ids: np.ndarray, item_ids: np.ndarray,
                           item_embeddings: np.ndarray, max_k: int, *, dataset: Dataset | None = None,
                           content: ItemContent | None = None, encoders: dict[str, str] | None = None,
                           index: str = "brute_force", version: int | None = None,
                           limits: LimitsConfig | None = None, new_items: np.ndarray | None = None) -> Path:
    serving = retrieval_serving(model, user_ids, item_ids, item_embeddings, max_k, dataset=dataset,
                                content=content, encoders=encoders, index=index, limits=limits,
                                new_items=new_items)
    warmup = retrieval_warmup(name, serving, user_ids, item_ids, dataset, limits)
    return export_retrieval(base, name, serving, version, assets_extra=warmup)


def export_ranking_model(base: str | Path, name: str, model: Any, user_ids: np.ndarray, item_ids: np.ndarray,
                         binary: bool, version: int | None = None) -> Path:
    serving = RankingServing(user_ids, item_ids, model, binary)
    users = [str(u) for u in user_ids[:4]]
    pairs = {"user_id": users, "item_id": [str(i) for i in item_ids[:len(users)]]}
    warmup = {WARMUP_FILE: warmup_records(name, [("serving_default", pairs), ("explain", pairs)])}
    return export_ranking(base, name, serving, version, assets_extra=warmup)


def export_run_models(models: dict[str, Any], prep: PreparedData, export_dir: str | Path, cfg: RunConfig
                      ) -> dict[str, Path]:
    """A run's SavedModels: the multimodal retrieval model (ID-only if that is all there is) as
    ``NAME_retrieval`` and the ranker as ``NAME_ranking``, each a new version under ``export_dir``.
    A failure to write is an ``ExportError`` naming the directory."""
    model = models.get("multimodal") or models["id_only"]
    name, data, ds = prep.dataset.manifest.name, prep.data, prep.dataset
    exports: dict[str, Path] = {}
    try:
        exports["retrieval"] = export_retrieval_model(
            export_dir, f"{name}_retrieval", model, data.user_ids, ds.item_ids, embed_all(model, data)[1],
            cfg.export.top_k, dataset=ds, content=prep.content, encoders=cfg.encoders, index=cfg.export.index,
            limits=cfg.limits, new_items=np.bincount(data.train.item, minlength=data.num_items + 1)[1:] == 0)
        if "ranking" in models:
            exports["ranking"] = export_ranking_model(export_dir, f"{name}_ranking", models["ranking"],
                                                      prep.rank_data.user_ids, ds.item_ids,
                                                      binary=prep.mode != "rating")
    except (OSError, tf.errors.OpError) as err:
        raise ExportError(f"export to {export_dir} failed ({type(err).__name__}: {err})") from err
    return exports
