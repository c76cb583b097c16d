"""The item tower with every fusion usable in it: built from the config, saved config, trains."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from tfmmrec.config import ConfigError, RetrievalConfig, RunConfig
from tfmmrec.data.interactions import EncodedInteractions, SplitArrays
from tfmmrec.fusion import ITEM_TOWER_FUSIONS, fusion_options, make_fusion
from tfmmrec.models.build import build_retrieval
from tfmmrec.models.features import ItemFeatures, ItemFeatureTable
from tfmmrec.models.towers import ItemTower
from tfmmrec.train.inputs import retrieval_dataset


@pytest.fixture(scope="module")
def features() -> ItemFeatures:
    """12 items, two modalities, some items missing one of them; items 9..12 never trained."""
    rng = np.random.default_rng(0)
    n = 12
    content = {"text": rng.standard_normal((n + 1, 4)).astype(np.float32),
               "image": rng.standard_normal((n + 1, 3)).astype(np.float32)}
    masks = {"text": (rng.random(n + 1) < 0.8).astype(np.float32),
             "image": (rng.random(n + 1) < 0.7).astype(np.float32)}
    for m in content:
        masks[m][0] = 0
        content[m][masks[m] == 0] = 0
    id_slot = np.concatenate([[0], np.arange(1, 9), np.zeros(4)]).astype(np.int32)
    return ItemFeatures(content, masks, id_slot, np.zeros((n + 1, 0), np.int32), [], np.zeros((n + 1, 1), np.float32))


@pytest.mark.parametrize("fusion", ITEM_TOWER_FUSIONS)
def test_item_tower_with_each_fusion(features: ItemFeatures, fusion: str) -> None:
    cfg = RetrievalConfig(embedding_dim=8, fusion_hidden=[8], fusion=fusion)
    model = build_retrieval(features, 5, cfg)
    tower = model.item_tower
    items = tf.range(1, 13)
    out = tower(items, training=True).numpy()
    assert out.shape == (12, 8) and np.isfinite(out).all()
    assert tower.get_config()["fusion"] == fusion
    clone = ItemTower.from_config(tower.get_config())
    assert type(clone.fusion) is type(tower.fusion)


def test_item_tower_refuses_query_conditioned_fusion(features: ItemFeatures) -> None:
    table = ItemFeatureTable.from_features(features)
    with pytest.raises(ValueError, match="cross_attention.*user"):
        ItemTower(table, features.num_id_slots, 8, fusion="cross_attention")


def test_a_fusion_option_set_in_yaml_reaches_the_layer_and_its_saved_config(features: ItemFeatures) -> None:
    cfg = RunConfig.from_dict({"retrieval": {"embedding_dim": 8, "fusion_hidden": [8], "fusion": "multilinear",
                                             "fusion_options": {"rank": 3, "projection_dim": 6}}}).retrieval
    tower = build_retrieval(features, 5, cfg).item_tower
    assert tower(tf.range(1, 13)).shape == (12, 8)
    assert (tower.fusion.rank, tower.fusion.projection_dim) == (3, 6)
    assert tower.fusion.factors[0].units == 3 * 6  # the option shaped the layer's weights
    clone = ItemTower.from_config(tower.get_config())
    assert (clone.fusion.rank, clone.fusion.projection_dim) == (3, 6)


def test_an_option_the_fusion_does_not_take_is_refused_naming_the_ones_it_does(features: ItemFeatures) -> None:
    assert fusion_options("multilinear") == ["balance_weight", "projection_dim", "rank"]
    with pytest.raises(ConfigError, match=r"retrieval\.fusion_options\.rnak: fusion 'multilinear' has no such "
                                          r"option; its options: \['balance_weight', 'projection_dim', 'rank'\]"):
        build_retrieval(features, 5, RetrievalConfig(fusion="multilinear", fusion_options={"rnak": 3}))
    with pytest.raises(ValueError, match="fusion 'concat' has no option 'rank'"):
        make_fusion("concat", 8, rank=2)


def interactions() -> EncodedInteractions:
    rng = np.random.default_rng(2)
    users, items = rng.integers(1, 6, 64).astype(np.int32), rng.integers(1, 9, 64).astype(np.int32)
    empty = SplitArrays(np.zeros(0, np.int32), np.zeros(0, np.int32), None)
    prob = (np.bincount(items, minlength=13) + 1) / (len(items) + 13)
    return EncodedInteractions(np.array([f"u{u}" for u in range(1, 6)]), 12, SplitArrays(users, items, None),
                               empty, empty, prob.astype(np.float32))


def test_balance_regulariser_enters_the_training_loss(features: ItemFeatures) -> None:
    cfg = RetrievalConfig(embedding_dim=8, fusion_hidden=[8], fusion="modality_attention",
                          fusion_balance_weight=5.0)
    model = build_retrieval(features, 5, cfg)
    model.compile(optimizer=keras.optimizers.Adam(0.01))
    step = model.train_step(next(iter(retrieval_dataset(interactions(), 32, seed=0))))  # one eager step
    assert float(step["regularization_loss"]) > 0  # TFRS adds layer losses to the task loss
    assert float(step["total_loss"]) > float(step["loss"])
    off = build_retrieval(features, 5, RetrievalConfig(embedding_dim=8, fusion="modality_attention")).item_tower
    off(tf.range(1, 13), training=True)
    assert off.losses == []  # off by default


def test_item_tower_reports_modality_weights(features: ItemFeatures) -> None:
    tower = build_retrieval(features, 5, RetrievalConfig(embedding_dim=8, fusion="weighted_sum")).item_tower
    weights = tower.modality_weights(tf.range(1, 13))
    assert sorted(weights) == ["_numeric", "image", "text"]  # numeric fields enter as one more modality
    total = sum(w.numpy() for w in weights.values())
    np.testing.assert_allclose(total, 1.0, atol=1e-5)  # _numeric is always present
    np.testing.assert_array_equal(weights["image"].numpy() == 0, features.masks["image"][1:] == 0)
    with pytest.raises(TypeError, match="does not weigh"):
        build_retrieval(features, 5, RetrievalConfig(embedding_dim=8)).item_tower.modality_weights(tf.range(1, 3))
