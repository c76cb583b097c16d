"""The evaluation protocols: which pairs are held out, which are excluded, which items are warm
or cold, and how a trained model becomes the embeddings or predictions that
:mod:`tfmmrec.evaluate.retrieval` and :mod:`tfmmrec.evaluate.ranking` score.

One implementation for every caller: a run's test metrics, the re-evaluation of a saved run, the
validation scores that select epochs, blends and tuning trials (``tfmmrec.train``, which comes
after this stage), the Keras ``evaluate`` batches (``tfmmrec.train.eval_inputs``) and the benchmarks.

Retrieval ranks the whole catalog for every user known at training time. On ``valid`` the
user's training items are excluded; on ``test`` the training and validation items. Items are
warm when they have training interactions, else cold.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from tfmmrec.data.interactions import EncodedInteractions
from tfmmrec.evaluate.ranking import auc, log_loss, rmse
from tfmmrec.evaluate.retrieval import evaluate_retrieval
from tfmmrec.evaluate.topk import factorized_top_k_accuracy

EVAL_SPLITS = ("valid", "test")
Pairs = tuple[np.ndarray, np.ndarray]  # (user index, item row)


def retrieval_eval_protocol(data: EncodedInteractions, split: str) -> tuple[Pairs, Pairs, np.ndarray]:
    """The split's held-out ``(user index, item row)`` pairs of users known at training time, the
    pairs to exclude (train; for ``test`` train + valid) and the warm mask over item rows: the
    arguments ``evaluate_retrieval`` takes."""
    if split not in EVAL_SPLITS:
        raise ValueError(f"split must be one of {EVAL_SPLITS}, got {split!r}")
    part = getattr(data, split)
    known = part.user > 0  # users without training history have no query embedding to rank for
    heldout = (part.user[known].astype(np.int64), part.item[known].astype(np.int64) - 1)
    parts = [data.train] if split == "valid" else [data.train, data.valid]
    exclude = (np.concatenate([p.user for p in parts]).astype(np.int64),
               np.concatenate([p.item for p in parts]).astype(np.int64) - 1)
    warm = np.zeros(data.num_items, bool)
    warm[data.train_item_rows] = True
    return heldout, exclude, warm


def embed_all(model: Any, data: EncodedInteractions, batch_size: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Query embeddings for user indices 0..U and item embeddings for dataset rows 0..n-1 of a
    two-tower model (anything with ``query_tower`` and ``item_tower``), in batches."""
    users = np.arange(data.num_users + 1, dtype=np.int32)
    items = np.arange(1, data.num_items + 1, dtype=np.int32)
    u = np.concatenate([model.query_tower(users[i:i + batch_size]).numpy()
                        for i in range(0, len(users), batch_size)])
    v = np.concatenate([model.item_tower(items[i:i + batch_size]).numpy()
                        for i in range(0, len(items), batch_size)])
    return u, v


def catalog_metrics(user_emb: np.ndarray, item_emb: np.ndarray, data: EncodedInteractions, split: str,
                    ks: tuple[int, ...] = (20,)) -> dict[str, dict[str, float]]:
    """Full-catalog Recall/NDCG@k of ``split`` for all held-out items, warm and cold ones
    (``{"all"|"warm"|"cold": {"recall@k": ...}}``; NaN for an empty group)."""
    heldout, exclude, warm = retrieval_eval_protocol(data, split)
    return evaluate_retrieval(user_emb, item_emb, heldout, exclude, item_groups={"warm": warm, "cold": ~warm},
                              ks=tuple(ks))


def cold_pool_metrics(user_emb: np.ndarray, item_emb: np.ndarray, data: EncodedInteractions, split: str,
                      ks: tuple[int, ...] = (20,)) -> dict[str, float]:
    """The "cold pool" metrics of ``split``: its cold held-out items (no training interactions)
    ranked among the cold items only (``{"recall@k": ..., "users": ...}``). What a content tower
    achieves on new items, apart from how its scores compare with warm items' (the full catalog)."""
    heldout, exclude, warm = retrieval_eval_protocol(data, split)
    cold_rows = np.flatnonzero(~warm)
    position = np.full(data.num_items, -1)
    position[cold_rows] = np.arange(len(cold_rows))
    held, excluded = ~warm[heldout[1]], ~warm[exclude[1]]
    return evaluate_retrieval(user_emb, item_emb[cold_rows], (heldout[0][held], position[heldout[1][held]]),
                              (exclude[0][excluded], position[exclude[1][excluded]]), ks=tuple(ks))["all"]


