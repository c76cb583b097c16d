"""One run end to end: load -> split -> encode -> train -> evaluate -> export.

This is the public API behind ``tfmmrec train`` and ``tfmmrec demo``; notebooks call it too.
Each stage is also usable on its own (see the modules it imports).
"""
from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from tfmmrec.config import ConfigError, RunConfig
from tfmmrec.data.loader import Dataset, load_dataset
from tfmmrec.data.manifest import Manifest
from tfmmrec.data.splits import split_interactions
from tfmmrec.encoders.encode import ItemContent, encode_catalog
from tfmmrec.evaluate.ranking import auc, log_loss, rmse
from tfmmrec.evaluate.retrieval import evaluate_retrieval
from tfmmrec.evaluate.topk import factorized_top_k_accuracy
from tfmmrec.export.build import export_ranking_model, export_retrieval_model
from tfmmrec.export.versioning import ExportError
from tfmmrec.models.features import build_item_features, build_user_features
from tfmmrec.train.coldstart import build_warm_cold, train_any_retrieval
from tfmmrec.train.distribute import resolve_strategy
from tfmmrec.train.fit import build_multitask, build_ranking, build_retrieval, embed_all, train_ranking
from tfmmrec.train.inputs import EncodedInteractions, encode_interactions, ranking_eval_set
from tfmmrec.train.pretrain import add_aligned_modality
from tfmmrec.train.resume import backup_root
from tfmmrec.train.run_dir import check_writable, run_dir_lock
from tfmmrec.train.tensorboard import tensorboard_callbacks, write_projector


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
    dataset: Dataset | None = None  # the catalog, for exports that embed raw content
    content: ItemContent | None = None  # its frozen encoder outputs (before z-scoring)


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


def _test_protocol(data: EncodedInteractions) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray],
                                                       dict[str, np.ndarray]]:
    """Held-out test pairs of users with a query embedding, the pairs to exclude (train + valid),
    and the warm/cold item groups, all as (user index, item row)."""
    warm = np.zeros(data.num_items, bool)
    warm[data.train_item_rows] = True
    test_known = data.test.user > 0  # users without training history have no query embedding to rank for
    heldout = (data.test.user[test_known], data.test.item[test_known] - 1)
    exclude = (np.concatenate([data.train.user, data.valid.user]),
               np.concatenate([data.train.item, data.valid.item]) - 1)
    return heldout, exclude, {"warm": warm, "cold": ~warm}


def retrieval_metrics(model: Any, data: EncodedInteractions, ks: list[int]) -> dict[str, dict[str, float]]:
    """Test-split full-catalog metrics (train + valid items excluded), all/warm/cold items."""
    heldout, exclude, groups = _test_protocol(data)
    return evaluate_retrieval(*embed_all(model, data), heldout, exclude, item_groups=groups, ks=tuple(ks))


def record_retrieval_metrics(metrics: dict[str, Any], variant: str, model: Any, data: EncodedInteractions,
                             ks: list[int]) -> None:
    """``metrics["retrieval"][variant]`` (the full-catalog protocol) and, for comparison with the
    TFRS tutorials only, ``metrics["tfrs_protocol"][variant]`` (top-K categorical accuracy per test
    interaction, seen items not excluded; see ``tfmmrec.evaluate.topk``), from one embedding pass."""
    heldout, exclude, groups = _test_protocol(data)
    user_emb, item_emb = embed_all(model, data)
    metrics.setdefault("retrieval", {})[variant] = evaluate_retrieval(user_emb, item_emb, heldout, exclude,
                                                                      item_groups=groups, ks=tuple(ks))
    metrics.setdefault("tfrs_protocol", {})[variant] = factorized_top_k_accuracy(user_emb, item_emb, heldout,
                                                                                 item_groups=groups)


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
                   verbose: int, callbacks: list[Any] | None = None, backup: dict[str, Any] | None = None,
                   strategy: tf.distribute.Strategy | None = None, users: Any = None
                   ) -> tuple[Any, dict[str, float], dict[str, Any]]:
    _log(f"[train] ranking ({'DCN-v2' if cfg.ranking.model == 'dcn' else 'DeepFM'} on {mode} feedback)")
    with (strategy or tf.distribute.get_strategy()).scope():
        ranker = build_ranking(features, data.num_users, cfg.ranking, use_content=has_content, users=users)
    history = train_ranking(ranker, data, cfg.ranking, mode=mode, seed=cfg.seed, verbose=verbose,
                            callbacks=callbacks, **(backup or {}))
    selection = _log_selection("ranking", history.selection)
    inputs, labels, warm = ranking_eval_set(data, "test", cfg.ranking.negatives, cfg.seed, explicit=mode != "implicit")
    preds = ranker.predict(inputs, batch_size=8192, verbose=0)
    return ranker, ranking_metrics(labels, preds, warm, mode), selection


