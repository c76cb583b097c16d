"""``reindex``: a changed catalog gets a new export version without retraining."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from tfmmrec.cli import main
from tfmmrec.data.loader import load_dataset
from tfmmrec.export.build import export_retrieval_model
from tfmmrec.export.reindex import reindex
from tfmmrec.export.tf_serving import read_warmup_records


def taste_match(users: pd.DataFrame, item: pd.Series) -> np.ndarray:
    """Ground truth from the demo's latent tables: how much each user likes this item's attributes."""
    return (users[f"cat_{item.category}"] + users[f"colour_{item.colour}"] + users[f"style_{item['style']}"]
            + users[f"tempo_{item.tempo_level}"]).to_numpy()


def test_reindex_adds_new_items_from_content_and_drops_removed_ones(trained_run, tmp_path: Path, capsys) -> None:
    data, model, ds = trained_run.data, trained_run.models["multimodal"], trained_run.dataset
    catalog = [str(i) for i in trained_run.item_ids]
    _, item_emb = model.query_tower, model.item_tower(np.arange(1, len(catalog) + 1)).numpy()
    base = tmp_path / "saved_models"
    export_retrieval_model(base, "shop", model, data.user_ids, trained_run.item_ids, item_emb, 100,
                           dataset=ds, content=trained_run.content)

    # The catalog changes: a new item arrives (content of a never-interacted item, whose trained
    # embedding is content-only too, under a new id), and one item is withdrawn.
    root = tmp_path / "catalog"
    shutil.copytree(ds.root, root, ignore=shutil.ignore_patterns(".tfmmrec_cache"))
    latent = pd.read_csv(root / "latent" / "items.csv", keep_default_na=False)
    cold = set(np.setdiff1d(np.arange(len(catalog)), data.train_item_rows))
    source = next(r for r in sorted(cold) if latent.has_image[r] == True and latent.has_audio[r] == True  # noqa: E712
                  and latent.has_text[r] == True and latent.corrupt[r] == "")  # noqa: E712
    items = pd.read_csv(root / "items.csv", keep_default_na=False)
    withdrawn = catalog[int(data.train_item_rows[0])]
    new = items.iloc[[source]].assign(item_id="new-0001")
    items = pd.concat([items[items.item_id != withdrawn], new])
    items.to_csv(root / "items.csv", index=False)
    inter = pd.read_csv(root / "interactions.csv")
    inter[inter.item_id != withdrawn].to_csv(root / "interactions.csv", index=False)

    assert main(["reindex", str(root), "--model-dir", str(base / "shop")]) == 0  # the CLI over reindex()
    assert f"shop/2: {len(catalog) - 1} items kept, 1 added from content, 1 removed" in capsys.readouterr().out
    path = base / "shop" / "2"
    warmup = read_warmup_records(path / "assets.extra" / "tf_serving_warmup_requests")  # carried over
    assert {log.predict_log.request.model_spec.signature_name for log in warmup} >= {"serving_default"}
    with pytest.raises(FileExistsError, match="never overwrite"):
        reindex(base, "shop", load_dataset(root), version=2)

    loaded = tf.saved_model.load(str(path))
    ids = [b.decode() for b in loaded.item_ids.numpy()]
    emb = loaded.item_embeddings.numpy()
    assert withdrawn not in ids and ids[-1] == "new-0001" and len(ids) == len(catalog)
    # Same content, same content-only path as training: the new item sits where its source does.
    np.testing.assert_allclose(emb[-1], item_emb[source], atol=2e-3)
    kept = [catalog.index(i) for i in ids[:-1]]
    np.testing.assert_array_equal(emb[:-1], item_emb[kept])  # existing items keep their trained vectors

    # Whose results does it reach? Ground truth says which users like its attributes.
    users = pd.read_csv(root / "latent" / "users.csv")
    users = users[users.user_id.isin(data.user_ids.astype(str))].reset_index(drop=True)
    match = taste_match(users, latent.iloc[source])
    serve = loaded.signatures["serving_default"]

    def results(user_ids: list[str], recent: list[list[str]]) -> np.ndarray:
        width = max(len(r) for r in recent)
        recent = [r + [""] * (width - len(r)) for r in recent]
        return serve(user_id=tf.constant(user_ids), recent_item_ids=tf.constant(recent),
                     exclude_item_ids=tf.constant([[""]]), k=tf.constant([100]))["item_ids"].numpy()

    order = np.argsort(-match)
    fans, others = users.user_id[order[:20]].tolist(), users.user_id[order[-20:]].tolist()
    reached = lambda out: np.mean([b"new-0001" in row for row in out])  # noqa: E731
    fan_share = reached(results(fans, [[""]] * 20))
    other_share = reached(results(others, [[""]] * 20))
    assert fan_share > other_share, (fan_share, other_share)
    # The added item is the index's one new item (the first version had none): a "new arrivals"
    # request ranks it alone and pads the rest.
    assert loaded.item_is_new.numpy().tolist() == [False] * (len(ids) - 1) + [True]
    arrivals = loaded.signatures["recommend_new_items"](user_id=tf.constant(fans[:2]), recent_item_ids=tf.constant(
        [[""]]), exclude_item_ids=tf.constant([[""]]), k=tf.constant([3]))["item_ids"].numpy().tolist()
    assert arrivals == [[b"new-0001", b"", b""]] * 2
    # A visitor we do not know, whose recent items are the best-matching user's history.
    best = fans[0]
    inter = pd.read_csv(root / "interactions.csv")
    history = inter[inter.user_id == best].item_id.astype(str).tolist()
    out = results(["a-new-visitor"], [history])
    assert b"new-0001" in out[0]


def test_reindex_masks_and_names_new_items_whose_files_it_may_not_read(trained_run, tmp_path: Path, capsys) -> None:
    """A new item's image outside the catalog, a fifo, a pixel bomb: masked and named, never read."""
    import os

    from tests.media_files import png_header_only

    data, model, ds = trained_run.data, trained_run.models["multimodal"], trained_run.dataset
    item_emb = model.item_tower(np.arange(1, len(trained_run.item_ids) + 1)).numpy()
    base = tmp_path / "saved_models"
    export_retrieval_model(base, "shop", model, data.user_ids, trained_run.item_ids, item_emb, 100,
                           dataset=ds, content=trained_run.content)
    root = tmp_path / "catalog"
    shutil.copytree(ds.root, root, ignore=shutil.ignore_patterns(".tfmmrec_cache"))
    items = pd.read_csv(root / "items.csv", keep_default_na=False)
    with_image = items[items.image_path != ""].iloc[0]
    shutil.copy(root / with_image.image_path, tmp_path / "outside.png")
    os.mkfifo(tmp_path / "pipe.png")
    (root / "images" / "bomb.png").write_bytes(png_header_only(12000, 12000))
    new = pd.DataFrame([with_image.to_dict()] * 3).assign(
        item_id=["new-out", "new-fifo", "new-bomb"], image_path=["../outside.png", "../pipe.png", "images/bomb.png"])
    pd.concat([items, new]).to_csv(root / "items.csv", index=False)

    result = reindex(base, "shop", load_dataset(root, on_unknown_items="drop"))
    assert result.masked == {"new-out": ["image (outside the dataset root)"],
                             "new-fifo": ["image (outside the dataset root)"],
                             "new-bomb": ["image (over limits.max_image_pixels)"]}
    shutil.rmtree(result.path)  # the CLI again from version 1: it says so too
    assert main(["reindex", str(root), "--model-dir", str(base / "shop")]) == 0
    out = capsys.readouterr().out
    assert "3 added from content" in out and "3 new items had media masked" in out and "new-fifo (image (" in out
