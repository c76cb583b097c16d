"""One run end to end: load -> split -> encode -> train -> evaluate -> export.

This is the public API behind ``tfmmrec train`` and ``tfmmrec demo``; notebooks call it too.
Each stage is also usable on its own (see the modules it imports).
"""
from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from tfmmrec.config import RunConfig
from tfmmrec.data.loader import Dataset, load_dataset
from tfmmrec.data.splits import split_interactions
from tfmmrec.encoders.encode import ItemContent, encode_catalog
from tfmmrec.evaluate.ranking import auc, log_loss, rmse
from tfmmrec.evaluate.retrieval import evaluate_retrieval
from tfmmrec.export.serving import RankingServing, RetrievalServing, export_ranking, export_retrieval
from tfmmrec.models.features import build_item_features
from tfmmrec.train.distribute import resolve_strategy
from tfmmrec.train.fit import build_ranking, build_retrieval, embed_all, train_ranking, train_retrieval
from tfmmrec.train.inputs import EncodedInteractions, encode_interactions, ranking_eval_set
from tfmmrec.train.resume import backup_root


@dataclass
class RunResult:
    """What a run produced: metrics, export paths, and the trained models with the id mapping
    they were trained on (``data``), for inspection in notebooks and tests."""

    metrics: dict[str, Any]
    exports: dict[str, Path] = field(default_factory=dict)
    run_dir: Path | None = None
    models: dict[str, Any] = field(default_factory=dict)
    data: EncodedInteractions | None = None
    item_ids: np.ndarray | None = None  # catalog ids in row order (item index = row + 1)


def _json_safe(value: Any) -> Any:
    """NaN (a metric with no users, e.g. no cold items) becomes null: metrics.json stays strict JSON."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return None if np.isnan(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(_json_safe(data), indent=2, allow_nan=False))


def _log(msg: str) -> None:
    print(msg, flush=True)


def retrieval_metrics(model: Any, data: EncodedInteractions, ks: list[int]) -> dict[str, dict[str, float]]:
    """Test-split full-catalog metrics (train + valid items excluded), all/warm/cold items."""
    user_emb, item_emb = embed_all(model, data)
    warm = np.zeros(data.num_items, bool)
    warm[data.train_item_rows] = True
    test_known = data.test.user > 0  # users without training history have no query embedding to rank for
    heldout = (data.test.user[test_known], data.test.item[test_known] - 1)
    exclude = (np.concatenate([data.train.user, data.valid.user]),
               np.concatenate([data.train.item, data.valid.item]) - 1)
    return evaluate_retrieval(user_emb, item_emb, heldout, exclude,
                              item_groups={"warm": warm, "cold": ~warm}, ks=tuple(ks))


def ranking_metrics(labels: np.ndarray, preds: np.ndarray, warm: np.ndarray, mode: str) -> dict[str, float]:
    """RMSE for ratings, else AUC and log-loss; each also for warm and cold items alone."""
    out: dict[str, float] = {}
    for suffix, sel in (("", np.ones(len(labels), bool)), ("_warm", warm), ("_cold", ~warm)):
        if not sel.any():
            continue
        if mode == "rating":
            out[f"rmse{suffix}"] = rmse(labels[sel], preds[sel])
        else:
            out[f"auc{suffix}"] = auc(labels[sel], preds[sel])
            if mode == "label":
                out[f"log_loss{suffix}"] = log_loss(labels[sel], preds[sel])
    out["examples"] = int(len(labels))
    return out


def _train_ranking(features: Any, data: EncodedInteractions, cfg: RunConfig, mode: str, has_content: bool,
                   verbose: int, backup: dict[str, Any] | None = None,
                   strategy: tf.distribute.Strategy | None = None) -> tuple[Any, dict[str, float]]:
    _log(f"[train] ranking (DeepFM on {mode} feedback)")
    with (strategy or tf.distribute.get_strategy()).scope():
        ranker = build_ranking(features, data.num_users, cfg.ranking, use_content=has_content)
    train_ranking(ranker, data, cfg.ranking, mode=mode, seed=cfg.seed, verbose=verbose, **(backup or {}))
    inputs, labels, warm = ranking_eval_set(data, "test", cfg.ranking.negatives, cfg.seed, explicit=mode != "implicit")
    preds = ranker.predict(inputs, batch_size=8192, verbose=0)
    return ranker, ranking_metrics(labels, preds, warm, mode)


def _export(result: RunResult, name: str, export_dir: str | Path, cfg: RunConfig, mode: str,
            rank_data: EncodedInteractions | None) -> None:
    """Export the multimodal retrieval model (ID-only if that is all there is) and the ranker."""
    model = result.models.get("multimodal") or result.models["id_only"]
    assert result.data is not None and result.item_ids is not None
    _, item_emb = embed_all(model, result.data)
    serving = RetrievalServing(result.data.user_ids, model.query_tower, result.item_ids, item_emb, cfg.export_top_k)
    result.exports["retrieval"] = export_retrieval(export_dir, f"{name}_retrieval", serving)
    if rank_data is not None:
        rank_serving = RankingServing(rank_data.user_ids, result.item_ids, result.models["ranking"],
                                      binary=mode != "rating")
        result.exports["ranking"] = export_ranking(export_dir, f"{name}_ranking", rank_serving)
    for kind, path in result.exports.items():
        _log(f"[export] {kind}: {path}")


def _backups(run_dir: Path, cfg: RunConfig, data: EncodedInteractions) -> Path | None:
    """Where this run's training backups go (None: backups off); see ``tfmmrec.train.resume``."""
    if cfg.backup_every_steps <= 0:
        return None
    keyed = dataclasses.replace(cfg, distribute="auto", backup_every_steps=0)  # resumable under another strategy
    fingerprint = f"{data.num_users} {data.num_items} {len(data.train)} {int(data.train.item.sum())} " \
                  f"{int(data.train.user.astype(np.int64) @ data.train.item.astype(np.int64))}"
    return backup_root(run_dir, keyed.to_yaml(), fingerprint)