def _log_selection(name: str, selection: dict[str, Any]) -> dict[str, Any]:
    """One line saying which epoch the validation split chose (``metrics["training"][name]``); for a
    warm/cold model (tfmmrec.train.coldstart) one per stage and the chosen blend."""
    if "content" in selection:
        stages = {k: v for k, v in selection.items() if k not in ("content", "blend")}
        _log_selection(f"{name} (warm stage)", stages)
        _log_selection(f"{name} (content stage)", selection["content"])
        blend = selection["blend"]
        _log(f"[train] {name}: blend c = {blend['blend_c']:g}, cold-score factor s = {blend['cold_scale']:.2f} "
             f"({blend['objective']})")
        return selection
    if selection["best_epoch"] is None:
        _log(f"[train] {name}: {selection.get('note', 'no validation value')}")
    else:
        _log(f"[train] {name}: best epoch {selection['best_epoch']} of {selection['epochs_run']} run "
             f"({selection['monitor']} {selection['objective']} = {selection['best']:.4f}"
             + (", stopped early)" if selection["stopped_early"] else ")"))
    return selection


def _export(result: RunResult, name: str, export_dir: str | Path, cfg: RunConfig, mode: str,
            rank_data: EncodedInteractions | None) -> None:
    """Export the multimodal retrieval model (ID-only if that is all there is) and the ranker."""
    model = result.models.get("multimodal") or result.models["id_only"]
    assert result.data is not None and result.item_ids is not None
    _, item_emb = embed_all(model, result.data)
    result.exports["retrieval"] = export_retrieval_model(
        export_dir, f"{name}_retrieval", model, result.data.user_ids, result.item_ids, item_emb, cfg.export_top_k,
        dataset=result.dataset, content=result.content, encoders=cfg.encoders, index=cfg.export_index,
        limits=cfg.limits)
    if rank_data is not None:
        result.exports["ranking"] = export_ranking_model(export_dir, f"{name}_ranking", result.models["ranking"],
                                                         rank_data.user_ids, result.item_ids, binary=mode != "rating")
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
        check_writable(backup=run_dir / "backup" if cfg.backup_every_steps > 0 else None,
                       cache=root / ".tfmmrec_cache" if raw_media else None)
        return _run_locked(dataset_dir, run_dir, cfg, export_dir=export_dir, dataset=dataset, verbose=verbose)


def _has_raw_media(root: Path) -> bool:
    """Whether the dataset at ``root`` has modalities encoded through the embedding cache."""
    try:
        return any(spec.kind != "vector" for spec in Manifest.load(root).modalities.values())
    except Exception:  # noqa: BLE001 -- an unreadable manifest is reported by the loader, with its reason
        return False


