"""The ``tfmmrec`` command: a thin layer over the Python API.

  tfmmrec demo                        write the demo catalog, train, evaluate, export, print a table
  tfmmrec data demo --out DIR         write the demo catalog only
  tfmmrec data import KIND SRC --out DIR   movielens-100k | movielens | mmrec -> standard layout
  tfmmrec train DATASET_DIR [--out RUN_DIR]    also writes TensorBoard logs and weights into RUN_DIR
  tfmmrec encode DATASET_DIR                  bring the embedding store up to date (incremental, resumable)
  tfmmrec pretrain DATASET_DIR                align the modalities (InfoNCE) on the whole catalog
  tfmmrec evaluate RUN_DIR                    re-evaluate a trained run from its weights
  tfmmrec export RUN_DIR                      export a trained run's SavedModels again (new version)
  tfmmrec reindex DATASET_DIR --model-dir saved_models/NAME   new index version from a changed catalog
  tfmmrec serving-config BASE [--label NAME:LABEL=VERSION]  TF Serving models.config + batching.config
  tfmmrec tune DATASET_DIR --out DIR          keras-tuner search over tune.space; DIR/best.yaml
  tfmmrec config [--defaults | --markdown]    the effective config (commented YAML) or docs/config.md

Every command takes ``--config FILE`` and ``--set key=value`` (docs/config.md lists the keys);
a wrong key or type stops with its dotted path and exit code 2.

Only the commands that need TensorFlow import it (``--help``, ``config`` and ``data`` answer at
once), and they hide TensorFlow's C++ log lines unless ``--debug`` or TF_CPP_MIN_LOG_LEVEL asks
for them (``_import_tensorflow``).
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from tfmmrec.config import PRESETS, RANKER_NAMES  # noqa: E402  (yaml only: no TensorFlow)

DEMO_SIZES = {"default": (2000, 1500, 60000), "small": (300, 200, 6000)}
PRESET_NAMES = sorted(PRESETS)


def _add_config_options(p: argparse.ArgumentParser, preset: str | None = None) -> None:
    p.add_argument("--preset", choices=PRESET_NAMES, default=preset,
                   help="start from a named config (tfmmrec.config.PRESETS)"
                        + (f"; default {preset}" if preset else ""))
    p.add_argument("--config", type=Path, help="run config YAML (keys and defaults: docs/config.md)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set retrieval.epochs=5 (repeatable)")


def _add_run_options(p: argparse.ArgumentParser, preset: str | None = None) -> None:
    _add_config_options(p, preset)
    p.add_argument("--export-dir", type=Path, help="base directory of the SavedModels")
    p.add_argument("--no-export", action="store_true", help="skip writing SavedModels")
    p.add_argument("--quiet", action="store_true", help="no per-epoch lines")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tfmmrec", description="Multimodal recommendation with TensorFlow.",
        epilog="TensorFlow's log lines (oneDNN, CUDA, absl) are hidden: the commands set TF_CPP_MIN_LOG_LEVEL=3 "
               "unless you set it yourself (0 shows everything, 2 shows errors) or pass --debug, which shows "
               "TensorFlow's log at its own default level.")
    parser.add_argument("--debug", action="store_true",
                        help="on a data, config or file error, show the traceback too (exit code stays 2); "
                             "also show TensorFlow's log lines")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="demo catalog -> train (multimodal and ID-only) -> evaluate -> export")
    demo.add_argument("--workdir", type=Path, default=Path("tfmmrec_demo"),
                      help="where the catalog, metrics.json and config.yaml go (default: ./tfmmrec_demo)")
    demo.add_argument("--size", choices=sorted(DEMO_SIZES), default="default")
    demo.add_argument("--seed", type=int, default=0)
    _add_run_options(demo, preset="demo")

    data = sub.add_parser("data", help="write the demo catalog or import a public dataset")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    d_demo = data_sub.add_parser("demo", help="write the demo catalog")
    d_demo.add_argument("--out", type=Path, required=True)
    d_demo.add_argument("--size", choices=sorted(DEMO_SIZES), default="default")
    d_demo.add_argument("--seed", type=int, default=0)
    _add_config_options(d_demo)
    d_imp = data_sub.add_parser("import", help="convert a public dataset to the standard layout")
    d_imp.add_argument("kind", choices=["movielens-100k", "movielens", "mmrec"])
    d_imp.add_argument("source", nargs="?", type=Path,
                       help="zip/dir (movielens-100k: omitted = download), ratings dir, or MMRec dir")
    d_imp.add_argument("--out", type=Path, required=True)
    _add_config_options(d_imp)

    train = sub.add_parser("train", help="train and evaluate on a dataset in the standard layout")
    train.add_argument("dataset", type=Path)
    train.add_argument("--out", type=Path, help="run directory (metrics.json, config.yaml); "
                                                "default runs/<dataset name>; exports go to RUN_DIR/saved_models")
    train.add_argument("--drop-unknown", action="store_true",
                       help="drop (and count) interactions with unknown item/user ids instead of stopping")
    _add_run_options(train)
    _add_evaluate_parser(sub)
    _add_tune_parser(sub)
    _add_config_parser(sub)
    _add_export_parser(sub)
    _add_encode_parser(sub)
    _add_pretrain_parser(sub)
    _add_reindex_parser(sub)
    _add_serving_config_parser(sub)
    _add_debug_everywhere(parser)
    return parser


def _add_debug_everywhere(parser: argparse.ArgumentParser) -> None:
    """``--debug`` after the subcommand too (``tfmmrec train DIR --debug``)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                child.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                                   help="show the traceback of a data, config or file error, and "
                                        "TensorFlow's log lines")
                _add_debug_everywhere(child)


