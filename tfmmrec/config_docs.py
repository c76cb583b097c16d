"""Every config key with its default and what it does, in one place.

``tfmmrec config --defaults`` prints the default config as commented YAML (a starting point for
``--config``), and ``docs/config.md`` is generated from the same descriptions
(``tfmmrec config --markdown > docs/config.md``). A key's description is its entry in ``DOCS``,
else the comment on its line or right above it in ``tfmmrec/config.py`` (so a field documented
where it is declared needs nothing here). A test checks that every key has one and that
``docs/config.md`` is current, so a new field without a description fails the suite instead of
going undocumented.
"""
from __future__ import annotations

import dataclasses
import functools
import inspect
import re
import typing
from typing import Any

import yaml

from tfmmrec.config import RunConfig

DOCS: dict[str, str] = {
    "retrieval.num_hard_negatives": "Keep only the N hardest negatives per query (0 = all in-batch/mixed candidates); "
                                    "measured to hurt on the demo (false negatives), see docs/models.md.",
    "retrieval.history_pooling": "mean | attention | mean+attention: how the query tower pools the history items.",
    "retrieval.user_features": "Add embeddings of the users table's categorical columns to the query tower.",
    "retrieval.user_id_dropout": "Share of training examples routed to the unknown-user id row, so it learns a "
                                 "generic user that history and features make personal.",
    "retrieval.adversarial_weight": "Weight of the FGSM adversarial loss term (with adversarial_epsilon > 0).",
    "ranking.cross_layers": "Number of DCN-v2 cross layers (ranking.model = dcn).",
    "multitask": "Retrieval + ranking head + item-category classification from content on shared towers "
                 "(tfmmrec.models.multitask); an extra retrieval variant when enabled.",
    "multitask.enabled": "Train the multitask model too and report it as retrieval variant 'multitask'.",
    "multitask.retrieval_weight": "Loss weight of the retrieval task.",
    "multitask.ranking_weight": "Loss weight of the ranking head (BCE on positives vs sampled items, MSE on ratings).",
    "multitask.category_weight": "Loss weight of the item-category classifier fed by fused content only.",
    "multitask.ranking_hidden": "Hidden units of the ranking head's MLP.",
    "pretrain": "Self-supervised cross-modal alignment (tfmmrec pretrain, tfmmrec.encoders.align).",
    "limits": "Bounds on untrusted input: catalog files over a limit are masked and reported, serving "
              "requests over one are refused naming the input.",
    "split": "How interactions are split into train/valid/test (tfmmrec.data.splits).",
    "split.strategy": "auto | predefined | random | temporal | cold_start; auto = the dataset's own split "
                      "column when it has one, else random.",
    "split.valid_frac": "Share of interactions held out for validation.",
    "split.test_frac": "Share of interactions held out for test.",
    "split.cold_item_frac": "cold_start only: share of items whose interactions are all held out.",
    "split.seed": "Seed of the random split.",
    "encoders": "Modality -> encoder name (tfmmrec.encoders.registry); an empty mapping uses the built-in "
                "compact encoders, the offline default.",
    "retrieval": "Two-tower retrieval model (TFRS) and its training.",
    "retrieval.embedding_dim": "Size of the user and item embeddings.",
    "retrieval.fusion_hidden": "Hidden layer sizes of the MLP that fuses the item's modalities.",
    "retrieval.fusion_dropout": "Dropout inside the fusion MLP.",
    "retrieval.temperature": "Softmax temperature on cosine scores; ~0.2 measured far better than TFRS's 1.",
    "retrieval.logq": "Subtract log(item sampling probability) from the logits (in-batch popularity bias).",
    "retrieval.remove_accidental_hits": "Do not count another row's copy of the positive item as a negative.",
    "retrieval.id_dropout": "Share of training examples whose item-id embedding is hidden, so content learns "
                            "to carry the item alone (cold items).",
    "retrieval.modality_dropout": "Probability of dropping a whole modality per example during training.",
    "retrieval.learning_rate": "Adam learning rate.",
    "retrieval.batch_size": "Global batch size; in-batch negatives = batch_size - 1.",
    "retrieval.epochs": "Maximum training epochs: after each, the validation split selects (early stopping, "
                        "best epoch kept); without validation rows all are trained and the last kept.",
    "retrieval.patience": "Epochs without a better validation objective before stopping; best weights kept.",
    "retrieval.validation_metric": "Validation metric that selects the epoch: recall@K, ndcg@K, hitrate@K, "
                                   "mrr@K or map@K (full catalog, training items excluded).",
    "retrieval.validation_objective": "all | warm | cold | mean: the metric over all validation items, over "
                                      "warm or cold ones only, or the mean of warm and cold (cold-start splits).",
    "retrieval.validation_batch_size": "Validation users scored against the whole catalog per batch.",
    "ranking": "DeepFM ranking model and its training.",
    "ranking.field_dim": "Embedding size of each DeepFM field.",
    "ranking.hidden_units": "Deep part's hidden layer sizes.",
    "ranking.dropout": "Dropout of the deep part.",
    "ranking.id_dropout": "Share of training examples whose item id is hidden (cold items).",
    "ranking.negatives": "Implicit feedback: sampled negatives per positive.",
    "ranking.learning_rate": "Adam learning rate.",
    "ranking.batch_size": "Batch size.",
    "ranking.epochs": "Maximum training epochs (early stopping on validation AUC / RMSE).",
    "ranking.patience": "Epochs without a better validation metric before stopping; best weights kept.",
    "ranking.user_features": "With a users table: its categorical columns and its numeric ones (manifest "
                             "user_numeric) become DeepFM/DCN fields, looked up by user inside the model.",
    "train_id_only": "Also train the ID-only retrieval baseline next to the multimodal model.",
    "train_ranking": "Also train the DeepFM ranker.",
    "ks": "Cutoffs K of Recall@K / NDCG@K in the evaluation.",
    "export_top_k": "K of the exported retrieval model's top-K answer.",
    "on_unknown_items": "error | drop: interactions whose item or user id is unknown stop the run, or are "
                        "dropped and counted.",
    "seed": "Global seed (weights init, shuffling, sampled negatives).",
    "distribute": "auto | one_device | mirrored | multi_worker: the tf.distribute strategy; auto picks "
                  "MirroredStrategy when several GPUs are visible.",
    "training": "What a run keeps besides its metrics.",
    "training.save_weights": "Save model weights to RUN_DIR/weights, so `tfmmrec evaluate RUN_DIR` can "
                             "re-evaluate the run without retraining.",
    "tensorboard": "TensorBoard logs (tfmmrec.train.tensorboard); `tensorboard --logdir RUN_DIR/tensorboard`.",
    "tensorboard.enabled": "Write TensorBoard logs during `train`.",
    "tensorboard.log_dir": "Log directory, relative to the run directory (or absolute).",
    "tensorboard.histograms": "Per-epoch histograms of user/item embedding norms.",
    "tensorboard.projector": "Item embeddings for the embedding projector, with metadata and a thumbnail sprite.",
    "tensorboard.projector_max_items": "At most this many items (the first rows) in the projector.",
    "tensorboard.sprite_size": "Edge in pixels of each item thumbnail in the projector sprite.",
    "tensorboard.metadata_columns": "Item columns shown in the projector; empty = item id, the first text "
                                    "column (title) and the categorical columns.",
    "tune": "keras-tuner search (`tfmmrec tune`, tfmmrec.train.tune).",
    "tune.task": "retrieval (objective: validation Recall@objective_k) | ranking (validation AUC, or -RMSE "
                 "for ratings).",
    "tune.variant": "retrieval only: multimodal | id_only model.",
    "tune.algorithm": "grid | random | bayesian (keras-tuner oracles; bayesian needs scipy: "
                      "pip install keras-tuner[bayesian]).",
    "tune.max_trials": "Number of trials (configurations); a resumed search counts trials already done.",
    "tune.objective_k": "K of the validation Recall@K objective.",
    "tune.epochs": "Epochs per trial; null = the task's configured epochs.",
    "tune.directory": "Tuner state, trials and HParams logs, relative to the output directory; the search "
                      "resumes from it.",
    "tune.space": "Config key -> list of values to try, e.g. {retrieval.learning_rate: [0.001, 0.01]}; any "
                  "key of this config can be tuned.",
}