def retrieval_metrics(model: Any, data: EncodedInteractions, ks: list[int], split: str = "test"
                      ) -> dict[str, dict[str, float]]:
    """A model's full-catalog metrics on ``split``, all/warm/cold items."""
    return catalog_metrics(*embed_all(model, data), data, split, tuple(ks))


def record_retrieval_metrics(metrics: dict[str, Any], variant: str, model: Any, data: EncodedInteractions,
                             ks: list[int]) -> None:
    """``metrics["retrieval"][variant]`` (the test split, full catalog) and, for comparison with the
    TFRS tutorials only, ``metrics["tfrs_protocol"][variant]`` (top-K categorical accuracy per test
    interaction, seen items not excluded; see ``tfmmrec.evaluate.topk``), from one embedding pass."""
    user_emb, item_emb = embed_all(model, data)
    metrics.setdefault("retrieval", {})[variant] = catalog_metrics(user_emb, item_emb, data, "test", tuple(ks))
    heldout, _, warm = retrieval_eval_protocol(data, "test")
    metrics.setdefault("tfrs_protocol", {})[variant] = factorized_top_k_accuracy(
        user_emb, item_emb, heldout, item_groups={"warm": warm, "cold": ~warm})


def valid_recalls(user_emb: np.ndarray, item_emb: np.ndarray, data: EncodedInteractions, k: int = 20
                  ) -> dict[str, float]:
    """Validation Recall@k per group (``{"all", "warm", "cold"}``): what blends and reference
    models are selected by."""
    res = catalog_metrics(user_emb, item_emb, data, "valid", (k,))
    return {group: float(res[group][f"recall@{k}"]) for group in ("all", "warm", "cold")}


def ranking_eval_set(data: EncodedInteractions, split: str, negatives: int, seed: int,
                     explicit: bool) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Held-out pairs to score, and whether each pair's item is warm (has training interactions).

    Explicit feedback: the split's interactions with their ratings. Implicit: the split's
    positives plus ``negatives`` sampled items per positive that the user never interacted with,
    drawn from the positive's own group (warm or cold). Drawing them from the whole catalog would
    mostly measure that cold items lack the popularity bias warm items learned, not whether the
    model ranks a user's items above others.
    """
    part = getattr(data, split)
    warm_items = np.unique(data.train.item)
    if explicit:
        return {"user": part.user, "item": part.item}, part.target, np.isin(part.item, warm_items)
    rng = np.random.default_rng(seed)
    cold_items = np.setdiff1d(np.arange(1, data.num_items + 1), warm_items)
    pair_key = lambda u, i: u.astype(np.int64) * (data.num_items + 1) + i  # noqa: E731
    seen = np.unique(np.concatenate([pair_key(s.user, s.item) for s in (data.train, data.valid, data.test)]))
    pos_warm = np.isin(part.item, warm_items)
    cand_u = np.repeat(part.user, negatives)
    cand_warm = np.repeat(pos_warm, negatives)
    cand_i = np.where(cand_warm, rng.choice(warm_items, len(cand_u)),
                      rng.choice(cold_items, len(cand_u)) if len(cold_items) else 0).astype(np.int32)
    keep = ~np.isin(pair_key(cand_u, cand_i), seen, assume_unique=False) & (cand_i > 0)
    inputs = {"user": np.concatenate([part.user, cand_u[keep]]), "item": np.concatenate([part.item, cand_i[keep]])}
    labels = np.concatenate([np.ones(len(part), np.float32), np.zeros(int(keep.sum()), np.float32)])
    return inputs, labels, np.concatenate([pos_warm, cand_warm[keep]])


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


def evaluate_ranking(model: Any, data: EncodedInteractions, mode: str, *, negatives: int, seed: int,
                     split: str = "test") -> dict[str, float]:
    """A ranker's metrics on ``split`` (:func:`ranking_eval_set`, :func:`ranking_metrics`): the one
    sequence behind a run's ranking metrics, a re-evaluation and a tuning trial. ``mode``: rating,
    label or implicit (sampled negatives)."""
    inputs, labels, warm = ranking_eval_set(data, split, negatives, seed, explicit=mode != "implicit")
    preds = np.asarray(model.predict(inputs, batch_size=8192, verbose=0)).reshape(-1)
    return ranking_metrics(labels, preds, warm, mode)