def _add_export_parser(sub: Any) -> None:
    p = sub.add_parser("export", help="export a trained run's SavedModels again (new version) from its weights")
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    p.add_argument("--export-dir", type=Path, help="base directory of the SavedModels (default: RUN_DIR/saved_models)")
    _add_run_dir_options(p, example="export.top_k=50")


def _add_run_dir_options(p: argparse.ArgumentParser, example: str) -> None:
    """Options of the commands that work on a trained run directory (evaluate, export)."""
    p.add_argument("--dataset", type=Path, help="dataset directory (default: the one the run was trained on)")
    p.add_argument("--config", type=Path, help="config YAML (default: RUN_DIR/config.yaml); model keys must match")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help=f"override a config value, e.g. --set {example} (repeatable)")


def _add_reindex_parser(sub: Any) -> None:
    p = sub.add_parser("reindex", help="export a new retrieval version indexing a changed catalog, without retraining")
    p.add_argument("dataset", type=Path, help="the catalog now (standard layout); its items are what gets indexed")
    p.add_argument("--model-dir", type=Path, required=True,
                   help="BASE/NAME of the retrieval export; its newest version is the starting point")
    p.add_argument("--version", type=int, help="version number to write (default: newest + 1)")
    _add_config_options(p)  # limits.* bound the new items' files


def _cmd_reindex(args: argparse.Namespace) -> int:
    from tfmmrec.data.loader import load_dataset
    from tfmmrec.export.reindex import reindex

    dataset = load_dataset(args.dataset, on_unknown_items="drop")  # interactions play no part in an index
    result = reindex(args.model_dir.parent, args.model_dir.name, dataset, version=args.version,
                     limits=_config(args).limits)
    print(f"[reindex] {result.summary()}")
    return 0


def _add_serving_config_parser(sub: Any) -> None:
    p = sub.add_parser("serving-config",
                       help="write TF Serving's models.config and batching.config for exports in BASE")
    p.add_argument("base", type=Path, help="directory holding NAME/VERSION SavedModels (e.g. saved_models)")
    p.add_argument("--model", dest="models", action="append", default=[],
                   help="model name to serve (repeatable; default: every NAME in BASE with a version)")
    p.add_argument("--label", action="append", default=[], metavar="NAME:LABEL=VERSION",
                   help="version label, e.g. demo_retrieval:canary=3 (default: stable = newest version)")
    p.add_argument("--container-base", default="/models", help="where BASE is mounted in the server")