def _run_locked(dataset_dir: str | Path, run_dir: Path, cfg: RunConfig, *, export_dir: str | Path | None,
                dataset: Dataset | None, verbose: int) -> RunResult:
    cfg.to_yaml(run_dir / "config.yaml")
    started = time.perf_counter()
    tf.keras.utils.set_random_seed(cfg.seed)

    prep = prepare_data(dataset_dir, cfg, dataset=dataset, verbose=verbose, log=_log)
    ds, data, features, content, mode, has_content = (prep.dataset, prep.data, prep.features, prep.content,
                                                      prep.mode, prep.has_content)

    metrics: dict[str, Any] = {"dataset": ds.manifest.name, "items": ds.num_items, "users": data.num_users,
                               "interactions": {"train": len(data.train), "valid": len(data.valid),
                                                "test": len(data.test)},
                               "decode": [dataclasses.asdict(r) for r in (content.reports if content else [])],
                               "retrieval": {}}
    variants = [("multimodal", True)] if has_content else []
    if cfg.train_id_only or not has_content:
        variants.append(("id_only", False))
    if cfg.multitask.enabled and has_content:
        variants.append(("multitask", True))
    retrieval_models = {}
    strategy = resolve_strategy(cfg.distribute)
    backups = _backups(run_dir, cfg, data)
    for variant, use_content in variants:
        multitask = variant == "multitask"
        _log(f"[train] retrieval, {variant}" + (" (retrieval + ranking + item category)" if multitask else ""))
        with strategy.scope():
            model = retrieval_model(prep, cfg, use_content, multitask=multitask)
        history = train_any_retrieval(model, data, cfg.retrieval, seed=cfg.seed, verbose=verbose,
                                      callbacks=run_callbacks(cfg, run_dir, variant, model, ds, data),
                                      **_backup_args(backups, f"retrieval_{variant}", cfg))
        metrics.setdefault("training", {})[variant] = _log_selection(variant, history.selection)
        record_retrieval_metrics(metrics, variant, model, data, cfg.ks)
        retrieval_models[variant] = model
        save_run_weights(cfg, run_dir, variant, model)

    result = RunResult(metrics, run_dir=run_dir, models=dict(retrieval_models), data=data, item_ids=ds.item_ids,
                       dataset=ds, content=content)
    rank_data = None
    if cfg.train_ranking:
        rank_data = prep.rank_data
        ranker, metrics["ranking"], selection = _train_ranking(
            features, rank_data, cfg, mode, has_content, verbose, run_callbacks(cfg, run_dir, "ranking"),
            _backup_args(backups, "ranking", cfg), strategy, user_features(prep, rank_data))
        result.models["ranking"] = ranker
        metrics.setdefault("training", {})["ranking"] = selection
        save_run_weights(cfg, run_dir, "ranking", result.models["ranking"])
        metrics["ranking_model"] = cfg.ranking.model
    # The results first: an export that fails must not take the run's metrics with it.
    metrics["exports"] = {}
    metrics["seconds"] = round(time.perf_counter() - started, 1)
    write_json(run_dir / "metrics.json", metrics)
    write_run_state(run_dir, dataset_dir if dataset is None else dataset.root, list(retrieval_models),
                    "ranking" in result.models)
    if export_dir is not None:
        try:
            _export(result, ds.manifest.name, export_dir, cfg, mode, rank_data)
        except (OSError, tf.errors.OpError) as err:
            metrics["export_error"] = f"{type(err).__name__}: {err}"
            write_json(run_dir / "metrics.json", metrics)
            raise ExportError(f"export to {export_dir} failed ({type(err).__name__}: {err}); the run's metrics are "
                              f"in {run_dir / 'metrics.json'}; export it again with: tfmmrec export {run_dir} "
                              "--export-dir DIR") from err
        metrics["exports"] = {k: str(v) for k, v in result.exports.items()}
        metrics["seconds"] = round(time.perf_counter() - started, 1)
        write_json(run_dir / "metrics.json", metrics)
    return result


# --- run directory: TensorBoard, saved weights, re-evaluation (``tfmmrec evaluate RUN_DIR``) ---------

RUN_STATE = "run.json"


def tensorboard_dir(cfg: RunConfig, run_dir: str | Path) -> Path:
    """Where a run's TensorBoard logs go (``tensorboard --logdir`` this)."""
    return Path(run_dir) / cfg.tensorboard.log_dir


def run_callbacks(cfg: RunConfig, run_dir: str | Path, name: str, model: Any = None, ds: Dataset | None = None,
                  data: EncodedInteractions | None = None) -> list[Any]:
    """TensorBoard callbacks of one model of a run; with ``model``/``ds``/``data`` (retrieval)
    also the embedding projector of its item embeddings."""
    tb = cfg.tensorboard
    if not tb.enabled:
        return []
    log_dir = tensorboard_dir(cfg, run_dir) / name
    write = None
    if tb.projector and model is not None and ds is not None and data is not None:
        def write() -> None:
            _, item_emb = embed_all(model, data)
            metadata, images = projector_metadata(ds, tb.metadata_columns, tb.projector_max_items)
            write_projector(log_dir, item_emb[:len(metadata)], metadata, images, tb.sprite_size)
    # Fusion weights are averaged over (at most 2048 of) the catalog's items.
    probe = np.arange(1, min(ds.num_items, 2048) + 1, dtype=np.int32) if ds is not None else None
    return tensorboard_callbacks(log_dir, histograms=tb.histograms, projector=write, probe_items=probe)


