"""Biased matrix factorisation for explicit ratings: ``mu + b_u + b_i + p_u . q_i``, with content.

Koren, Bell & Volinsky 2009, "Matrix Factorization Techniques for Recommender Systems". On
MovieLens ratings this textbook model, regularised per rating and trained to convergence, beat
DCN-v2 and DeepFM over ids, content and the users table by 0.012-0.022 test RMSE on every seed
(benchmarks/README.md, "A plain biased matrix factorisation beats tfmmrec's ranker"): the deep
part overfits within a few epochs, long before the id factors converge.

``history_length`` adds the mean of the user's items' history rows to ``p_u`` (SVD++, Koren 2008).

With ``use_content`` an item without an id slot (a cold item) gets a factor and a bias from its
content: ``q_i`` = the sum of a projection of each modality and its categorical fields' rows, and
the same for ``b_i`` (the users table's fields join ``p_u`` and ``b_u`` for it), trained in a
second stage against the frozen id factors (``stage``; as DeepMusic, van den Oord et al. 2013,
regresses latent factors from audio), so that warm items keep the ids-only model's scores exactly.
Summing content into every item's factor in one stage (RLFM, Agarwal & Chen 2009) scored cold
items better too but cost warm ones 0.009 test RMSE on ml-latest-small's cold-start split
(benchmarks/README.md, "Cold items in the rating model"). Without content a cold item is scored
``mu + b_u``, all an ids-only model knows of it.

It has the rankers' interface (``{"user", "item"}`` model indices in, a score out, :meth:`fields`
/ :meth:`logit` for the export's ``explain``), so it trains, selects and exports as they do.
"""
from __future__ import annotations

import warnings
from typing import Any

import tensorflow as tf
import tf_keras as keras

from tfmmrec.models.features import ItemFeatureTable
from tfmmrec.models.ranking import DeepFM


STAGES = ("ids", "content", "served")
ID_FIELDS = ("user", "item", "history")  # the fields of an ids-only model; the others are content


def is_user_field(name: str) -> bool:
    """Whether a field of :meth:`DeepFM.fields` (by its name) joins ``p_u``; the others make ``q_i``."""
    return name in ("user", "history", "_user_numeric") or name.startswith("user_categorical_")