def field_paths(cls: type = RunConfig, prefix: str = "") -> list[str]:
    """Dotted paths of every field and section of ``cls``, in declaration order."""
    out = []
    for f in dataclasses.fields(cls):
        path = f"{prefix}{f.name}"
        out.append(path)
        hint = typing.get_type_hints(cls)[f.name]
        if dataclasses.is_dataclass(hint):
            out.extend(field_paths(hint, path + "."))
    return out


_FIELD = re.compile(r"^\s+(\w+)\s*:[^=]*(=.*)?$")


def _source_comments(cls: type, prefix: str = "") -> dict[str, str]:
    """``{dotted path: comment}`` from ``# ...`` on a field's line or the lines right above it."""
    out: dict[str, str] = {}
    block: list[str] = []
    for line in inspect.getsource(cls).splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            block.append(stripped.lstrip("#").strip())
            continue
        code, _, trailing = line.partition("  # ")
        match = _FIELD.match(code)
        if match and match.group(1) in {f.name for f in dataclasses.fields(cls)}:
            text = trailing.strip() or " ".join(block)
            if text:
                out[prefix + match.group(1)] = text
        block = []
    for f in dataclasses.fields(cls):
        hint = typing.get_type_hints(cls)[f.name]
        if dataclasses.is_dataclass(hint):
            out.update(_source_comments(hint, f"{prefix}{f.name}."))
    return out