def projector_metadata(ds: Dataset, columns: list[str], max_items: int) -> tuple[Any, list[Path | None] | None]:
    """The first ``max_items`` items' metadata (default: id, first text column, categorical
    columns) and image paths (first image modality; None where an item has no image)."""
    if not columns:
        texts = [c for spec in ds.manifest.modalities.values() if spec.kind == "text" for c in spec.columns[:1]]
        columns = ["item_id", *texts[:1], *ds.manifest.categorical]
    missing = [c for c in columns if c not in ds.items.columns]
    if missing:
        from tfmmrec.config import ConfigError

        raise ConfigError(f"tensorboard.metadata_columns: {missing} not in the items table "
                          f"(columns: {list(ds.items.columns)})")
    items = ds.items.iloc[:max_items]
    images = None
    image_specs = [spec for spec in ds.manifest.modalities.values() if spec.kind == "image"]
    if image_specs:
        paths = items[image_specs[0].column].fillna("").astype(str)
        images = [_image_in_root(ds.root, p) for p in paths]
    return items[columns].reset_index(drop=True), images


def _image_in_root(root: Path, rel: str) -> Path | None:
    """The thumbnail file of an item, through the catalog path gate (None: a grey tile)."""
    from tfmmrec.data.paths import PathRefused, resolve_in_root

    try:
        return resolve_in_root(root, rel) if rel else None
    except PathRefused:
        return None


def save_run_weights(cfg: RunConfig, run_dir: str | Path, name: str, model: Any) -> None:
    """``RUN_DIR/weights/NAME/ckpt`` (TensorFlow checkpoint format: subclassed models)."""
    if cfg.training.save_weights:
        model.save_weights(str(Path(run_dir) / "weights" / name / "ckpt"))


def write_run_state(run_dir: str | Path, dataset_dir: str | Path, retrieval: list[str], ranking: bool) -> None:
    """What ``evaluate_run`` needs besides ``config.yaml`` and the weights."""
    write_json(Path(run_dir) / RUN_STATE, {"dataset_dir": str(Path(dataset_dir).resolve()),
                                           "retrieval": retrieval, "ranking": ranking})


@dataclass
class PreparedData:
    """A dataset loaded, split, encoded and turned into model inputs, as ``run`` does it."""

    dataset: Dataset
    data: EncodedInteractions        # retrieval (positives)
    rank_data: EncodedInteractions   # ranking (with 0/1 labels where the log has them)
    features: Any                    # models.features.ItemFeatures
    mode: str                        # rating | label | implicit
    has_content: bool
    content: ItemContent | None = None


def prepare_data(dataset_dir: str | Path, cfg: RunConfig, *, dataset: Dataset | None = None,
                 verbose: int = 0, log: Callable[[str], None] | None = None) -> PreparedData:
    """Load -> split -> encode (-> align) -> features with ``cfg``: the one implementation of these
    steps, used by ``run``, ``load_run`` and ``tune``, so a re-evaluation or a tuning trial sees
    exactly the run's data. ``log`` receives the data, encode and decode report lines."""
    say = log or (lambda _msg: None)
    ds = dataset or load_dataset(dataset_dir, on_unknown_items=cfg.on_unknown_items)  # type: ignore[arg-type]
    for line in ds.report.lines():
        say(f"[data] {line}")
    s = cfg.split
    inter = split_interactions(ds.interactions, s.strategy, valid_frac=s.valid_frac, test_frac=s.test_frac,  # type: ignore[arg-type]
                               cold_item_frac=s.cold_item_frac, seed=s.seed)
    target = "rating" if "rating" in inter.columns else ("label" if "label" in inter.columns else None)
    mode = target or "implicit"
    positives = inter[inter["label"] > 0] if mode == "label" else inter  # retrieval learns from positives
    data = encode_interactions(positives, ds.num_items, target)
    if not len(data.train):
        from tfmmrec.data.manifest import DatasetError

        raise DatasetError(f"{ds.root}: no training interactions after the split (split.strategy={s.strategy!r}; "
                           "weight 0 rows and label 0 rows do not train retrieval)")
    # Retrieval learns from positives only; ranking with 0/1 labels also learns from the 0s.
    rank_data = data if mode != "label" else encode_interactions(inter, ds.num_items, target)
    say(f"[data] {ds.manifest.name}: {ds.num_items} items, {data.num_users} users with training data, "
        f"interactions train/valid/test = {len(data.train)}/{len(data.valid)}/{len(data.test)}")
    content: ItemContent | None = None
    if ds.manifest.modalities:
        say(f"[encode] modalities: {', '.join(ds.manifest.modalities)}")
        content = encode_catalog(ds, encoders=cfg.encoders, progress=verbose > 0, limits=cfg.limits)
        for report in content.reports:
            say(f"[decode] {report.summary()}")
        if cfg.pretrain.enabled:  # cross-modal alignment -> one more content modality, "aligned"
            content = add_aligned_modality(ds, content, cfg.pretrain, verbose=verbose > 0, reseed=cfg.seed)[0]
    features = build_item_features(ds, content, data.train_item_rows)
    has_content = bool(features.content) or features.categorical.shape[1] > 0 or features.numeric.shape[1] > 0
    return PreparedData(ds, data, rank_data, features, mode, has_content, content)