@keras.utils.register_keras_serializable(package="tfmmrec")
class MatrixFactorization(DeepFM):
    """``{"user": int, "item": int}`` (model indices) -> ``global_bias + b_u + b_i + p_u . q_i``.

    Args:
      factors: size of ``p_u`` and ``q_i`` (every field's size).
      l2: weight of matrix factorisation's per-rating penalty, the squared norm of each training
        example's field rows and biases (``|p_u|^2 + |q_i|^2 + b_u^2 + b_i^2`` without content),
        averaged over the batch: a frequent id is penalised as often as it is trained (a penalty on
        the whole table each step, Keras' ``embeddings_regularizer``, weighs a row seen once like one
        seen a thousand times).
      use_content: cold items (no id slot) are scored from their content and categorical fields
        (module docstring); False: ids (and history) only.
      content_hidden: units of the ReLU layer between each modality and its factor and bias (0: a
        linear map).

    ``stage`` (not saved; ``tfmmrec.train.fit.train_ranking`` sets it): ``ids`` trains the id
    rows (content plays no part), ``content`` trains the content fields to score every item from
    content alone with the id rows frozen, ``served`` (the default, what is exported) scores an item
    with an id slot from its ids and one without from its content.
    """

    def __init__(self, table: ItemFeatureTable, num_users: int, num_id_slots: int,
                 categorical_cardinalities: tuple[int, ...] = (), factors: int = 64, l2: float = 0.05,
                 use_content: bool = False, content_hidden: int = 256, history_length: int = 0,
                 user_feature_cardinalities: tuple[int, ...] = (), num_user_numeric: int = 0,
                 **kwargs: Any) -> None:
        super().__init__(table, num_users, num_id_slots, tuple(categorical_cardinalities), field_dim=factors,
                         hidden_units=(), dropout=0.0, use_content=use_content, id_dropout=0.0,
                         history_length=history_length, user_feature_cardinalities=user_feature_cardinalities,
                         num_user_numeric=num_user_numeric, **kwargs)
        self.factors, self.l2, self.content_hidden = factors, l2, content_hidden
        del self.deep  # no deep part: the dot product is the whole interaction
        small = lambda: keras.initializers.RandomNormal(0.0, 0.01)  # noqa: E731
        zeros = keras.initializers.Zeros()
        # Every row starts small and unregularised by Keras: the per-rating penalty is the prior.
        rows = lambda n, d, name: keras.layers.Embedding(  # noqa: E731
            n, d, embeddings_initializer=small() if d > 1 else zeros, name=name)
        self.user_vec = rows(num_users + 1, factors, "user_factors")
        self.user_bias = rows(num_users + 1, 1, "user_bias")
        self.item_vec, self.item_bias = rows(num_id_slots, factors, "item_factors"), rows(num_id_slots, 1, "item_bias")
        if history_length:
            self.history_vec = rows(num_id_slots, factors, "history_factors")
        self.cat_vec = [rows(c, factors, f"cat{i}_factors") for i, c in enumerate(self.categorical_cardinalities)]
        self.cat_bias = [rows(c, 1, f"cat{i}_bias") for i, c in enumerate(self.categorical_cardinalities)]
        self.user_cat_vec = [rows(c, factors, f"user_cat{i}_factors") for i, c in enumerate(user_feature_cardinalities)]
        self.user_cat_bias = [rows(c, 1, f"user_cat{i}_bias") for i, c in enumerate(user_feature_cardinalities)]
        dense = lambda d, name: keras.layers.Dense(d, kernel_initializer=small() if d > 1 else zeros,  # noqa: E731
                                                   name=name)
        # Each modality: a hidden layer shared by its factor and its bias (one linear map scored cold
        # items 0.024 test RMSE worse on ml-latest-small's cold-start split, benchmarks/README.md).
        names = self.dense_names if use_content else []  # (an unbuilt Sequential has no variables to list)
        hidden = {m: keras.layers.Dense(content_hidden, activation="relu", name=f"{m.lstrip('_')}_hidden")
                  for m in names} if content_hidden else {}
        head = lambda m, d, name: keras.Sequential(  # noqa: E731
            ([hidden[m]] if content_hidden else []) + [dense(d, "output")], name=f"{m.lstrip('_')}_{name}")
        self.dense_vec = {m: head(m, factors, "factors") for m in names}
        self.dense_bias = {m: head(m, 1, "bias") for m in names}
        if num_user_numeric:
            self.user_numeric_vec = dense(factors, "user_numeric_factors")
            self.user_numeric_bias = dense(1, "user_numeric_bias")
        self._user_side: tuple[bool, ...] | None = None
        self.stage = "served"

    def set_stage(self, stage: str) -> None:
        """Switch what :meth:`fields` computes and what :meth:`train_step` updates (``STAGES``);
        recompile before fitting again (Keras traces the train function once per compile)."""
        if stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
        self.stage = stage
        self.predict_function = self.test_function = self.train_function = None

    def stage_variables(self) -> list[tf.Variable]:
        """The variables :meth:`train_step` updates in the current stage: the id rows, the content
        fields, or (``served``) all."""
        content = {v.ref() for layer in self.content_layers() for v in layer.trainable_variables}
        return [v for v in self.trainable_variables
                if self.stage == "served" or (v.ref() in content) == (self.stage == "content")]

    def content_layers(self) -> list[keras.layers.Layer]:
        if not self.use_content:
            return []
        user_numeric = [self.user_numeric_vec, self.user_numeric_bias] if self.num_user_numeric else []
        return (self.cat_vec + self.cat_bias + list(self.dense_vec.values()) + list(self.dense_bias.values())
                + self.user_cat_vec + self.user_cat_bias + user_numeric)

    def fit(self, *args: Any, **kwargs: Any) -> keras.callbacks.History:
        """Keras' ``fit``, in the current stage. In ``served`` (the default) with content it trains
        the id rows only, since every training rating is of a warm item: say so."""
        if self.use_content and self.stage == "served":
            warnings.warn("MatrixFactorization.fit in the 'served' stage trains the id rows only: the cold items' "
                          "content fields train in the 'content' stage. tfmmrec.train.fit.train_ranking runs both "
                          "stages, as `tfmmrec train` does; with plain Keras calls: set_stage('ids'), compile, fit, "
                          "set_stage('content'), compile, fit, then set_stage('served').", UserWarning, stacklevel=2)
        return super().fit(*args, **kwargs)

    def train_step(self, data: Any) -> dict[str, Any]:
        """Keras' train step, updating only :meth:`stage_variables` (so the frozen stage's variables
        get no gradient at all, rather than zero ones an optimizer would still count)."""
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        with tf.GradientTape() as tape:
            y_pred = self(x, training=True)
            loss = self.compute_loss(x, y, y_pred, sample_weight)
        self.optimizer.minimize(loss, self.stage_variables(), tape=tape)
        return self.compute_metrics(x, y, y_pred, sample_weight)

    def fields(self, features: dict[str, tf.Tensor], training: bool | None = None
               ) -> tuple[list[tf.Tensor], list[tf.Tensor], list[str]]:
        """DeepFM's fields, by ``stage``: ``ids`` the id fields alone; ``content`` the content fields
        in the item id's place; ``served`` both, each item's content fields zeroed where it has an id
        slot (its id fields are zero where it has none). Training adds the per-rating penalty on the
        rows the stage trains."""
        vecs, firsts, names = super().fields(features, training=training)
        content = [n not in ID_FIELDS for n in names]
        if self.stage == "ids":
            vecs, firsts, names = ([x for x, c in zip(xs, content) if not c] for xs in (vecs, firsts, names))
            content = [False] * len(names)
        elif self.stage == "content":
            vecs[1], firsts[1] = tf.zeros_like(vecs[1]), tf.zeros_like(firsts[1])
        elif self.use_content:
            cold = tf.cast(tf.gather(self.table.id_slot, tf.cast(features["item"], tf.int32)) == 0, tf.float32)[:, None]
            vecs = [v * cold if c else v for v, c in zip(vecs, content)]
            firsts = [f * cold if c else f for f, c in zip(firsts, content)]
        trained = content if self.stage == "content" else [True] * len(names)
        self._user_side = tuple(is_user_field(n) for n in names)
        rows = [x for x, t in zip(vecs, trained) if t] + [x for x, t in zip(firsts, trained) if t]
        if training and self.l2 and rows:
            self.add_loss(self.l2 * tf.reduce_mean(tf.reduce_sum(tf.square(tf.concat(rows, -1)), axis=-1)))
        return vecs, firsts, names

    def logit(self, vecs: list[tf.Tensor], firsts: list[tf.Tensor], training: bool | None = None) -> tf.Tensor:
        """``p_u . q_i`` + every first-order term + the global bias, ``p_u`` and ``q_i`` the sums of
        their side's fields (of the :meth:`fields` call that made ``vecs``)."""
        sides = self._user_side or (True, False)  # (fields always runs first; a bare call has two)
        user = tf.add_n([v for v, is_user in zip(vecs, sides) if is_user])
        item = tf.add_n([v for v, is_user in zip(vecs, sides) if not is_user])
        return tf.reduce_sum(user * item, axis=-1) + tf.squeeze(tf.add_n(firsts), axis=-1) + self.global_bias

    def get_config(self) -> dict[str, Any]:
        return {"table": keras.layers.serialize(self.table), "num_users": self.num_users,
                "num_id_slots": self.num_id_slots, "categorical_cardinalities": list(self.categorical_cardinalities),
                "factors": self.factors, "l2": self.l2, "use_content": self.use_content,
                "content_hidden": self.content_hidden,
                "user_feature_cardinalities": list(self.user_feature_cardinalities),
                "num_user_numeric": self.num_user_numeric,
                "history_length": self.history_length, "name": self.name}
