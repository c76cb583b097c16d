"""Every fusion layer, through the factory: shapes, masking, weights, gradients, dropout, config."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from tfmmrec.fusion import FUSIONS, ITEM_TOWER_FUSIONS, make_fusion

KINDS = sorted(FUSIONS)
WEIGHING = sorted(k for k, cls in FUSIONS.items() if cls.weighs_modalities)
# rows: all present | text only | image + audio | nothing at all | audio only
MASKS = {"text": [1, 1, 0, 0, 0], "image": [1, 0, 1, 0, 0], "audio": [1, 0, 1, 0, 1]}
DIMS = {"text": 5, "image": 3, "audio": 4}


def inputs(seed: int = 0) -> tuple[dict[str, tf.Tensor], dict[str, tf.Tensor], tf.Tensor]:
    rng = np.random.default_rng(seed)
    embeddings = {m: tf.constant(rng.standard_normal((5, d)), tf.float32) for m, d in DIMS.items()}
    masks = {m: tf.constant(v, tf.float32) for m, v in MASKS.items()}
    return embeddings, masks, tf.constant(rng.standard_normal((5, 6)), tf.float32)


def build(kind: str, modality_dropout: float = 0.0, **kwargs) -> keras.layers.Layer:
    return make_fusion(kind, 7, hidden_units=(8,), dropout=0.0, modality_dropout=modality_dropout, **kwargs)


def call(layer: keras.layers.Layer, embeddings, masks, query, training=None) -> tf.Tensor:
    extra = {"query": query} if getattr(layer, "needs_query", False) else {}
    return layer(embeddings, masks, training=training, **extra)


@pytest.mark.parametrize("kind", KINDS)
def test_shape_and_an_item_without_modalities_is_finite(kind: str) -> None:
    embeddings, masks, query = inputs()
    out = call(build(kind), embeddings, masks, query).numpy()
    assert out.shape == (5, 7)
    assert np.isfinite(out).all()  # row 3 has no modality at all


@pytest.mark.parametrize("kind", KINDS)
def test_an_absent_modality_contributes_nothing(kind: str) -> None:
    layer = build(kind)
    embeddings, masks, query = inputs()
    before = call(layer, embeddings, masks, query).numpy()
    scrambled = dict(embeddings)
    scrambled["image"] = embeddings["image"] * 100.0 + 3.0
    if kind != "concat":  # ConcatFusion multiplies by the mask: absent values must be finite there
        scrambled["image"] = tf.tensor_scatter_nd_update(scrambled["image"], [[3]], [[np.nan, np.inf, -np.inf]])
    after = call(layer, scrambled, masks, query).numpy()
    absent = np.array(MASKS["image"]) == 0
    np.testing.assert_allclose(after[absent], before[absent], rtol=1e-5, atol=1e-6)
    assert not np.allclose(after[~absent], before[~absent])


@pytest.mark.parametrize("kind", WEIGHING)
def test_weights_sum_to_one_over_present_modalities(kind: str) -> None:
    layer = build(kind, modality_dropout=0.5)  # no dropout in modality_weights (inference mode)
    embeddings, masks, query = inputs()
    weights = layer.modality_weights(embeddings, masks, **({"query": query} if layer.needs_query else {}))
    assert sorted(weights) == sorted(DIMS)
    w = np.stack([weights[m].numpy() for m in sorted(DIMS)], 1)
    present = np.stack([MASKS[m] for m in sorted(DIMS)], 1).astype(bool)
    assert (w[~present] == 0).all() and (w[present] > 0).all()
    np.testing.assert_allclose(w.sum(1), present.any(1).astype(float), atol=1e-5)  # item 3: all zero
    np.testing.assert_allclose(w[4], [1, 0, 0], atol=1e-6)  # audio only


@pytest.mark.parametrize("kind", KINDS)
def test_gradients_reach_present_inputs_only(kind: str) -> None:
    # Seeded: with 8 ReLU units an unlucky initialisation can leave one row with no active unit (and
    # no gradient); this checks the masking, not the odds of that.
    keras.utils.set_random_seed(0)
    layer = build(kind)
    embeddings, masks, query = inputs()
    weights = tf.constant(np.random.default_rng(1).standard_normal((5, 7)), tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(embeddings)
        loss = tf.reduce_sum(call(layer, embeddings, masks, query, training=True) * weights)
    grads = tape.gradient(loss, [embeddings, layer.trainable_variables])
    for m, g in grads[0].items():
        g = g.numpy()
        present = np.array(MASKS[m]) == 1
        assert (g[~present] == 0).all(), m
        assert (np.abs(g[present]).sum(1) > 0).all(), m
    assert all(g is not None and np.isfinite(g.numpy()).all() for g in grads[1])


@pytest.mark.parametrize("kind", KINDS)
def test_modality_dropout_only_in_training(kind: str) -> None:
    layer = build(kind, modality_dropout=0.5)
    embeddings, masks, query = inputs()
    np.testing.assert_allclose(call(layer, embeddings, masks, query, training=False),
                               call(layer, embeddings, masks, query, training=False))
    tf.random.set_seed(3)
    trained = [call(layer, embeddings, masks, query, training=True).numpy() for _ in range(4)]
    assert any(not np.allclose(trained[0], t) for t in trained[1:])


@pytest.mark.parametrize("kind", KINDS)
def test_config_round_trip_keeps_the_function(kind: str) -> None:
    layer = build(kind, modality_dropout=0.2, **({"balance_weight": 0.5} if kind in WEIGHING else {}))
    embeddings, masks, query = inputs()
    out = call(layer, embeddings, masks, query).numpy()
    clone = keras.layers.deserialize(keras.layers.serialize(layer))
    assert type(clone) is type(layer) and clone.get_config() == layer.get_config()
    call(clone, embeddings, masks, query)
    clone.set_weights(layer.get_weights())
    np.testing.assert_allclose(call(clone, embeddings, masks, query).numpy(), out, rtol=1e-6)


@pytest.mark.parametrize("kind", WEIGHING)
def test_balance_regulariser_is_off_by_default_and_penalises_imbalance(kind: str) -> None:
    embeddings, masks, query = inputs()
    plain = build(kind)
    call(plain, embeddings, masks, query, training=True)
    assert plain.losses == []
    layer = build(kind, balance_weight=10.0)
    call(layer, embeddings, masks, query, training=True)
    assert len(layer.losses) == 1
    if kind == "weighted_sum":  # its logits start equal, i.e. balanced: start it leaning on text instead
        layer.modality_logits.assign([0.0, 0.0, 2.0])
    call(layer, embeddings, masks, query, training=False)
    assert layer.losses == []  # no penalty at inference
    with tf.GradientTape() as tape:
        call(layer, embeddings, masks, query, training=True)
        penalty = tf.add_n(layer.losses)
    # The documented formula, by hand: balance_weight * batch * sum_m (mean_b w[b, m] - mean_b u[b, m])**2,
    # u uniform over each item's present modalities (no dropout here: training weights = inference weights).
    weights = layer.modality_weights(embeddings, masks, **({"query": query} if layer.needs_query else {}))
    w = np.stack([weights[m].numpy() for m in sorted(DIMS)], 1)
    present = np.stack([MASKS[m] for m in sorted(DIMS)], 1).astype(np.float64)
    u = present / np.maximum(present.sum(1, keepdims=True), 1)
    expected = 10.0 * len(w) * ((w.mean(0) - u.mean(0)) ** 2).sum()
    assert expected > 1e-6  # the weights are unbalanced: the comparison below is not 0 == 0
    assert float(penalty) == pytest.approx(expected, rel=1e-4)
    # the gradient of the penalty pushes the weights towards uniform: a small SGD step lowers it
    grads = tape.gradient(penalty, layer.trainable_variables)
    keras.optimizers.SGD(0.01).apply_gradients([(g, v) for g, v in zip(grads, layer.trainable_variables)
                                               if g is not None])
    call(layer, embeddings, masks, query, training=True)
    assert float(tf.add_n(layer.losses)) < float(penalty)


def test_weighted_sum_penalty_is_zero_when_uniform_and_grows_with_imbalance() -> None:
    embeddings, masks, query = inputs()
    all_present = {m: tf.ones(5) for m in DIMS}
    layer = build("weighted_sum", balance_weight=1.0)
    layer(embeddings, all_present, training=True)
    assert float(layer.losses[0]) == pytest.approx(0.0, abs=1e-12)  # logits start equal
    layer.modality_logits.assign([2.0, 0.0, 0.0])
    layer(embeddings, all_present, training=True)
    w = np.exp([2.0, 0, 0]) / np.exp([2.0, 0, 0]).sum()
    assert float(layer.losses[0]) == pytest.approx(5 * ((w - 1 / 3) ** 2).sum(), rel=1e-5)  # x batch size


def test_balance_weight_is_refused_by_layers_that_do_not_weigh() -> None:
    with pytest.raises(ValueError, match="does not weigh"):
        build("bilinear", balance_weight=0.1)


def test_cross_attention_needs_a_query_and_depends_on_it() -> None:
    embeddings, masks, query = inputs()
    layer = build("cross_attention")
    with pytest.raises(ValueError, match="query"):
        layer(embeddings, masks)
    first = layer.modality_weights(embeddings, masks, query=query)["text"].numpy()
    other = layer.modality_weights(embeddings, masks, query=-3 * query)["text"].numpy()
    assert not np.allclose(first[:2], other[:2])
    assert "cross_attention" not in ITEM_TOWER_FUSIONS


def test_make_fusion_names_the_choices() -> None:
    with pytest.raises(ValueError, match="weighted_sum"):
        make_fusion("tensor", 8)
    assert not build("concat").weighs_modalities
    with pytest.raises(TypeError, match="does not weigh"):
        build("bilinear").modality_weights(*inputs()[:2])


def test_layers_save_and_reload_as_a_savedmodel(tmp_path) -> None:
    # the query-conditioned layer (for ranking exports) and one with a list of per-modality sublayers;
    # all layers share the projection/head code, and saving all of them costs ~10 s
    embeddings, masks, query = inputs()
    module = tf.Module()
    module.fusions = {kind: build(kind) for kind in ("cross_attention", "multilinear")}
    want = {kind: call(layer, embeddings, masks, query).numpy() for kind, layer in module.fusions.items()}
    spec = {m: tf.TensorSpec([None, d], tf.float32) for m, d in DIMS.items()}
    mask_spec = {m: tf.TensorSpec([None], tf.float32) for m in DIMS}

    @tf.function(input_signature=[spec, mask_spec, tf.TensorSpec([None, 6], tf.float32)])
    def fuse_all(e, m, q):
        return {kind: call(layer, e, m, q, training=False) for kind, layer in module.fusions.items()}

    module.fuse_all = fuse_all
    tf.saved_model.save(module, str(tmp_path / "fusions"))
    reloaded = tf.saved_model.load(str(tmp_path / "fusions"))
    got = reloaded.fuse_all(embeddings, masks, query)
    for kind in want:
        np.testing.assert_allclose(got[kind].numpy(), want[kind], rtol=1e-5, atol=1e-6)