def user_features(prep: PreparedData, data: EncodedInteractions | None = None) -> Any:
    """The users table as model inputs for ``data``'s user indices (default ``prep.data``); the
    manifest's ``user_numeric`` columns numeric, the others categorical."""
    return build_user_features(prep.dataset.users, (data or prep.data).user_ids,
                               numeric_columns=prep.dataset.manifest.user_numeric)


def retrieval_model(prep: PreparedData, cfg: RunConfig, use_content: bool, *, multitask: bool = False) -> Any:
    """The retrieval (or multitask) model ``cfg`` describes, built on ``prep``'s data and users."""
    users = user_features(prep)
    if use_content and not multitask and cfg.retrieval.item_representation == "warm_cold":
        return build_warm_cold(prep.features, prep.data.num_users, cfg.retrieval, data=prep.data, users=users)
    if cfg.retrieval.item_representation not in ("warm_cold", "joint"):
        raise ConfigError(f"retrieval.item_representation: {cfg.retrieval.item_representation!r} is not one of "
                          "['joint', 'warm_cold']")
    if multitask:
        return build_multitask(prep.features, prep.data.num_users, cfg.retrieval, cfg.multitask, data=prep.data,
                               users=users, rating=prep.mode == "rating")
    return build_retrieval(prep.features, prep.data.num_users, cfg.retrieval, use_content=use_content,
                           data=prep.data, users=users)


def _restore(model: Any, weights: Path, build: Any) -> None:
    """Load ``weights`` into ``model`` and check that every variable of the model got a value."""
    if not Path(str(weights) + ".index").is_file():
        raise FileNotFoundError(f"{weights}.index: no saved weights (was the run trained with "
                                "training.save_weights=false?)")
    status = model.load_weights(str(weights))
    build()  # creates the variables, which the checkpoint restores on creation
    status.assert_existing_objects_matched().expect_partial()  # the optimizer state is not needed


