"""Training throughput: cached embeddings vs ID-only, and an encoder in the graph vs cached.

    PYTHONPATH=. python benchmarks/train_throughput.py [--data DIR] [--epochs 2] [--repeats 2]

On the demo catalog (written if ``--data`` is not given), three two-tower retrieval models of the
same embedding size train on the same batches:

- ``id_only``: the ID-only baseline;
- ``cached``: the multimodal tower on frozen embeddings from the store (the default mode);
- ``finetune``: ``cached`` plus the built-in image encoder inside the item tower, each batch's
  images read and decoded in tf.data (fine-tune mode, ``tfmmrec.train.finetune``).

Each is timed over ``--epochs`` epochs after one warm-up epoch (graph tracing), interleaved
``--repeats`` times so that machine load hits all three alike; the best time of each is kept.
Printed: training examples/s and the ratios cached / id_only (target >= 0.8) and
finetune / cached (what fine-tuning costs).
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import tfmmrec  # noqa: F401  (Keras 2 before TensorFlow loads Keras)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    import tf_keras as keras

    from tfmmrec.config import RetrievalConfig
    from tfmmrec.data.demo import write_demo_catalog
    from tfmmrec.data.interactions import encode_interactions
    from tfmmrec.data.loader import load_dataset
    from tfmmrec.data.splits import split_interactions
    from tfmmrec.encoders.contracts import ContentEncoder
    from tfmmrec.encoders.encode import encode_catalog
    from tfmmrec.models.build import build_retrieval
    from tfmmrec.models.features import build_item_features
    from tfmmrec.models.finetune import FineTuneRetrieval
    from tfmmrec.train.finetune import finetune_dataset
    from tfmmrec.train.inputs import retrieval_dataset

    data_dir = args.data or write_demo_catalog(Path(tempfile.mkdtemp(prefix="tfmmrec_bench_")) / "demo")
    ds = load_dataset(data_dir)
    inter = split_interactions(ds.interactions, "cold_start", valid_frac=0.1, test_frac=0.1, cold_item_frac=0.1,
                               seed=0)
    data = encode_interactions(inter, ds.num_items)
    content = encode_catalog(ds, progress=False)
    features = build_item_features(ds, content, data.train_item_rows)
    cfg = RetrievalConfig()
    image_paths = ds.items[ds.manifest.modalities["image"].column].tolist()

    def make(variant: str):
        model = build_retrieval(features, data.num_users, cfg, use_content=variant != "id_only")
        if variant == "finetune":
            encoder = ContentEncoder("builtin-image", trainable=True, name="encoder")
            model = FineTuneRetrieval(model.query_tower, model.item_tower, encoder)
            batches = finetune_dataset(data, "image", encoder, ds.root, image_paths, content.masks["image"],
                                       cfg.batch_size, seed=0)
        else:
            batches = retrieval_dataset(data, cfg.batch_size, seed=0)
        model.compile(optimizer=keras.optimizers.Adam(cfg.learning_rate))
        model.fit(batches, epochs=1, verbose=0)  # warm-up: tracing, first pass over the files
        return model, batches

    variants = ["id_only", "cached", "finetune"]
    models = {v: make(v) for v in variants}
    best = {v: float("inf") for v in variants}
    for _ in range(args.repeats):
        for v in variants:
            model, batches = models[v]
            started = time.perf_counter()
            model.fit(batches, epochs=args.epochs, verbose=0)
            best[v] = min(best[v], time.perf_counter() - started)
    examples = len(data.train) * args.epochs
    print(f"\ntraining throughput on {ds.num_items} items, {len(data.train)} training interactions, "
          f"batch {cfg.batch_size}, embedding {cfg.embedding_dim}")
    for v in variants:
        print(f"  {v:<9} {examples / best[v]:10,.0f} examples/s")
    print(f"ratio cached / id_only:   {best['id_only'] / best['cached']:.2f}  (target >= 0.8)")
    print(f"ratio finetune / cached:  {best['cached'] / best['finetune']:.2f}  (the price of an encoder in the graph)")


if __name__ == "__main__":
    main()