def descriptions() -> dict[str, str]:
    """Every key's description: ``DOCS`` first, else the comment at its declaration."""
    return {**_source_comments(RunConfig), **DOCS}


def undocumented() -> list[str]:
    known = descriptions()
    return [p for p in field_paths() if p not in known]


def commented_yaml(cfg: RunConfig | None = None) -> str:
    """``cfg`` (default: the defaults) as YAML with each key's description as a comment above it."""
    cfg = cfg or RunConfig()
    lines = ["# tfmmrec run config: every key, its value and what it does (docs/config.md)."]
    _emit(cfg.to_dict(), "", 0, lines, descriptions())
    return "\n".join(lines) + "\n"


def _emit(node: dict[str, Any], prefix: str, indent: int, lines: list[str], docs: dict[str, str]) -> None:
    pad = " " * indent
    for key, value in node.items():
        path = f"{prefix}{key}"
        if path in docs:
            lines.append(f"{pad}# {docs[path]}")
        if isinstance(value, dict) and value and _is_section(path):
            lines.append(f"{pad}{key}:")
            _emit(value, path + ".", indent + 2, lines, docs)
        else:
            text = yaml.safe_dump({key: value}, default_flow_style=True, sort_keys=False, width=1000).strip()
            lines.append(pad + (text[1:-1] if text.startswith("{") else text))


def _is_section(path: str) -> bool:
    return path in _section_paths()


@functools.cache
def _section_paths(cls: type = RunConfig, prefix: str = "") -> frozenset[str]:
    out: set[str] = set()
    for f in dataclasses.fields(cls):
        hint = typing.get_type_hints(cls)[f.name]
        if dataclasses.is_dataclass(hint):
            out |= {prefix + f.name, *_section_paths(hint, f"{prefix}{f.name}.")}
    return frozenset(out)


def markdown() -> str:
    """The table of ``docs/config.md``."""
    defaults = RunConfig().to_dict()
    docs = descriptions()
    rows = ["# Run configuration", "",
            "Generated by `tfmmrec config --markdown` from `tfmmrec/config_docs.py`; do not edit by hand.",
            "A run reads one YAML file (`--config FILE`; all keys optional) and `--set key=value` overrides;",
            "unknown keys and wrong types stop with the key's dotted path (exit code 2).",
            "`tfmmrec config --defaults` prints this as a commented YAML file to start from.", "",
            "| key | default | description |", "|---|---|---|"]
    for path in field_paths():
        value: Any = defaults
        for part in path.split("."):
            value = value[part]
        if _is_section(path):
            rows.append(f"| **{path}** | | {docs.get(path, '')} |")
            continue
        shown = yaml.safe_dump(value, default_flow_style=True, width=1000).strip().removesuffix("...").strip()
        rows.append(f"| `{path}` | `{shown}` | {docs.get(path, '').replace('|', '/')} |")
    return "\n".join(rows) + "\n"