def load_run(run_dir: str | Path, config: RunConfig | None = None, *, dataset_dir: str | Path | None = None,
             verbose: int = 0) -> tuple[RunResult, PreparedData]:
    """A trained run back from its directory (``config.yaml``, ``run.json``, ``weights/``): the
    data prepared as in training and the models with their saved weights, as a ``RunResult``
    (``metrics`` empty). ``config``: defaults to the run's own; its model keys must match the weights."""
    run_dir = Path(run_dir)
    state_path = run_dir / RUN_STATE
    if not state_path.is_file():
        raise FileNotFoundError(f"{state_path}: not a run directory (written by `tfmmrec train` / tfmmrec.run)")
    try:
        state = json.loads(state_path.read_text())
        state["dataset_dir"], state["retrieval"], state["ranking"]  # noqa: B018  (keys a run directory has)
    except (ValueError, KeyError, TypeError) as err:
        from tfmmrec.data.manifest import DatasetError

        raise DatasetError(f"{state_path}: not a run state written by tfmmrec ({err})") from None
    cfg = config or RunConfig.from_yaml(run_dir / "config.yaml")
    prep = prepare_data(dataset_dir or state["dataset_dir"], cfg, verbose=verbose)
    data, features = prep.data, prep.features
    result = RunResult({}, run_dir=run_dir, data=data, item_ids=prep.dataset.item_ids)
    for variant in state["retrieval"]:
        model = retrieval_model(prep, cfg, variant != "id_only", multitask=variant == "multitask")
        one = np.ones(1, np.int32)
        _restore(model, run_dir / "weights" / variant / "ckpt",
                 lambda m=model, one=one: (m.query_tower(one), m.item_tower(one)))
        result.models[variant] = model
    if state["ranking"]:
        ranker = build_ranking(features, prep.rank_data.num_users, cfg.ranking, use_content=prep.has_content,
                               users=user_features(prep, prep.rank_data))
        probe = {"user": np.ones(2, np.int32), "item": np.ones(2, np.int32)}
        _restore(ranker, run_dir / "weights" / "ranking" / "ckpt", lambda: ranker(probe))
        result.models["ranking"] = ranker
    return result, prep


def evaluate_run(run_dir: str | Path, config: RunConfig | None = None, *, dataset_dir: str | Path | None = None,
                 verbose: int = 0) -> dict[str, Any]:
    """Re-evaluate a trained run from its directory, without retraining; writes and returns
    ``RUN_DIR/evaluation.json`` (same layout as the retrieval/ranking parts of ``metrics.json``).

    Args:
      config: defaults to the run's ``config.yaml``; change only evaluation keys (``ks``, ...):
        the model keys must match the saved weights.
      dataset_dir: defaults to the dataset the run was trained on (``run.json``).
    """
    cfg = config or RunConfig.from_yaml(Path(run_dir) / "config.yaml")
    loaded, prep = load_run(run_dir, cfg, dataset_dir=dataset_dir, verbose=verbose)
    metrics: dict[str, Any] = {"dataset": prep.dataset.manifest.name, "run_dir": str(run_dir), "retrieval": {}}
    for variant, model in loaded.models.items():
        if variant != "ranking":
            record_retrieval_metrics(metrics, variant, model, prep.data, cfg.ks)
    if "ranking" in loaded.models:
        rd = prep.rank_data
        inputs, labels, warm = ranking_eval_set(rd, "test", cfg.ranking.negatives, cfg.seed,
                                                explicit=prep.mode != "implicit")
        preds = loaded.models["ranking"].predict(inputs, batch_size=8192, verbose=0)
        metrics["ranking"] = ranking_metrics(labels, preds, warm, prep.mode)
    write_json(Path(run_dir) / "evaluation.json", metrics)
    return metrics


def export_run(run_dir: str | Path, export_dir: str | Path, config: RunConfig | None = None, *,
               dataset_dir: str | Path | None = None) -> dict[str, Path]:
    """Export a trained run's models again (a new version under ``export_dir/NAME/``) from its
    saved weights, e.g. with another ``export_top_k``, without retraining."""
    cfg = config or RunConfig.from_yaml(Path(run_dir) / "config.yaml")
    loaded, prep = load_run(run_dir, cfg, dataset_dir=dataset_dir)
    rank_data = prep.rank_data if "ranking" in loaded.models else None
    try:
        _export(loaded, prep.dataset.manifest.name, export_dir, cfg, prep.mode, rank_data)
    except (OSError, tf.errors.OpError) as err:
        raise ExportError(f"export to {export_dir} failed ({type(err).__name__}: {err})") from err
    return loaded.exports


@dataclass
class TuneResult:
    """A finished (or resumed) search: every completed trial in order, and the best config."""

    trials: list[dict[str, Any]]
    best_config: RunConfig
    best_path: Path
    objective: str
    directory: Path


def validation_retrieval_metrics(model: Any, data: EncodedInteractions, k: int) -> dict[str, float]:
    """Recall/NDCG@k on the validation split over the full catalog, training items excluded."""
    user_emb, item_emb = embed_all(model, data)
    known = data.valid.user > 0
    res = evaluate_retrieval(user_emb, item_emb, (data.valid.user[known], data.valid.item[known] - 1),
                             (data.train.user, data.train.item - 1), ks=(k,))["all"]
    return {f"val_recall@{k}": res[f"recall@{k}"], f"val_ndcg@{k}": res[f"ndcg@{k}"]}


