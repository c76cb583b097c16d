"""One run through ``tfmmrec.run`` with the options that need the pipeline's wiring on: user history
and features (from the users table), mixed negatives, DCN-v2 ranking and the multitask variant, on a
tiny catalog whose answer is known. (Hard negatives and FGSM only need the config, see
tests/models/test_retrieval.py.)"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tfmmrec.config import RunConfig
from tfmmrec.data.manifest import Manifest, ModalitySpec
from tfmmrec.pipeline import run


@pytest.fixture(scope="module")
def toy_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """60 items in 3 genres that a vector reveals; 45 users each liking one genre; a users table."""
    root = tmp_path_factory.mktemp("toy")
    rng = np.random.default_rng(0)
    genre = np.arange(60) % 3
    centers = rng.normal(size=(3, 8))
    np.save(root / "vec.npy", (centers[genre] + 0.2 * rng.normal(size=(60, 8))).astype(np.float32))
    pd.DataFrame({"item_id": [f"i{i}" for i in range(60)], "genre": np.array(["a", "b", "c"])[genre]}).to_csv(
        root / "items.csv", index=False)
    rows = [(f"u{u}", f"i{i}", 1000 + k) for u in range(45)
            for k, i in enumerate(rng.choice(np.flatnonzero(genre == u % 3), 8, replace=False))]
    pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]).to_csv(root / "interactions.csv", index=False)
    pd.DataFrame({"user_id": [f"u{u}" for u in range(45)], "region": [f"r{u % 3}" for u in range(45)]}).to_csv(
        root / "users.csv", index=False)
    Manifest(name="toy", items="items.csv", interactions="interactions.csv", users="users.csv",
             timestamp="timestamp", modalities={"vec": ModalitySpec(kind="vector", npy="vec.npy")},
             categorical=["genre"]).save(root)
    return root


def test_run_with_every_model_option(toy_dir: Path, tmp_path: Path) -> None:
    cfg = RunConfig().with_overrides([
        "retrieval.embedding_dim=8", "retrieval.fusion_hidden=[16]", "retrieval.epochs=8", "retrieval.batch_size=64",
        "retrieval.learning_rate=0.02", "retrieval.history_length=4", "retrieval.history_pooling=mean+attention",
        "retrieval.user_features=true", "retrieval.user_id_dropout=0.2", "retrieval.mixed_negatives=16",
        "ranking.model=dcn", "ranking.epochs=1", "ranking.field_dim=4", "ranking.hidden_units=[8]",
        "multitask.enabled=true", "train.id_only=false", "export.top_k=5",
        "retrieval.temperature_candidates=[]"])
    result = run(toy_dir, tmp_path / "run", cfg, export_dir=None, verbose=0)  # export: tests/models/test_towers.py
    assert set(result.metrics["retrieval"]) == {"multimodal", "multitask"}
    for variant in ("multimodal", "multitask"):  # users like one genre and the vector shows it
        assert result.metrics["retrieval"][variant]["all"]["recall@20"] > 0.5
    assert result.metrics["ranking_model"] == "dcn" and "auc" in result.metrics["ranking"]
    tower = result.models["multimodal"].query_tower
    assert tower.history_length == 4 and tower.user_feature_cardinalities == (4,)
    assert (tower.user_history.numpy()[1:] > 0).all()  # every training user has 4+ training items stored
    # the history a user is served with holds that user's own training items
    user_items = {(u, i) for u, i in zip(result.data.train.user, result.data.train.item)}
    assert all((1, i) in user_items for i in tower.user_history.numpy()[1])
