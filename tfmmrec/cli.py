"""The ``tfmmrec`` command: a thin layer over the Python API.

  tfmmrec demo                        write the demo catalog, train, evaluate, export, print a table
  tfmmrec data demo --out DIR         write the demo catalog only
  tfmmrec data import KIND SRC --out DIR   movielens-100k | movielens | mmrec -> standard layout
  tfmmrec train DATASET_DIR [--out RUN_DIR]
"""
from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path
from typing import Any

DEMO_SIZES = {"default": (2000, 1500, 60000), "small": (300, 200, 6000)}


def _add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="run config YAML (see tfmmrec.config.RunConfig)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set retrieval.epochs=5 (repeatable)")
    p.add_argument("--export-dir", type=Path, help="base directory of the SavedModels")
    p.add_argument("--no-export", action="store_true", help="skip writing SavedModels")
    p.add_argument("--quiet", action="store_true", help="no per-epoch lines")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tfmmrec", description="Multimodal recommendation with TensorFlow.")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="demo catalog -> train (multimodal and ID-only) -> evaluate -> export")
    demo.add_argument("--workdir", type=Path, default=Path("tfmmrec_demo"),
                      help="where the catalog, metrics.json and config.yaml go (default: ./tfmmrec_demo)")
    demo.add_argument("--size", choices=sorted(DEMO_SIZES), default="default")
    demo.add_argument("--seed", type=int, default=0)
    _add_run_options(demo)

    data = sub.add_parser("data", help="write the demo catalog or import a public dataset")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    d_demo = data_sub.add_parser("demo", help="write the demo catalog")
    d_demo.add_argument("--out", type=Path, required=True)
    d_demo.add_argument("--size", choices=sorted(DEMO_SIZES), default="default")
    d_demo.add_argument("--seed", type=int, default=0)
    d_imp = data_sub.add_parser("import", help="convert a public dataset to the standard layout")
    d_imp.add_argument("kind", choices=["movielens-100k", "movielens", "mmrec"])
    d_imp.add_argument("source", nargs="?", type=Path,
                       help="zip/dir (movielens-100k: omitted = download), ratings dir, or MMRec dir")
    d_imp.add_argument("--out", type=Path, required=True)

    train = sub.add_parser("train", help="train and evaluate on a dataset in the standard layout")
    train.add_argument("dataset", type=Path)
    train.add_argument("--out", type=Path, help="run directory (metrics.json, config.yaml); "
                                                "default runs/<dataset name>; exports go to RUN_DIR/saved_models")
    train.add_argument("--drop-unknown", action="store_true",
                       help="drop (and count) interactions with unknown item/user ids instead of stopping")
    _add_run_options(train)
    return parser


def _config(args: argparse.Namespace) -> Any:
    from tfmmrec.config import RunConfig

    cfg = RunConfig.from_yaml(args.config) if args.config else RunConfig()
    if getattr(args, "drop_unknown", False):
        cfg.on_unknown_items = "drop"
    return cfg.with_overrides(args.overrides)


def _write_demo(out: Path, size: str, seed: int) -> Path:
    from tfmmrec.data.demo import write_demo_catalog

    n_items, n_users, n_inter = DEMO_SIZES[size]
    return write_demo_catalog(out, n_items=n_items, n_users=n_users, n_interactions=n_inter, seed=seed,
                              progress=True)


def demo_table(metrics: dict[str, Any]) -> str:
    """A run's summary: Recall@20/NDCG@20 on warm and cold test items per model, and ranking."""
    rows = ["model        | warm R@20 | warm N@20 | cold R@20 | cold N@20",
            "-------------|-----------|-----------|-----------|----------"]
    for variant, groups in metrics["retrieval"].items():
        w, c = groups["warm"], groups["cold"]
        cells = [_fmt(g[m]) for g in (w, c) for m in ("recall@20", "ndcg@20")]
        rows.append(f"{variant:<12} | " + " | ".join(cells))
    if "ranking" in metrics:
        rank = metrics["ranking"]
        name = "DCN-v2" if metrics.get("ranking_model") == "dcn" else "DeepFM"
        rows.append(f"ranking ({name}, test): " + ", ".join(
            f"{k.replace('_', ' ').upper()} {_fmt(v).strip()}" for k, v in rank.items() if k != "examples"))
    return "\n".join(rows)