def tune(dataset_dir: str | Path, out_dir: str | Path, config: RunConfig | None = None, *,
         dataset: Dataset | None = None, overwrite: bool = False, verbose: int = 0) -> TuneResult:
    """Search ``config.tune.space`` with keras-tuner (``tfmmrec.train.tune.ConfigTuner``).

    The objective is the validation split's Recall@``tune.objective_k`` (retrieval) or AUC
    (ranking; -RMSE for ratings), never the test split. The tuner's state lives in
    ``OUT_DIR/<tune.directory>``: calling again with the same directory resumes the search.
    Writes ``OUT_DIR/best.yaml`` (train it with ``tfmmrec train --config``) and
    ``OUT_DIR/trials.json``; HParams logs in ``OUT_DIR/<tune.directory>/hparams``.
    """
    from tfmmrec.config import ConfigError
    from tfmmrec.evaluate.ranking import auc as auc_score
    from tfmmrec.evaluate.ranking import rmse as rmse_score
    from tfmmrec.train.tune import ConfigTuner

    cfg = config or RunConfig()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    prep = prepare_data(dataset_dir, cfg, dataset=dataset, verbose=verbose)
    task, k = cfg.tune.task, cfg.tune.objective_k
    if task not in ("retrieval", "ranking"):
        raise ConfigError(f"tune.task: {task!r} is not one of ['ranking', 'retrieval']")
    if task == "retrieval":
        if cfg.tune.variant not in ("multimodal", "id_only"):
            raise ConfigError(f"tune.variant: {cfg.tune.variant!r} is not one of ['id_only', 'multimodal']")
        use_content = cfg.tune.variant == "multimodal" and prep.has_content
        objective, direction = f"val_recall@{k}", "max"

        def trial_fn(trial_cfg: RunConfig) -> dict[str, float]:
            tf.keras.utils.set_random_seed(trial_cfg.seed)
            model = retrieval_model(prep, trial_cfg, use_content)
            train_any_retrieval(model, prep.data, trial_cfg.retrieval, seed=trial_cfg.seed, verbose=0)
            return validation_retrieval_metrics(model, prep.data, k)
    else:
        rd, explicit = prep.rank_data, prep.mode != "implicit"
        objective, direction = ("val_rmse", "min") if prep.mode == "rating" else ("val_auc", "max")

        def trial_fn(trial_cfg: RunConfig) -> dict[str, float]:
            tf.keras.utils.set_random_seed(trial_cfg.seed)
            ranker = build_ranking(prep.features, rd.num_users, trial_cfg.ranking, use_content=prep.has_content,
                                   users=user_features(prep, rd))
            train_ranking(ranker, rd, trial_cfg.ranking, mode=prep.mode, seed=trial_cfg.seed, verbose=0)
            inputs, labels, _ = ranking_eval_set(rd, "valid", trial_cfg.ranking.negatives, trial_cfg.seed, explicit)
            preds = ranker.predict(inputs, batch_size=8192, verbose=0)
            return {objective: (rmse_score if prep.mode == "rating" else auc_score)(labels, preds)}

    if not len(prep.data.valid):
        raise ConfigError("tune: the split has no validation interactions (split.valid_frac); "
                          "tuning on the test split would overfit it")
    directory = Path(cfg.tune.directory) if Path(cfg.tune.directory).is_absolute() else out_dir / cfg.tune.directory
    tuner = ConfigTuner(cfg, trial_fn, directory, objective=objective, direction=direction, overwrite=overwrite)
    _log(f"[tune] {task}: {cfg.tune.algorithm} search over {sorted(cfg.tune.space)}, objective {objective} "
         f"({direction}), up to {cfg.tune.max_trials} trials; state in {directory}")
    tuner.search(verbose=verbose)
    for trial_id, message in tuner.failed_trials():
        _log(f"[tune] trial {trial_id} failed:\n{message}")
    trials = tuner.trials()
    best = tuner.best_config()
    best_path = out_dir / "best.yaml"
    best.to_yaml(best_path)
    (out_dir / "trials.json").write_text(json.dumps(_json_safe(trials), indent=2))
    return TuneResult(trials, best, best_path, objective, directory)