def _backup_args(backups: Path | None, name: str, cfg: RunConfig) -> dict[str, Any]:
    return {} if backups is None else {"backup_dir": backups / name, "backup_every_steps": cfg.backup_every_steps}


def run(dataset_dir: str | Path, run_dir: str | Path, config: RunConfig | None = None, *,
        export_dir: str | Path | None = "saved_models", dataset: Dataset | None = None,
        verbose: int = 2) -> RunResult:
    """Train and evaluate on a dataset in the standard layout; write metrics.json and exports.

    Args:
      run_dir: receives ``metrics.json`` and ``config.yaml``.
      export_dir: base directory of the SavedModels (``NAME/VERSION``); ``None`` skips export.
    """
    cfg = config or RunConfig()
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg.to_yaml(run_dir / "config.yaml")
    started = time.perf_counter()
    tf.keras.utils.set_random_seed(cfg.seed)

    ds = dataset or load_dataset(dataset_dir, on_unknown_items=cfg.on_unknown_items)  # type: ignore[arg-type]
    for line in ds.report.lines():
        _log(f"[data] {line}")
    s = cfg.split
    inter = split_interactions(ds.interactions, s.strategy, valid_frac=s.valid_frac, test_frac=s.test_frac,  # type: ignore[arg-type]
                               cold_item_frac=s.cold_item_frac, seed=s.seed)
    target = "rating" if "rating" in inter.columns else ("label" if "label" in inter.columns else None)
    mode = target or "implicit"
    positives = inter[inter["label"] > 0] if mode == "label" else inter  # retrieval learns from positives
    data = encode_interactions(positives, ds.num_items, target)
    _log(f"[data] {ds.manifest.name}: {ds.num_items} items, {data.num_users} users with training data, "
         f"interactions train/valid/test = {len(data.train)}/{len(data.valid)}/{len(data.test)}")

    content: ItemContent | None = None
    if ds.manifest.modalities:
        _log(f"[encode] modalities: {', '.join(ds.manifest.modalities)}")
        content = encode_catalog(ds, encoders=cfg.encoders, progress=verbose > 0)
        for report in content.reports:
            _log(f"[decode] {report.summary()}")
    features = build_item_features(ds, content, data.train_item_rows)
    has_content = bool(features.content) or features.categorical.shape[1] > 0 or features.numeric.shape[1] > 0

    metrics: dict[str, Any] = {"dataset": ds.manifest.name, "items": ds.num_items, "users": data.num_users,
                               "interactions": {"train": len(data.train), "valid": len(data.valid),
                                                "test": len(data.test)},
                               "decode": [dataclasses.asdict(r) for r in (content.reports if content else [])],
                               "retrieval": {}}
    variants = [("multimodal", True)] if has_content else []
    if cfg.train_id_only or not has_content:
        variants.append(("id_only", False))
    retrieval_models = {}
    strategy = resolve_strategy(cfg.distribute)
    backups = _backups(run_dir, cfg, data)
    for variant, use_content in variants:
        _log(f"[train] retrieval, {variant}")
        with strategy.scope():
            model = build_retrieval(features, data.num_users, cfg.retrieval, use_content=use_content)
        train_retrieval(model, data, cfg.retrieval, seed=cfg.seed, verbose=verbose,
                        **_backup_args(backups, f"retrieval_{variant}", cfg))
        metrics["retrieval"][variant] = retrieval_metrics(model, data, cfg.ks)
        retrieval_models[variant] = model

    result = RunResult(metrics, run_dir=run_dir, models=dict(retrieval_models), data=data, item_ids=ds.item_ids)
    rank_data = None
    if cfg.train_ranking:
        # Retrieval learns from positives only; ranking with 0/1 labels also learns from the 0s.
        rank_data = data if mode != "label" else encode_interactions(inter, ds.num_items, target)
        result.models["ranking"], metrics["ranking"] = _train_ranking(features, rank_data, cfg, mode, has_content,
                                                                      verbose, _backup_args(backups, "ranking", cfg),
                                                                      strategy)
    if export_dir is not None:
        _export(result, ds.manifest.name, export_dir, cfg, mode, rank_data)
    metrics["exports"] = {k: str(v) for k, v in result.exports.items()}
    metrics["seconds"] = round(time.perf_counter() - started, 1)
    write_json(run_dir / "metrics.json", metrics)
    return result
