"""Fine-tune mode's model: an encoder inside the item tower, trained with its own (lower) learning rate.

In frozen mode (the default) each modality is encoded once into the embedding store and the
towers train on cached vectors. Here one modality's encoder is in the graph: its weights receive
gradients from the same retrieval loss as every two-tower model (``TwoTowerRetrieval.retrieval_loss``:
logQ, accidental hits, cross-replica negatives under a distribution strategy), through a second
optimizer whose learning rate is a fraction of the towers' (pretrained weights need small steps,
freshly initialised heads do not). The batches that carry each item's raw content are built by
``tfmmrec.train.finetune`` (it reads the files, through the catalog path gate).
"""
from __future__ import annotations

from typing import Any

import tensorflow as tf
import tf_keras as keras

from tfmmrec.encoders.contracts import ContentEncoder
from tfmmrec.models.retrieval import TwoTowerRetrieval, query_inputs
from tfmmrec.models.towers import ItemTower, QueryTower

RAW, PRESENT = "raw_content", "raw_present"


class FineTuneRetrieval(TwoTowerRetrieval):
    """Two-tower retrieval whose item embedding adds one modality encoded in the graph.

    item embedding = normalise(item_tower(item) + projection(encoder(raw content)) * present)

    Batches carry ``raw_content`` (strings, decoded images or waveforms, prepared by
    ``tfmmrec.train.finetune.finetune_dataset``) and ``raw_present`` (0 where the item lacks that
    modality). Task options (temperature, logQ, ...) are ``TwoTowerRetrieval``'s; mixed negatives
    are refused: a sampled extra candidate has no raw content in the batch to encode.
    """

    def __init__(self, query_tower: QueryTower, item_tower: ItemTower, encoder: ContentEncoder, *,
                 encoder_learning_rate: float = 1e-4, **kwargs: Any) -> None:
        if kwargs.get("mixed_negatives"):
            raise ValueError("fine-tune mode cannot use mixed_negatives: sampled candidates come without raw content")
        super().__init__(query_tower, item_tower, **kwargs)
        self.content_encoder = encoder
        self.content_projection = keras.layers.Dense(item_tower.embedding_dim, name="content_projection")
        self.encoder_optimizer = keras.optimizers.Adam(encoder_learning_rate)

    def item_embedding(self, item: tf.Tensor, raw: tf.Tensor, present: tf.Tensor,
                       training: bool = False) -> tf.Tensor:
        base = self.item_tower(item, training=training)
        content = self.content_projection(self.content_encoder(raw, training=training))
        return tf.math.l2_normalize(base + content * tf.cast(present, tf.float32)[:, None], axis=-1)

    def compute_loss(self, features: dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        queries = self.query_tower(query_inputs(features), training=training)
        candidates = self.item_embedding(features["item"], features[RAW], features[PRESENT], training)
        return self.retrieval_loss(queries, candidates, features, training)

    def train_step(self, features: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        with tf.GradientTape() as tape:
            loss = self.compute_loss(features, training=True)
            total = loss + tf.add_n(self.losses) if self.losses else loss
        encoder_vars = self.content_encoder.trainable_variables
        encoder_ids = {id(v) for v in encoder_vars}
        tower_vars = [v for v in self.trainable_variables if id(v) not in encoder_ids]
        grads = tape.gradient(total, tower_vars + encoder_vars)
        self.optimizer.apply_gradients(zip(grads[:len(tower_vars)], tower_vars))
        if encoder_vars:
            self.encoder_optimizer.apply_gradients(zip(grads[len(tower_vars):], encoder_vars))
        return {"loss": loss, "regularization_loss": total - loss, "total_loss": total}
