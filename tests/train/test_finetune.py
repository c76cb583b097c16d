"""Fine-tune mode: an encoder inside the item tower, fed raw content by tf.data, with its own
learning rate (on the interface-exact stand-ins of the real TF-Hub models)."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import tf_keras as keras

from tfmmrec.config import RetrievalConfig
from tfmmrec.data.demo import write_demo_catalog
from tfmmrec.data.interactions import encode_interactions
from tfmmrec.data.loader import load_dataset
from tfmmrec.data.splits import split_interactions
from tfmmrec.encoders.contracts import ContentEncoder
from tfmmrec.encoders.encode import encode_catalog, item_texts
from tfmmrec.encoders.registry import get_encoder_spec, register_encoder
from tfmmrec.models.build import build_retrieval
from tfmmrec.models.features import build_item_features
from tfmmrec.models.finetune import FineTuneRetrieval
from tfmmrec.models.retrieval import TwoTowerRetrieval
from tfmmrec.train.finetune import embed_items, finetune_dataset


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, tiny_hub: dict):
    root = tmp_path_factory.mktemp("finetune")
    hub = tiny_hub
    data = write_demo_catalog(root / "data", n_items=40, n_users=30, n_interactions=400, seed=4)
    ds = load_dataset(data)
    inter = split_interactions(ds.interactions, "random", valid_frac=0.1, test_frac=0.1, seed=0)
    encoded = encode_interactions(inter, ds.num_items)
    content = encode_catalog(ds, cache_dir=root / "cache", progress=False)  # frozen modalities, in the store
    return hub, ds, encoded, content


def fine_tune(setup, kind: str, encoder_name: str, encoder_lr: float) -> tuple[FineTuneRetrieval, list, list]:
    hub, ds, data, content = setup
    cfg = RetrievalConfig(embedding_dim=16, batch_size=64, epochs=1, learning_rate=0.01)
    base: TwoTowerRetrieval = build_retrieval(build_item_features(ds, content, data.train_item_rows), data.num_users,
                                              cfg)
    encoder = ContentEncoder(encoder_name, trainable=True, name="encoder")
    model = FineTuneRetrieval(base.query_tower, base.item_tower, encoder, encoder_learning_rate=encoder_lr)
    model.compile(optimizer=keras.optimizers.Adam(cfg.learning_rate))
    if kind == "text":
        inputs, present = item_texts(ds, ds.manifest.modalities["text"].columns), content.masks["text"]
    else:
        inputs, present = ds.items["image_path"].tolist(), content.masks["image"]
    before = [v.numpy().copy() for v in encoder.trainable_variables]
    towers_before = [v.numpy().copy() for v in model.query_tower.trainable_variables]
    model.fit(finetune_dataset(data, kind, encoder, ds.root, inputs, present, cfg.batch_size, seed=0),
              epochs=cfg.epochs, verbose=0)
    items = embed_items(model, kind, ds.root, inputs, present)
    assert items.shape == (ds.num_items, 16) and np.isfinite(items).all()
    changed = [not np.allclose(b, v.numpy()) for b, v in zip(before, encoder.trainable_variables)]
    towers_changed = [not np.allclose(b, v.numpy())
                      for b, v in zip(towers_before, model.query_tower.trainable_variables)]
    return model, changed, towers_changed


def test_bert_in_the_tower_has_its_own_learning_rate(setup) -> None:
    hub = setup[0]
    spec = get_encoder_spec(f"small-bert@{hub['small-bert']}+{hub['bert-preprocess']}")
    name = register_encoder(dataclasses.replace(spec, name="small-bert-16", seq_length=16)).name
    # Encoder learning rate 0: the towers learn, BERT's weights (all trainable) do not move.
    model, changed, towers_changed = fine_tune(setup, "text", name, encoder_lr=0.0)
    assert len(model.content_encoder.trainable_variables) == 5 and not any(changed)
    assert all(towers_changed)
    assert float(model.encoder_optimizer.learning_rate) == 0.0 < float(model.optimizer.learning_rate)


def test_an_image_cnn_is_fine_tuned_on_images_decoded_in_tf_data(setup) -> None:
    hub = setup[0]
    _, changed, towers_changed = fine_tune(setup, "image", f"mobilenet-v2@{hub['mobilenet-v2']}", encoder_lr=1e-3)
    assert changed and all(changed) and all(towers_changed)
