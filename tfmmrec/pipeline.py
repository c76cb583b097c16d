"""One run end to end: load -> split -> encode -> train -> evaluate -> export.

This is the public API behind ``tfmmrec train`` and ``tfmmrec demo``; notebooks call it too. It
only connects the stages; each step is a stage's own function (see the imports).
"""
from __future__ import annotations

import dataclasses
import resource
import time
from pathlib import Path
from typing import Any

import tensorflow as tf

from tfmmrec.config import RANKER_NAMES, RunConfig
from tfmmrec.data.loader import Dataset
from tfmmrec.data.manifest import Manifest
from tfmmrec.encoders.store import default_cache_dir
from tfmmrec.evaluate.protocol import evaluate_ranking, record_retrieval_metrics
from tfmmrec.export.build import export_run_models
from tfmmrec.export.versioning import ExportError
from tfmmrec.train.coldstart import train_any_retrieval
from tfmmrec.train.distribute import resolve_strategy
from tfmmrec.train.early_stopping import describe_selection
from tfmmrec.train.fit import train_ranking
from tfmmrec.train.prepare import PreparedData, prepare_data, ranking_model, retrieval_model
from tfmmrec.train.run_dir import (
    backup_args,
    check_writable,
    run_backups,
    run_dir_lock,
    save_run_weights,
    write_json,
    write_run_state,
)
from tfmmrec.train.saved_run import RunResult, load_run
from tfmmrec.train.tensorboard import run_callbacks


def _log(msg: str) -> None:
    print(msg, flush=True)


def run(dataset_dir: str | Path, run_dir: str | Path, config: RunConfig | None = None, *,
        export_dir: str | Path | None = "saved_models", dataset: Dataset | None = None,
        verbose: int = 2) -> RunResult:
    """Train and evaluate on a dataset in the standard layout; write metrics.json and exports.

    One run at a time per ``run_dir`` (a second one raises ``RunDirError`` at once, see
    ``train.run_dir``); the run, backup and embedding-cache directories are checked writable
    before anything trains. ``metrics.json`` is written before exporting: an export that fails
    raises ``ExportError`` and leaves the run's metrics (and weights) in place.

    Args:
      run_dir: receives ``metrics.json`` and ``config.yaml``.
      export_dir: base directory of the SavedModels (``NAME/VERSION``); ``None`` skips export.
    """
    cfg = config or RunConfig()
    run_dir = Path(run_dir)
    with run_dir_lock(run_dir):
        root = Path(dataset.root if dataset is not None else dataset_dir)
        raw_media = dataset is None and _has_raw_media(root)
        check_writable(backup=run_dir / "backup" if cfg.train.backup_every_steps > 0 else None,
                       cache=default_cache_dir(root) if raw_media else None)
        cfg.to_yaml(run_dir / "config.yaml")
        started = time.perf_counter()
        tf.keras.utils.set_random_seed(cfg.seed)
        prep = prepare_data(dataset_dir, cfg, dataset=dataset, verbose=verbose, log=_log)
        result = _train_and_evaluate(prep, cfg, run_dir, verbose)
        write_run_state(run_dir, prep.dataset.root, [v for v in result.models if v != "ranking"],
                        "ranking" in result.models)
        _write_metrics(result, run_dir, started)  # the results first: a failed export must not take them along
        if export_dir is not None:
            try:
                _export(result, prep, export_dir, cfg)
            except ExportError as err:
                cause = err.__cause__ or err
                result.metrics["export_error"] = f"{type(cause).__name__}: {cause}"
                write_json(run_dir / "metrics.json", result.metrics)
                raise ExportError(f"{err}; the run's metrics are in {run_dir / 'metrics.json'}; export it again "
                                  f"with: tfmmrec export {run_dir} --export-dir DIR") from err.__cause__
            _write_metrics(result, run_dir, started)
        return result


def _has_raw_media(root: Path) -> bool:
    """Whether the dataset at ``root`` has modalities encoded through the embedding cache."""
    try:
        return any(spec.kind != "vector" for spec in Manifest.load(root).modalities.values())
    except Exception:  # noqa: BLE001 -- an unreadable manifest is reported by the loader, with its reason
        return False