def _cmd_serving_config(args: argparse.Namespace) -> int:
    from tfmmrec.export.tf_serving import write_serving_configs
    from tfmmrec.export.versioning import existing_versions

    names = args.models or sorted(p.name for p in args.base.iterdir() if existing_versions(p))
    labels: dict[str, dict[str, int]] = {}
    for spec in args.label:
        try:
            name, rest = spec.split(":", 1)
            label, version = rest.split("=", 1)
            labels.setdefault(name, {})[label] = int(version)
        except ValueError:
            print(f"tfmmrec: error: --label {spec!r} is not NAME:LABEL=VERSION", file=sys.stderr)
            return 2
    for path in write_serving_configs(args.base, names, container_base=args.container_base, labels=labels).values():
        print(f"[export] wrote {path}")
    return 0


def _add_encoder_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("dataset", type=Path)
    p.add_argument("--encoder", dest="encoders", action="append", default=[], metavar="KIND=NAME",
                   help="encoder per modality kind, e.g. --encoder text=small-bert or "
                        "--encoder audio=yamnet@/models/yamnet (see tfmmrec.encoders.registry.ENCODERS)")
    p.add_argument("--cache", type=Path, help="embedding store directory (default DATASET_DIR/.tfmmrec_cache)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    _add_config_options(p)


def _encoders_arg(values: list[str]) -> dict[str, str]:
    from tfmmrec.config import ConfigError

    out = {}
    for value in values:
        kind, sep, name = value.partition("=")
        if not sep or kind not in ("text", "image", "audio"):
            raise ConfigError(f"--encoder {value!r}: expected KIND=NAME with KIND text, image or audio")
        out[kind] = name
    return out


def _add_encode_parser(sub: Any) -> None:
    p = sub.add_parser("encode", help="encode a dataset's media into the embedding store (only new or changed "
                                      "items; resumes an interrupted run)")
    _add_encoder_options(p)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--chunk-size", type=int, default=1024, help="items per store chunk (the unit of resume)")


def _cmd_encode(args: argparse.Namespace) -> int:
    from tfmmrec.encoders.encode import encode_dataset

    cfg = _config(args)
    encoders = {**cfg.encoders, **_encoders_arg(args.encoders)}
    plans = encode_dataset(args.dataset, encoders=encoders, cache_dir=args.cache, batch_size=args.batch_size,
                           chunk_size=args.chunk_size, progress=not args.quiet, limits=cfg.limits)
    for p in plans:
        items = sum(bool(k) for k in p.keys)
        print(f"{p.modality} ({p.spec.name}): {p.computed} encoded now, {items - p.computed} already stored"
              + (f"; {p.report.summary()}" if p.report else ""))
    return 0


def _add_pretrain_parser(sub: Any) -> None:
    p = sub.add_parser("pretrain", help="contrastive (InfoNCE) alignment of every item's modalities; "
                                        "train with --set pretrain.enabled=true to use it")
    _add_encoder_options(p)


def _cmd_pretrain(args: argparse.Namespace) -> int:
    from tfmmrec.encoders.align import pretrain_dataset

    cfg = _config(args)  # pretrain.* keys, e.g. --set pretrain.epochs=20
    result = pretrain_dataset(args.dataset, cfg.pretrain, encoders={**cfg.encoders, **_encoders_arg(args.encoders)},
                              cache_dir=args.cache, verbose=not args.quiet)
    print(f"aligned {int(result.mask.sum())}/{len(result.mask)} items into {result.embeddings.shape[1]} dimensions")
    for pair, after in result.match_after.items():
        before = result.match_before.get(pair)
        print(f"  {pair}: an item's nearest {pair.split('-')[1]} is its own in {after:.1%} of items"
              + (f" (raw embeddings: {before:.1%})" if before is not None else ""))
    return 0


def _add_evaluate_parser(sub: Any) -> None:
    p = sub.add_parser("evaluate", help="re-evaluate trained runs from their run directories (no retraining)")
    p.add_argument("run_dirs", type=Path, nargs="+", metavar="RUN_DIR",
                   help="a directory written by `tfmmrec train` (config.yaml, run.json, weights/)")
    _add_run_dir_options(p, example="'evaluate.ks=[5, 10]'")


def _add_tune_parser(sub: Any) -> None:
    p = sub.add_parser("tune", help="keras-tuner search over the config keys in tune.space (resumable)")
    p.add_argument("dataset", type=Path)
    p.add_argument("--out", type=Path, help="output directory: best.yaml, trials.json, tuner state "
                                            "(default: runs/<dataset name>-tune); rerun to resume")
    p.add_argument("--overwrite", action="store_true", help="start the search afresh instead of resuming")
    _add_config_options(p)
    p.add_argument("--quiet", action="store_true", help="no per-trial output")


def _add_config_parser(sub: Any) -> None:
    p = sub.add_parser("config", help="print the effective config as commented YAML (or the docs table)")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--defaults", action="store_true", help="the defaults, ignoring --config/--set")
    group.add_argument("--markdown", action="store_true", help="the table of docs/config.md")
    _add_config_options(p)


def _config(args: argparse.Namespace) -> Any:
    from tfmmrec.config import ConfigError, RunConfig

    preset = getattr(args, "preset", None)
    try:
        cfg = RunConfig.from_yaml(args.config, preset=preset) if args.config else (
            RunConfig.from_preset(preset) if preset else RunConfig())
    except ConfigError as err:
        raise ConfigError(f"{args.config}: {err}") from None
    if getattr(args, "drop_unknown", False):
        cfg.data.on_unknown_items = "drop"
    return cfg.with_overrides(args.overrides)


def _write_demo(out: Path, size: str, seed: int) -> Path:
    from tfmmrec.data.demo import write_demo_catalog

    n_items, n_users, n_inter = DEMO_SIZES[size]
    return write_demo_catalog(out, n_items=n_items, n_users=n_users, n_interactions=n_inter, seed=seed,
                              progress=True)


def demo_table(metrics: dict[str, Any]) -> str:
    """A run's summary: Recall@20/NDCG@20 on all, warm and cold test items per model, and ranking.
    "all" is the usual full-catalog number (every held-out item); warm and cold split it by
    whether the item had training interactions."""
    rows = ["model        |  all R@20 |  all N@20 | warm R@20 | warm N@20 | cold R@20 | cold N@20",
            "-------------|-----------|-----------|-----------|-----------|-----------|----------"]
    for variant, groups in metrics["retrieval"].items():
        cells = [_fmt(groups[g][m]) for g in ("all", "warm", "cold") for m in ("recall@20", "ndcg@20")]
        rows.append(f"{variant:<12} | " + " | ".join(cells))
    if "ranking" in metrics:
        rank = metrics["ranking"]
        name = RANKER_NAMES.get(metrics.get("ranking_model", ""), "DeepFM")
        rows.append(f"ranking ({name}, test): " + ", ".join(
            f"{k.replace('_', ' ').upper()} {_fmt(v).strip()}" for k, v in rank.items() if k != "examples"))
    return "\n".join(rows)


def _fmt(value: float | None) -> str:
    """A metric in a 9-wide cell; '-' where it is undefined (e.g. no cold items in the test split)."""
    return "        -" if value is None or value != value else f"{value:9.4f}"


def _print_decode_report(metrics: dict[str, Any]) -> None:
    """Repeat at the end what media could not be decoded: it is easy to miss mid-run."""
    for r in metrics.get("decode", []):
        skipped, unsupported = r.get("skipped") or {}, r.get("unsupported") or {}
        bad = r["missing"] + r["failed"]
        if bad or r["absent"] or skipped or unsupported:
            line = (f"decode report, {r['modality']}: {r['decoded']}/{r['total']} decoded, {r['absent']} without a "
                    f"file, {len(r['missing'])} missing ({', '.join(r['missing'][:5]) or '-'}), "
                    f"{len(r['failed'])} failed to decode ({', '.join(r['failed'][:5]) or '-'})")
            if unsupported:
                line += ", unsupported format: " + ", ".join(f"{f} {len(v)} ({', '.join(v[:3])})"
                                                            for f, v in sorted(unsupported.items()))
            if skipped:
                line += ", refused: " + "; ".join(f"{reason} {len(v)} ({', '.join(v[:3])})"
                                                  for reason, v in sorted(skipped.items()))
            print(line + "; those items are served by their other modalities")


def user_errors() -> tuple[type[BaseException], ...]:
    """Errors caused by the user's data, config or files (exit code 2, one line); anything else is
    a bug in tfmmrec and keeps its traceback (exit code 1)."""
    import yaml

    from tfmmrec.config import ConfigError
    from tfmmrec.data.manifest import DatasetError
    from tfmmrec.train.run_dir import RunDirError

    # EncoderUnavailable is a ConfigError; PathRefused a DatasetError.
    errors: list[type[BaseException]] = [DatasetError, ConfigError, OSError, yaml.YAMLError, UnicodeDecodeError,
                                         RunDirError]
    versioning = sys.modules.get("tfmmrec.export.versioning")  # importing it imports TensorFlow (tfmmrec.export);
    if versioning is not None:  # an ExportError exists only once it is imported
        errors.append(versioning.ExportError)
    return tuple(errors)


def error_line(err: BaseException) -> str:
    """One line naming what is wrong (OSError: the file and the system's reason)."""
    if isinstance(err, OSError) and err.filename is not None and err.strerror:
        text = f"{err.filename}: {err.strerror}"
        if err.filename2 is not None:
            text = f"{err.filename} -> {err.filename2}: {err.strerror}"
    else:
        text = str(err) or type(err).__name__
    return " ".join(text.split())


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    command = _COMMANDS[" ".join(filter(None, [args.command, getattr(args, "data_command", None)]))]
    if command.needs_tensorflow:
        _import_tensorflow(debug=args.debug)
    try:
        return command.run(args)
    except user_errors() as err:
        if args.debug:
            import traceback

            traceback.print_exc()
        print(f"tfmmrec: error: {error_line(err)}", file=sys.stderr)
        return 2


# A TensorFlow log line: absl's "I0000 00:00:1796139220.259781   27779 port.cc:153] ..." or TF's own
# "2024-10-30 12:00:00.123456: I tensorflow/core/util/port.cc:113] ...". Severity I, W, E, F = 0..3.
_TF_LOG_LINE = re.compile(r"(?:([IWEF])\d{4} \d\d:\d\d:\d+\.\d+ +\d+ |\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: ([IWEF]) )"
                          r"\S+:\d+\] ")
_ABSL_PREAMBLE = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"


def tf_log_level(debug: bool) -> int:
    """Set TF_CPP_MIN_LOG_LEVEL for the commands that load TensorFlow and return it: the user's
    value if they set one, else 3 (TF's own log lines hidden), or TF's default (0) with --debug."""
    import tfmmrec

    if not tfmmrec._TF_LOG_LEVEL_FROM_USER:  # tfmmrec's import set 2 (for library users)
        if debug:
            os.environ.pop("TF_CPP_MIN_LOG_LEVEL", None)
        else:
            os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    try:
        return int(os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0"))
    except ValueError:
        return 0


def tf_startup_lines(text: str, level: int) -> str:
    """What was written to stderr while TensorFlow loaded, less what TF_CPP_MIN_LOG_LEVEL=level
    hides: TensorFlow's log lines of a lower severity and absl's preamble."""
    def kept(line: str) -> bool:
        match = _TF_LOG_LINE.match(line)
        if match:
            return "IWEF".index(match.group(1) or match.group(2)) >= level
        return not line.startswith(_ABSL_PREAMBLE)

    return "".join(line for line in text.splitlines(keepends=True) if kept(line))


def _import_tensorflow(debug: bool) -> None:
    """Import TensorFlow with TF_CPP_MIN_LOG_LEVEL applied to what it logs while loading too.

    TensorFlow ignores that level for some lines its libraries log while loading (2.21: oneDNN,
    cudart_stub and absl's "All log messages before absl::InitializeLog()" preamble; 2.17: CUDA
    factory errors; tensorflow/tensorflow#100442), and only file descriptor 2 reaches them. So
    during the import it points to a temporary file, which then goes to stderr less those lines
    (all of it if the import fails); anything else written meanwhile, e.g. a Python warning, is
    kept. If TensorFlow crashes the process while loading, rerun with --debug to see its lines.
    """
    if "tensorflow" in sys.modules:  # e.g. main() called in a process that uses TensorFlow already
        return
    level = tf_log_level(debug)
    try:
        terminal = os.dup(2) if level > 0 else None
    except OSError:  # no stderr to redirect
        terminal = None
    if terminal is None:
        import tensorflow  # noqa: F401
        return
    sys.stderr.flush()
    failed = True
    with tempfile.TemporaryFile() as log:
        try:
            os.dup2(log.fileno(), 2)
            import tensorflow  # noqa: F401
            failed = False
        finally:
            sys.stderr.flush()
            os.dup2(terminal, 2)
            os.close(terminal)
            log.seek(0)
            text = log.read().decode(errors="replace")
            sys.stderr.write(text if failed else tf_startup_lines(text, level))
            sys.stderr.flush()


def _validate_config(args: argparse.Namespace) -> None:
    """Every command validates its config, even where no key applies (data)."""
    if args.config or args.overrides:
        _config(args)


def _cmd_data_demo(args: argparse.Namespace) -> int:
    _validate_config(args)
    print(f"wrote the demo catalog to {_write_demo(args.out, args.size, args.seed)}")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from tfmmrec.data.manifest import Manifest
    from tfmmrec.pipeline import run

    cfg = _config(args)
    run_dir = args.out or Path("runs") / Manifest.load(args.dataset).name
    _print_tensorboard_hint(cfg, run_dir)
    export_dir = None if args.no_export else (args.export_dir or (run_dir / "saved_models" if args.out
                                                                  else Path("saved_models")))
    result = run(args.dataset, run_dir, cfg, export_dir=export_dir, verbose=0 if args.quiet else 2)
    print("\n" + demo_table(result.metrics))
    _print_decode_report(result.metrics)
    print(f"metrics written to {run_dir / 'metrics.json'}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    """Write the demo catalog, then exactly ``tfmmrec train`` on it with the "demo" preset."""
    from tfmmrec.pipeline import run

    started = time.perf_counter()
    cfg = _config(args)
    data_dir = args.workdir / "data"
    print(f"[demo] writing the demo catalog ({args.size}) to {data_dir}", flush=True)
    _write_demo(data_dir, args.size, args.seed)
    export_dir = None if args.no_export else (args.export_dir or Path("saved_models"))
    _print_tensorboard_hint(cfg, args.workdir)
    result = run(data_dir, args.workdir, cfg, export_dir=export_dir, verbose=0 if args.quiet else 2)
    print("\n" + demo_table(result.metrics))
    _print_decode_report(result.metrics)
    print(f"\n[demo] done in {time.perf_counter() - started:.0f}s, peak memory {result.metrics['peak_rss_gb']:.2f} GB; "
          f"metrics in {args.workdir / 'metrics.json'}")
    return 0


def _cmd_data_import(args: argparse.Namespace) -> int:
    from tfmmrec.data.mmrec import import_mmrec
    from tfmmrec.data.movielens import download_movielens_100k, import_movielens_100k, import_movielens_csv

    _validate_config(args)
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


def _print_tensorboard_hint(cfg: Any, run_dir: Path) -> None:
    from tfmmrec.train.tensorboard import tensorboard_dir

    if cfg.tensorboard.enabled:
        print(f"[tensorboard] logs in {tensorboard_dir(cfg, run_dir)}; to watch: "
              f"tensorboard --logdir {tensorboard_dir(cfg, run_dir)}", flush=True)


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from tfmmrec.train.saved_run import evaluate_run

    for run_dir in args.run_dirs:
        cfg = _run_config(args, run_dir)
        metrics = evaluate_run(run_dir, cfg, dataset_dir=args.dataset)
        print(f"{run_dir}:\n" + demo_table(metrics))
        print(f"metrics written to {run_dir / 'evaluation.json'}")
    return 0


def _run_config(args: argparse.Namespace, run_dir: Path) -> Any:
    """The config of a command on a trained run: RUN_DIR/config.yaml (or --config) with --set applied."""
    from tfmmrec.config import ConfigError, RunConfig

    path = args.config or run_dir / "config.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not a run directory (written by `tfmmrec train`)")
    try:
        cfg = RunConfig.from_yaml(path)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
    return cfg.with_overrides(args.overrides)


def _cmd_export(args: argparse.Namespace) -> int:
    from tfmmrec.pipeline import export_run

    cfg = _run_config(args, args.run_dir)
    exports = export_run(args.run_dir, args.export_dir or args.run_dir / "saved_models", cfg, dataset_dir=args.dataset)
    for kind, path in exports.items():
        print(f"exported {kind}: {path}")
    return 0


def _cmd_tune(args: argparse.Namespace) -> int:
    from tfmmrec.data.manifest import Manifest
    from tfmmrec.train.tune import tune

    cfg = _config(args)
    out = args.out or Path("runs") / f"{Manifest.load(args.dataset).name}-tune"
    result = tune(args.dataset, out, cfg, overwrite=args.overwrite, verbose=0 if args.quiet else 1)
    print(f"\n{'trial':>5} | {result.objective:>14} | values")
    for t in result.trials:
        print(f"{t['trial_id']:>5} | {t['objective']:14.4f} | {t['values']}")
    best = max(result.trials, key=lambda t: t["objective"] * (-1 if result.objective == "val_rmse" else 1))
    print(f"best: trial {best['trial_id']} ({result.objective} {best['objective']:.4f}); config written to "
          f"{result.best_path}\ntrain it: tfmmrec train {args.dataset} --config {result.best_path}\n"
          f"HParams dashboard: tensorboard --logdir {result.directory / 'hparams'}")
    return 0


def _cmd_config(args: argparse.Namespace) -> int:
    from tfmmrec.config import RunConfig
    from tfmmrec.config_docs import commented_yaml, markdown

    if args.markdown:
        print(markdown(), end="")
    else:
        print(commented_yaml(RunConfig() if args.defaults else _config(args)), end="")
    return 0


class Command(NamedTuple):
    run: Callable[[argparse.Namespace], int]
    needs_tensorflow: bool  # imported (quietly) before run; the others answer without loading it


# Every command (``data`` has two), with its handler; each handler imports what it uses.
_COMMANDS = {
    "demo": Command(_cmd_demo, needs_tensorflow=True),
    "data demo": Command(_cmd_data_demo, needs_tensorflow=False),
    "data import": Command(_cmd_data_import, needs_tensorflow=False),
    "train": Command(_cmd_train, needs_tensorflow=True),
    "evaluate": Command(_cmd_evaluate, needs_tensorflow=True),
    "export": Command(_cmd_export, needs_tensorflow=True),
    "encode": Command(_cmd_encode, needs_tensorflow=True),
    "pretrain": Command(_cmd_pretrain, needs_tensorflow=True),
    "reindex": Command(_cmd_reindex, needs_tensorflow=True),
    "serving-config": Command(_cmd_serving_config, needs_tensorflow=True),
    "tune": Command(_cmd_tune, needs_tensorflow=True),
    "config": Command(_cmd_config, needs_tensorflow=False),
}


if __name__ == "__main__":
    sys.exit(main())