def _fmt(value: float | None) -> str:
    """A metric in a 9-wide cell; '-' where it is undefined (e.g. no cold items in the test split)."""
    return "        -" if value is None or value != value else f"{value:9.4f}"


def _print_decode_report(metrics: dict[str, Any]) -> None:
    """Repeat at the end what media could not be decoded: it is easy to miss mid-run."""
    for r in metrics.get("decode", []):
        bad = r["missing"] + r["failed"]
        if bad or r["absent"]:
            print(f"decode report, {r['modality']}: {r['decoded']}/{r['total']} decoded, {r['absent']} without a file, "
                  f"{len(r['missing'])} missing ({', '.join(r['missing'][:5]) or '-'}), "
                  f"{len(r['failed'])} failed to decode ({', '.join(r['failed'][:5]) or '-'}); "
                  "those items are served by their other modalities")


def _peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    import tfmmrec  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TF loads Keras)
    from tfmmrec.config import ConfigError
    from tfmmrec.data.manifest import DatasetError

    try:
        return _dispatch(args)
    except (DatasetError, ConfigError, FileExistsError) as err:
        print(f"tfmmrec: error: {err}", file=sys.stderr)
        return 2


def _dispatch(args: argparse.Namespace) -> int:
    from tfmmrec.pipeline import run, write_json

    verbose = 0 if getattr(args, "quiet", False) else 2
    if args.command == "data" and args.data_command == "demo":
        print(f"wrote the demo catalog to {_write_demo(args.out, args.size, args.seed)}")
        return 0
    if args.command == "data":
        return _import(args)
    if args.command == "train":
        cfg = _config(args)
        from tfmmrec.data.manifest import Manifest

        run_dir = args.out or Path("runs") / Manifest.load(args.dataset).name
        export_dir = None if args.no_export else (args.export_dir or (run_dir / "saved_models" if args.out
                                                                      else Path("saved_models")))
        result = run(args.dataset, run_dir, cfg, export_dir=export_dir, verbose=verbose)
        print("\n" + demo_table(result.metrics))
        _print_decode_report(result.metrics)
        print(f"metrics written to {run_dir / 'metrics.json'}")
        return 0
    # demo
    started = time.perf_counter()
    cfg = _config(args)
    cfg.split.strategy = "cold_start" if cfg.split.strategy == "auto" else cfg.split.strategy
    data_dir = args.workdir / "data"
    print(f"[demo] writing the demo catalog ({args.size}) to {data_dir}", flush=True)
    _write_demo(data_dir, args.size, args.seed)
    export_dir = None if args.no_export else (args.export_dir or Path("saved_models"))
    result = run(data_dir, args.workdir, cfg, export_dir=export_dir, verbose=verbose)
    table = demo_table(result.metrics)
    result.metrics["table"] = table
    result.metrics["seconds"] = round(time.perf_counter() - started, 1)
    result.metrics["peak_rss_gb"] = round(_peak_rss_gb(), 2)
    write_json(args.workdir / "metrics.json", result.metrics)
    print("\n" + table)
    _print_decode_report(result.metrics)
    print(f"\n[demo] done in {result.metrics['seconds']:.0f}s, peak memory {result.metrics['peak_rss_gb']:.2f} GB; "
          f"metrics in {args.workdir / 'metrics.json'}")
    return 0


def _import(args: argparse.Namespace) -> int:
    from tfmmrec.data.mmrec import import_mmrec
    from tfmmrec.data.movielens import download_movielens_100k, import_movielens_100k, import_movielens_csv

    if args.kind == "movielens-100k":
        source = args.source or download_movielens_100k(Path.home() / ".cache" / "tfmmrec" / "downloads")
        out = import_movielens_100k(source, args.out)
    elif args.source is None:
        print(f"tfmmrec: error: 'data import {args.kind}' needs a SOURCE directory", file=sys.stderr)
        return 2
    elif args.kind == "movielens":
        out = import_movielens_csv(args.source, args.out)
    else:
        out = import_mmrec(args.source, args.out)
    print(f"wrote {args.kind} in the standard layout to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