def _train_and_evaluate(prep: PreparedData, cfg: RunConfig, run_dir: Path, verbose: int) -> RunResult:
    """Every model ``cfg`` asks for, trained (selected on validation) and scored on the test split."""
    ds, data = prep.dataset, prep.data
    reports = prep.content.reports if prep.content else []
    metrics: dict[str, Any] = {"dataset": ds.manifest.name, "items": ds.num_items, "users": data.num_users,
                               "interactions": {"train": len(data.train), "valid": len(data.valid),
                                                "test": len(data.test)},
                               "decode": [dataclasses.asdict(r) for r in reports], "retrieval": {}, "training": {}}
    result = RunResult(metrics, run_dir=run_dir, data=data, item_ids=ds.item_ids, dataset=ds, content=prep.content)
    variants = [("multimodal", True)] if prep.has_content else []
    if cfg.train.id_only or not prep.has_content:
        variants.append(("id_only", False))
    if cfg.multitask.enabled and prep.has_content:
        variants.append(("multitask", True))
    strategy = resolve_strategy(cfg.train.distribute)
    backups = run_backups(run_dir, cfg, data)
    fit = dict(seed=cfg.seed, verbose=verbose)
    for variant, use_content in variants:
        _log(f"[train] retrieval, {variant}" + (" (retrieval + ranking + item category)"
                                                 if variant == "multitask" else ""))
        with strategy.scope():
            model = retrieval_model(prep, cfg, use_content, multitask=variant == "multitask")
        history = train_any_retrieval(model, data, cfg.retrieval, **fit,
                                      callbacks=run_callbacks(cfg, run_dir, variant, model, ds, data),
                                      **backup_args(backups, f"retrieval_{variant}", cfg))
        _record_selection(metrics, variant, history.selection)
        record_retrieval_metrics(metrics, variant, model, data, cfg.evaluate.ks)
        result.models[variant] = model
        save_run_weights(cfg, run_dir, variant, model)
    if cfg.train.ranking:
        kind = cfg.ranking.ranker(prep.mode == "rating")
        _log(f"[train] ranking ({RANKER_NAMES.get(kind, kind)} on {prep.mode} feedback)")
        with strategy.scope():
            ranker = ranking_model(prep, cfg)
        history = train_ranking(ranker, prep.rank_data, cfg.ranking, mode=prep.mode, **fit,
                                callbacks=run_callbacks(cfg, run_dir, "ranking"),
                                **backup_args(backups, "ranking", cfg))
        _record_selection(metrics, "ranking", history.selection)
        metrics["ranking"] = evaluate_ranking(ranker, prep.rank_data, prep.mode, negatives=cfg.ranking.negatives,
                                              seed=cfg.seed)
        metrics["ranking_model"] = kind
        result.models["ranking"] = ranker
        save_run_weights(cfg, run_dir, "ranking", ranker)
    return result


def _record_selection(metrics: dict[str, Any], name: str, selection: dict[str, Any]) -> None:
    for line in describe_selection(name, selection):
        _log(f"[train] {line}")
    metrics["training"][name] = selection


def _write_metrics(result: RunResult, run_dir: Path, started: float) -> None:
    result.metrics["exports"] = {k: str(v) for k, v in result.exports.items()}
    result.metrics["seconds"] = round(time.perf_counter() - started, 1)
    result.metrics["peak_rss_gb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2, 2)
    write_json(run_dir / "metrics.json", result.metrics)


def _export(result: RunResult, prep: PreparedData, export_dir: str | Path, cfg: RunConfig) -> None:
    result.exports.update(export_run_models(result.models, prep, export_dir, cfg))
    for kind, path in result.exports.items():
        _log(f"[export] {kind}: {path}")


def export_run(run_dir: str | Path, export_dir: str | Path, config: RunConfig | None = None, *,
               dataset_dir: str | Path | None = None) -> dict[str, Path]:
    """Export a trained run's models again (a new version under ``export_dir/NAME/``) from its
    saved weights, e.g. with another ``export_top_k``, without retraining."""
    cfg = config or RunConfig.from_yaml(Path(run_dir) / "config.yaml")
    loaded, prep = load_run(run_dir, cfg, dataset_dir=dataset_dir)
    _export(loaded, prep, export_dir, cfg)
    return loaded.exports
