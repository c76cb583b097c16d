"""TensorBoard logs of a run: read back from the event files and projector files a real run wrote."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
import tf_keras as keras
from google.protobuf import text_format
from tensorboard.plugins.projector import projector_config_pb2

from tfmmrec.config import RetrievalConfig
from tfmmrec.evaluate.protocol import embed_all
from tfmmrec.train.tensorboard import PROJECTOR_TENSOR, RunLogger, fusion_weights, sprite_image


def read_events(directory: Path) -> dict[str, list[tuple[int, Any, str]]]:
    """tag -> [(step, value, plugin)] from every event file directly in ``directory``."""
    out: dict[str, list[tuple[int, Any, str]]] = {}
    for path in sorted(directory.glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for v in event.summary.value:
                out.setdefault(v.tag, []).append((event.step, tf.make_ndarray(v.tensor),
                                                  v.metadata.plugin_data.plugin_name))
    return out


@pytest.fixture(scope="module")
def logs(trained_run: Any) -> Path:
    return trained_run.run_dir / "tensorboard"


def test_losses_learning_rate_and_embedding_norms_per_epoch(logs: Path, trained_run: Any) -> None:
    selection = trained_run.metrics["training"]["multimodal"]  # epochs is a maximum: validation chose
    epochs, best = selection["epochs_run"], selection["best_epoch"] - 1
    # Trained with each warm tower (retrieval.warm_tower: select), and each at each temperature
    # candidate (retrieval.temperature_candidates): one run per candidate beside the others; the
    # kept one's logs are those of the selection it reports.
    assert sorted(p.name for p in (logs / "multimodal").iterdir() if p.is_dir()) == ["id", "id_content"]
    chosen = logs / "multimodal" / selection["warm_tower"]["chosen"]
    temperature = selection["temperature"]
    assert sorted(p.name for p in chosen.glob("temperature_*")) == \
        sorted(f"temperature_{t}" for t in temperature["valid_best"]) and len(temperature["valid_best"]) == 2
    kept = chosen / f"temperature_{temperature['chosen']:g}"
    train = read_events(kept / "train")
    assert [step for step, _, _ in train["epoch_loss"]] == list(range(epochs))
    losses = [float(v) for _, v, _ in train["epoch_loss"]]
    assert losses[-1] < losses[0]  # it learned; the logged numbers are the real losses
    run = read_events(kept)
    assert [float(v) for _, v, _ in run["learning_rate"]] == pytest.approx([RetrievalConfig().learning_rate] * epochs)
    norms = run["embedding_norms/user_embedding"]
    assert len(norms) == epochs and norms[0][2] == "histograms"
    # The best epoch's histogram holds exactly the restored table's row norms (bucket counts sum to the rows).
    table = trained_run.models["multimodal"].query_tower.user_embedding.embeddings.numpy()
    assert norms[best][1][:, 2].sum() == pytest.approx(len(table))
    assert norms[best][1][0, 0] == pytest.approx(np.linalg.norm(table, axis=1).min(), rel=1e-5)
    # The per-epoch validation scalars: the full-catalog metrics and the early-stopping objective.
    valid = read_events(kept / "validation")
    curve = [point["val_recall_at_20"] for point in selection["val_curve"]]
    assert [float(v) for _, v, _ in valid["epoch_recall_at_20"]] == pytest.approx(curve, abs=1e-6)
    assert len(valid["epoch_objective"]) == epochs and "epoch_recall_at_20_cold" in valid
    assert "embedding_norms/item_id_embedding" in run
    # Every candidate's own curve starts at epoch 0 and peaks at the best it was credited with.
    for t, credited in temperature["valid_best"].items():
        objective = read_events(chosen / f"temperature_{t}" / "validation")["epoch_objective"]
        assert objective[0][0] == 0 and max(float(v) for _, v, _ in objective) == pytest.approx(credited, abs=1e-6)
    ranking = read_events(logs / "ranking" / "validation")
    assert "epoch_auc" in ranking


def test_projector_has_item_embeddings_metadata_and_a_sprite(logs: Path, trained_run: Any, demo_dir: Path) -> None:
    log_dir = logs / "multimodal"
    config = text_format.Parse((log_dir / "projector_config.pbtxt").read_text(), projector_config_pb2.ProjectorConfig())
    (emb,) = config.embeddings
    assert emb.tensor_name == PROJECTOR_TENSOR
    items = pd.read_csv(demo_dir / "items.csv", keep_default_na=False)
    n = min(len(items), 2000)
    metadata = pd.read_csv(log_dir / emb.metadata_path, sep="\t", keep_default_na=False)
    assert list(metadata.columns) == ["item_id", "title", "brand"]
    assert metadata["item_id"].astype(str).tolist() == items["item_id"].astype(str).tolist()[:n]
    assert metadata["title"].tolist() == items["title"].tolist()[:n]
    # The checkpointed tensor is the trained model's item embeddings, row for row with the metadata.
    values = tf.train.load_variable(tf.train.latest_checkpoint(str(log_dir)), PROJECTOR_TENSOR)
    _, expected = embed_all(trained_run.models["multimodal"], trained_run.data)
    np.testing.assert_allclose(values, expected[:n], rtol=1e-5, atol=1e-6)
    sprite = tf.io.decode_png(tf.io.read_file(str(log_dir / emb.sprite.image_path))).numpy()
    side = math.ceil(math.sqrt(n)) * 32
    assert list(emb.sprite.single_image_dim) == [32, 32] and sprite.shape == (side, side, 3)
    # Tile i is item i's image: compare one item that has an image with its own thumbnail.
    latent = pd.read_csv(demo_dir / "latent" / "items.csv", keep_default_na=False)
    with_image = np.flatnonzero((items["image_path"] != "").to_numpy() & (latent["corrupt"] == "").to_numpy())
    i = int(with_image[3])
    r, c = divmod(i, side // 32)
    own = sprite_image([demo_dir / items["image_path"][i]], 32)
    np.testing.assert_array_equal(sprite[r * 32:(r + 1) * 32, c * 32:(c + 1) * 32], own)
    # The corrupt image gets a grey tile instead of shifting the rows after it.
    bad = int(np.flatnonzero(latent["corrupt"] == "image")[0])
    if bad < n:
        r, c = divmod(bad, side // 32)
        assert (sprite[r * 32:(r + 1) * 32, c * 32:(c + 1) * 32] == 128).all()


def test_every_model_of_the_run_has_its_own_logs(logs: Path) -> None:
    assert sorted(p.name for p in logs.iterdir()) == ["id_only", "multimodal", "ranking"]
    assert (logs / "id_only" / "projector_config.pbtxt").is_file()
    assert not (logs / "ranking" / "projector_config.pbtxt").exists()  # the ranker has no item embeddings


@keras.utils.register_keras_serializable(package="tfmmrec_test")
class SoftmaxWeightedSum(keras.layers.Layer):
    """A fusion layer that weighs modalities with learned softmax weights and exposes them."""

    def __init__(self, modalities: list[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.modalities = list(modalities)
        self.logits = self.add_weight(name="logits", shape=[len(modalities)], initializer="zeros")

    def call(self, inputs: dict[str, tf.Tensor]) -> tf.Tensor:
        w = tf.nn.softmax(self.logits)
        return sum(w[i] * inputs[m] for i, m in enumerate(self.modalities))

    def modality_weights(self) -> dict[str, tf.Tensor]:
        return dict(zip(self.modalities, tf.unstack(tf.nn.softmax(self.logits))))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "modalities": self.modalities}


def test_fusion_weights_are_logged_per_epoch_and_follow_training(tmp_path: Path) -> None:
    """Only the image carries the target, so training moves weight from text to image."""
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    image, text = rng.normal(size=(512, 4)).astype("float32"), rng.normal(size=(512, 4)).astype("float32")
    inputs = {"image": keras.Input([4], name="image"), "text": keras.Input([4], name="text")}
    fusion = SoftmaxWeightedSum(["image", "text"], name="fusion")
    model = keras.Model(inputs, keras.layers.Dense(1, name="head")(fusion(inputs)))
    model.compile(keras.optimizers.Adam(0.05), "mse")
    model.fit({"image": image, "text": text}, image.sum(1, keepdims=True), epochs=4, batch_size=64, verbose=0,
              callbacks=[RunLogger(tmp_path)])
    events = read_events(tmp_path)
    w_image = [float(v) for _, v, _ in events["fusion/fusion/image"]]
    w_text = [float(v) for _, v, _ in events["fusion/fusion/text"]]
    assert len(w_image) == 4 and [s for s, _, _ in events["fusion/fusion/image"]] == [0, 1, 2, 3]
    assert all(a + b == pytest.approx(1.0, abs=1e-5) for a, b in zip(w_image, w_text))
    assert w_image[-1] > 0.55 > w_text[-1] and w_image[-1] > w_image[0]
    assert fusion_weights(model) == {"fusion": pytest.approx({"image": w_image[-1], "text": w_text[-1]}, abs=1e-5)}


class PerItemTower(keras.Model):
    """Like ``ItemTower.modality_weights(item)``: per-item weights over two modalities (a learned
    softmax per item), and a switch that makes it raise TypeError like a non-weighing fusion."""

    def __init__(self, num_items: int, weighs: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.weighs = weighs
        self.gate = keras.layers.Embedding(num_items, 2, embeddings_initializer="zeros", name="gate")

    def call(self, inputs: dict[str, tf.Tensor]) -> tf.Tensor:
        w = tf.nn.softmax(self.gate(inputs["item"]))
        return w[:, :1] * inputs["image"] + w[:, 1:] * inputs["text"]

    def modality_weights(self, item: tf.Tensor) -> dict[str, tf.Tensor]:
        if not self.weighs:
            raise TypeError("this fusion does not weigh modalities")
        w = tf.nn.softmax(self.gate(item))
        return {"image": w[:, 0], "text": w[:, 1]}


def test_per_item_fusion_weights_are_averaged_over_probe_items(tmp_path: Path) -> None:
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(1)
    n = 64
    x = {"item": rng.integers(0, n, 1024).astype("int32"), "image": rng.normal(size=(1024, 1)).astype("float32"),
         "text": rng.normal(size=(1024, 1)).astype("float32")}
    tower = PerItemTower(n, name="item_tower")
    tower.compile(keras.optimizers.Adam(0.1), "mse")
    probe = np.arange(n, dtype=np.int32)
    tower.fit(x, x["image"], epochs=3, batch_size=128, verbose=0, callbacks=[RunLogger(tmp_path, probe_items=probe)])
    image = [float(v) for _, v, _ in read_events(tmp_path)["fusion/item_tower/image"]]
    assert len(image) == 3 and image[-1] > 0.8  # the target is the image: every item's gate learned it
    assert image[-1] == pytest.approx(float(tower.modality_weights(probe)["image"].numpy().mean()), abs=1e-6)
    assert fusion_weights(tower) == {}  # without probe items, a per-item method is not called
    assert fusion_weights(PerItemTower(n, weighs=False, name="concat_like"), probe) == {}
