"""A trained run back from its directory, and its re-evaluation without retraining.

``tfmmrec evaluate RUN_DIR`` and ``tfmmrec export RUN_DIR`` start here: the run's own config, its
data prepared exactly as in training (``tfmmrec.train.prepare``), and its models rebuilt with the
saved weights (``tfmmrec.train.run_dir``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tfmmrec.config import RunConfig
from tfmmrec.data.interactions import EncodedInteractions
from tfmmrec.data.loader import Dataset
from tfmmrec.encoders.encode import ItemContent
from tfmmrec.evaluate.protocol import evaluate_ranking, record_retrieval_metrics
from tfmmrec.train.prepare import PreparedData, prepare_data, ranking_model, retrieval_model
from tfmmrec.train.run_dir import read_run_state, restore_weights, write_json


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


def load_run(run_dir: str | Path, config: RunConfig | None = None, *, dataset_dir: str | Path | None = None,
             verbose: int = 0) -> tuple[RunResult, PreparedData]:
    """A trained run back from its directory (``config.yaml``, ``run.json``, ``weights/``): the
    data prepared as in training and the models with their saved weights, as a ``RunResult``
    (``metrics`` empty). ``config``: defaults to the run's own; its model keys must match the weights."""
    state = read_run_state(run_dir)
    cfg = config or RunConfig.from_yaml(Path(run_dir) / "config.yaml")
    prep = prepare_data(dataset_dir or state["dataset_dir"], cfg, verbose=verbose)
    result = RunResult({}, run_dir=Path(run_dir), data=prep.data, item_ids=prep.dataset.item_ids,
                       dataset=prep.dataset, content=prep.content)
    one = np.ones(1, np.int32)
    for variant in state["retrieval"]:
        model = retrieval_model(prep, cfg, variant != "id_only", multitask=variant == "multitask")
        restore_weights(model, run_dir, variant, lambda m=model: (m.query_tower(one), m.item_tower(one)))
        result.models[variant] = model
    if state["ranking"]:
        ranker = ranking_model(prep, cfg)
        restore_weights(ranker, run_dir, "ranking", lambda: ranker({"user": one, "item": one}))
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
            record_retrieval_metrics(metrics, variant, model, prep.data, cfg.evaluate.ks)
    if "ranking" in loaded.models:
        metrics["ranking"] = evaluate_ranking(loaded.models["ranking"], prep.rank_data, prep.mode,
                                              negatives=cfg.ranking.negatives, seed=cfg.seed)
    write_json(Path(run_dir) / "evaluation.json", metrics)
    return metrics
