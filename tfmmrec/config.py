"""Run configuration: dataclasses that round-trip through YAML.

Every knob of a run lives here with its default and its description (``setting(default, doc)``:
the field's metadata), so a run is reproduced from its ``config.yaml`` alone and the key
reference (``docs/config.md``, ``tfmmrec config --defaults``) is generated from the declarations
(``tfmmrec.config_docs``). One section per stage: ``data``, ``split``, ``encoders``, ``pretrain``,
``retrieval``/``ranking``/``multitask`` (the models), ``train``, ``evaluate``, ``export``, and
``tensorboard``, ``tune``, ``limits``. Unknown keys and wrong types are rejected with the key's path;
a key of an earlier release that moved is rejected naming its new place.
"""
from __future__ import annotations

import copy
import dataclasses
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A config key is unknown or has the wrong type; the message gives the key's path."""


# Ranges of numeric keys, checked when a config is read (a file, a mapping, --set): a value outside
# would otherwise reach Keras or the splitter and fail there, without the key's name.
SHARE = ("[0, 1)", lambda v: 0.0 <= v < 1.0)  # a dropout rate or a held-out share
POSITIVE = ("> 0", lambda v: v > 0.0)
NON_NEGATIVE = (">= 0", lambda v: v >= 0.0)
FRACTION = ("[0, 1]", lambda v: 0.0 <= v <= 1.0)


def setting(default: Any, doc: str, within: tuple[str, Callable[[float], bool]] | None = None) -> Any:
    """A config key: its default (lists and mappings copied per instance), what it does and, for a
    number or a list of numbers, the range it (each element) must lie in (``SHARE``, ``POSITIVE``,
    ``NON_NEGATIVE``, ``FRACTION``)."""
    metadata = {"doc": doc, "within": within}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: copy.deepcopy(default), metadata=metadata)
    return field(default=default, metadata=metadata)


def section(cls: type, doc: str) -> Any:
    """A config section (a dataclass of keys) and what it configures."""
    return field(default_factory=cls, metadata={"doc": doc})


# Keys of earlier releases, and where they live now.
MOVED = {"train_id_only": "train.id_only", "train_ranking": "train.ranking", "distribute": "train.distribute",
         "backup_every_steps": "train.backup_every_steps", "training": "train (training.save_weights is "
         "train.save_weights)", "ks": "evaluate.ks", "export_top_k": "export.top_k",
         "export_index": "export.index", "on_unknown_items": "data.on_unknown_items"}


@dataclass
class SplitConfig:
    """How interactions are split (see ``tfmmrec.data.splits``)."""

    strategy: str = setting("auto",
        "auto | predefined | random | temporal | cold_start; auto = the dataset's own split column when it has one, "
        "else random.")
    valid_frac: float = setting(0.1, "Share of interactions held out for validation.", SHARE)
    test_frac: float = setting(0.1, "Share of interactions held out for test.", SHARE)
    cold_item_frac: float = setting(0.1, "cold_start only: share of items whose interactions are all held out.", SHARE)
    seed: int = setting(0, "Seed of the random split.")


@dataclass
class RetrievalConfig:
    """Two-tower retrieval. Temperature and logQ defaults measured on the demo and MovieLens."""

    embedding_dim: int = setting(128, "Size of the user and item embeddings.", POSITIVE)
    fusion_hidden: list[int] = setting([128], "Hidden layer sizes of the MLP that fuses the item's modalities.",
        POSITIVE)
    fusion_dropout: float = setting(0.0, "Dropout inside the fusion MLP.", SHARE)
    fusion: str = setting("concat", "a key of tfmmrec.fusion.ITEM_TOWER_FUSIONS")
    fusion_balance_weight: float = setting(0.0, "modality-balance regulariser (weighing fusions only); 0 = off")
    fusion_options: dict[str, Any] = setting({},
        "The fusion layer's own options, passed to it as they are, e.g. {rank: 8} (multilinear), "
        "{attention_units: 64} (modality_attention), {num_heads: 4, head_dim: 32} (attention_pooling), "
        "{projection_dim: 64}; an option the layer does not take is refused naming the ones it does "
        "(tfmmrec.fusion.fusion_options).")
    temperature: float = setting(0.2, "Softmax temperature on cosine scores; ~0.2 measured far better than TFRS's 1.",
                                POSITIVE)
    temperature_candidates: list[float] = setting([0.15],
        "More temperatures to select among on validation, as the epoch is: the model (warm/cold: its warm stage) "
        "is trained once per value (after `temperature`) from the same initial weights and the best validation "
        "objective is kept; each value costs one more training ([] trains at `temperature` only). The best "
        "temperature differs by dataset (0.15 on ml-latest-small, 0.2 on the demo and MovieLens-100K) and "
        "validation picked it on every setting measured (benchmarks/README.md, 'Quality').", POSITIVE)
    logq: bool = setting(True, "Subtract log(item sampling probability) from the logits (in-batch popularity bias).")
    logq_weight: float = setting(1.0,
        "Strength w of the logQ correction, w * log(p) subtracted: 1 = the full correction, 0 = none (as logq: "
        "false). Measured in benchmarks/README.md ('Quality').", NON_NEGATIVE)
    remove_accidental_hits: bool = setting(True, "Do not count another row's copy of the positive item as a negative.")
    id_dropout: float = setting(0.3,
        "Share of training examples whose item-id embedding is hidden, so content learns to carry the item alone "
        "(cold items); item_representation joint and the multitask model only (warm_cold never hides ids).", SHARE)
    modality_dropout: float = setting(0.1, "Probability of dropping a whole modality per example during training.",
                                     SHARE)
    learning_rate: float = setting(0.01, "Adam learning rate.", POSITIVE)
    weight_decay: float = setting(0.0,
        "Decoupled weight decay (AdamW) of every trainable weight, per step and relative to the learning rate; 0 = "
        "plain Adam. Measured in benchmarks/README.md ('Quality').", NON_NEGATIVE)
    embedding_dropout: float = setting(0.0,
        "Dropout on the elements of the user and item id embeddings in training (regularises ids that memorise "
        "their few training interactions). Measured in benchmarks/README.md ('Quality').", SHARE)
    batch_size: int = setting(1024, "Global batch size; in-batch negatives = batch_size - 1.", POSITIVE)
    epochs: int = setting(20,
        "Maximum training epochs: after each, the validation split selects (early stopping, best epoch kept); without"
        " validation rows all are trained and the last kept.", POSITIVE)
    patience: int = setting(3, "Epochs without a better validation objective before stopping; best weights kept.",
        NON_NEGATIVE)
    validation_metric: str = setting("recall@20",
        "Validation metric that selects the epoch: recall@K, ndcg@K, hitrate@K, mrr@K or map@K (full catalog, "
        "training items excluded).")
    validation_objective: str = setting("all",
        "all | warm | cold | mean: the metric over all validation items, over warm or cold ones only, or the mean of "
        "warm and cold (cold-start splits).")
    validation_batch_size: int = setting(256, "Validation users scored against the whole catalog per batch.", POSITIVE)
    mixed_negatives: int = setting(0,
        "Negatives and loss (see tfmmrec.models.retrieval): extra uniformly sampled candidates per batch (mixed "
        "negatives, logQ of the mixture), and the k hardest negatives only (0 = all).", NON_NEGATIVE)
    num_hard_negatives: int = setting(0,
        "Keep only the N hardest negatives per query (0 = all in-batch/mixed candidates); measured to hurt on the "
        "demo (false negatives), see docs/models.md.", NON_NEGATIVE)
    history_length: int = setting(0,
        "Query tower: the user's last `history_length` training items pooled through the item tower ('mean', "
        "'attention' or 'mean+attention'); the users table's categorical columns as features; a share of training "
        "examples routed to the unknown-user row so it learns the generic user.", NON_NEGATIVE)
    history_pooling: str = setting("mean",
        "mean | attention | mean+attention: how the query tower pools the history items.")
    history_sampling: str = setting("before",
        "before | others: which of the user's training items a history holds (tfmmrec.data.interactions."
        "user_histories). 'before': the items before the training example's target, and the last ones at serving "
        "(temporal splits, serving the latest items); 'others': a random draw of the user's other training items, "
        "and of their items at serving (random and cold-start splits, whose held-out items lie anywhere in the "
        "user's timeline). Measured in benchmarks/README.md ('Quality').")
    user_features: bool = setting(False, "Add embeddings of the users table's categorical columns to the query tower.")
    user_id_dropout: float = setting(0.0,
        "Share of training examples routed to the unknown-user id row, so it learns a generic user that history and "
        "features make personal.", SHARE)
    adversarial_epsilon: float = setting(0.0,
        "FGSM-style adversarial perturbation of content embeddings (0 = off) and its loss weight.")
    adversarial_weight: float = setting(1.0, "Weight of the FGSM adversarial loss term (with adversarial_epsilon > 0).")
    jit_compile: bool | None = setting(None,
        "XLA-compile the training step: true / false, or null = auto: on from batch_size 4096 "
        "(train.fit.XLA_FROM_BATCH), where the in-batch softmax dominates and XLA repays its few seconds of "
        "compilation; off below it and with history pooling (tf.unique does not compile).")
    item_representation: str = setting("warm_cold",
        "Item representation of the multimodal model (tfmmrec.models.coldstart), measured in benchmarks/README.md "
        "('Quality'): 'warm_cold' = a warm tower for items with training interactions and a content tower aligned to "
        "it for the rest, one index (the default); 'joint' = one tower adding id and content embeddings with "
        "id_dropout (the first release).")
    warm_tower: str = setting("select",
        "warm_cold: the warm tower: 'select' (trains the model with each of the two below and keeps the better "
        "on validation Recall@K of all items; twice the training time), 'id_content' (ids + content, no ID "
        "dropout) or 'id' (ids only). Measured in benchmarks/README.md ('The warm tower chosen on validation').")
    content_align_weight: float = setting(1.0,
        "warm_cold: weight of the content tower's 1 - cos alignment to the warm tower")
    content_warm_negatives: bool = setting(True,
        "warm_cold: the content tower's negatives include the batch items' warm embeddings, as in the served index, "
        "where a cold item competes with warm items' warm embeddings.")
    content_selection: str = setting("cold_pool",
        "warm_cold, cold-start split: what selects the content tower's epoch: 'cold_pool' (its recall of the "
        "validation split's cold items ranked among the cold items only, where many more of them are hits: a "
        "steadier signal; the blend then calibrates them against warm items) or 'cold' (in the full catalog). "
        "Measured in benchmarks/README.md ('Quality').")
    warm_blend_c: list[float] = setting([0.0, 1.0, 3.0, 10.0],
        "warm_cold: candidates of c in g(n) = n / (n + c), the warm tower's share for an item with n training "
        "interactions (0: warm items are their warm embedding); the best on validation is kept.")
    cold_scale: list[float] = setting([1.0, 0.95, 0.9, 0.85, 0.8, 0.75, 0.7, 0.6, 0.5, 1.05, 1.1, 1.15, 1.2, 1.3],
        "warm_cold: candidates of the factor on content-only (cold) items' scores, calibrating them against warm "
        "items' (1 = none); chosen on validation together with warm_blend_c. The pair kept: see blend_objective.")
    blend_objective: str = setting("warm_first",
        "warm_cold, cold-start split: 'warm_first' (the best recall of all validation items among the pairs that keep"
        " warm items within blend_warm_tolerance of the warm model alone), 'all' (the best recall of all validation "
        "items) or 'balanced' (neither warm nor cold items pay for the other more than they must). Measured in "
        "benchmarks/README.md ('Quality').")
    blend_warm_tolerance: float = setting(0.05,
        "warm_first: warm items' allowed relative loss against the warm model alone", FRACTION)


RANKER_NAMES = {"dcn": "DCN-v2", "deepfm": "DeepFM", "mf": "MF"}  # ranking.model -> what reports call it


@dataclass
class RankingConfig:
    """DeepFM ranking. ``negatives``: sampled negatives per positive for implicit feedback.
    Training stops early on the validation split's AUC (RMSE for ratings), see ``patience``."""

    field_dim: int = setting(16, "Embedding size of each DeepFM field.", POSITIVE)
    hidden_units: list[int] = setting([64, 32], "Deep part's hidden layer sizes.", POSITIVE)
    dropout: float | None = setting(None,
        "Dropout of the deep part; null = by feedback (RankingConfig.deep_dropout): 0.5 on ratings, which overfit "
        "within a few epochs, 0.1 otherwise (implicit feedback, whose fresh negatives each epoch regularise, and 0/1 "
        "labels). Measured in benchmarks/README.md ('Quality').", SHARE)
    id_dropout: float = setting(0.3, "Share of training examples whose item id is hidden (cold items).", SHARE)
    negatives: int = setting(4, "Implicit feedback: sampled negatives per positive.", POSITIVE)
    learning_rate: float = setting(0.005, "Adam learning rate.", POSITIVE)
    batch_size: int = setting(1024, "Batch size.", POSITIVE)
    epochs: int = setting(20, "Maximum training epochs (early stopping on validation AUC / RMSE).", POSITIVE)
    patience: int = setting(3, "Epochs without a better validation metric before stopping; best weights kept.",
        NON_NEGATIVE)
    model: str | None = setting(None,
        "'dcn' (DCN-v2: cross layers + deep part over ids, content and user fields), 'deepfm' (the same fields), or "
        "'mf' (a biased matrix factorisation over user and item ids: mf_factors, mf_l2; cold items scored from "
        "content, mf_content); null = by feedback (RankingConfig.ranker): mf on ratings, where it beat dcn by "
        "0.017-0.024 test RMSE on both MovieLens sets, 3 of 3 seeds each, dcn otherwise (implicit feedback). "
        "Measured in benchmarks/README.md ('Quality').")
    mf_factors: int = setting(64, "ranking.model = mf: size of the user and item factors.", POSITIVE)
    mf_content: bool = setting(True,
        "ranking.model = mf: an item without training ratings (a cold item) is scored from its content and categorical "
        "fields (and the users table's fields on the user's side), learnt in a second stage against the frozen id "
        "factors, so warm items keep the ids-only scores; false: it is scored mu + b_u. Measured in "
        "benchmarks/README.md ('Cold items in the rating model').")
    mf_content_hidden: int = setting(256,
        "ranking.model = mf with mf_content: units of the ReLU layer between each modality and its factor and bias "
        "(0: a linear map).", NON_NEGATIVE)
    mf_l2: float = setting(0.05,
        "ranking.model = mf: weight of the per-rating L2 penalty on each example's factors and biases.", NON_NEGATIVE)
    cross_layers: int = setting(2, "Number of DCN-v2 cross layers (ranking.model = dcn).", NON_NEGATIVE)
    cross_projection_dim: int = setting(0, "low-rank cross layers when > 0 (DCN-v2's DCN-Mix-free variant)",
        NON_NEGATIVE)
    user_features: bool = setting(True,
        "With a users table: its categorical columns and its numeric ones (manifest user_numeric) become DeepFM/DCN "
        "fields, looked up by user inside the model.")
    history_length: int = setting(0,
        "Training items per user (a random sample of at most this many) in a history field: the mean of their "
        "embeddings, crossed with the candidate item (SVD++; the candidate itself left out); 0 = no history field. 200 "
        "lowered test RMSE by 0.003 on ml-latest-small (3 of 3 seeds) and 0.002 on MovieLens-100K (1 of 3) at 2-4x the "
        "training time (benchmarks/README.md, 'Quality').", NON_NEGATIVE)

    def ranker(self, rating: bool) -> str:
        """``model``, or when null its default for the feedback: ``mf`` on ratings, ``dcn`` otherwise.
        Measured with 3 seeds (benchmarks/README.md, "A plain biased matrix factorisation beats
        tfmmrec's ranker"): on ratings mf lowered test RMSE from 0.8614 to 0.8448 on ml-latest-small
        and from 0.9311 to 0.9076 on MovieLens-100K. Implicit feedback keeps dcn: mf has not been
        measured there (the demo's AUC, cold items included)."""
        return self.model if self.model is not None else ("mf" if rating else "dcn")

    def deep_dropout(self, rating: bool) -> float:
        """``dropout``, or when null its default for the feedback. Measured with 3 seeds
        (benchmarks/README.md, "Quality"): on ratings 0.5 against 0.1 lowered test RMSE by 0.009 on
        MovieLens-100K and 0.008 on ml-latest-small; on the demo's implicit feedback it cost 0.006 AUC."""
        if self.dropout is not None:
            return self.dropout
        return 0.5 if rating else 0.1


@dataclass
class MultitaskConfig:
    """Retrieval + ranking head + item-category classification from content on shared towers
    (``tfmmrec.models.multitask``), trained as an extra retrieval variant when ``enabled``.
    Towers, negatives and optimiser come from ``retrieval``."""

    enabled: bool = setting(False, "Train the multitask model too and report it as retrieval variant 'multitask'.")
    retrieval_weight: float = setting(1.0, "Loss weight of the retrieval task.")
    ranking_weight: float = setting(1.0,
        "Loss weight of the ranking head (BCE on positives vs sampled items, MSE on ratings).")
    category_weight: float = setting(1.0, "Loss weight of the item-category classifier fed by fused content only.")
    category_field: int = setting(0, "index into the manifest's categorical columns", NON_NEGATIVE)
    ranking_hidden: list[int] = setting([64], "Hidden units of the ranking head's MLP.", POSITIVE)


@dataclass
class PretrainConfig:
    """Self-supervised cross-modal alignment (``tfmmrec pretrain``, see ``encoders.align``).

    ``enabled``: add each item's aligned joint embedding as one more content modality
    (``aligned``) for the models; ``only_aligned``: give the models that one instead of the
    per-modality embeddings. The rest shapes the small projection heads trained with a
    CLIP-style InfoNCE loss over the frozen embeddings of all catalog items."""

    enabled: bool = setting(False, "add the aligned joint embedding as one more content modality, 'aligned'")
    only_aligned: bool = setting(False, "give the models the aligned embedding instead of the per-modality ones")
    dim: int = setting(64, "width of the aligned joint embedding", POSITIVE)
    hidden: int = setting(128, "hidden units of each modality's projection head", POSITIVE)
    temperature: float = setting(0.1, "InfoNCE softmax temperature", POSITIVE)
    epochs: int = setting(40, "passes over the catalog", POSITIVE)
    batch_size: int = setting(256, "items per contrastive batch (batch_size - 1 negatives each)", POSITIVE)
    learning_rate: float = setting(0.002, "Adam learning rate of the projection heads", POSITIVE)
    seed: int = setting(0, "initialisation and batch order of the alignment")


@dataclass
class DataConfig:
    """Loading the dataset (``tfmmrec.data.loader``)."""

    on_unknown_items: str = setting("error",
        "error | drop: interactions whose item or user id is unknown stop the run, or are dropped and counted.")


@dataclass
class TrainConfig:
    """Which models a run trains, where, and what it keeps (``tfmmrec.train``)."""

    id_only: bool = setting(True, "Also train the ID-only retrieval baseline next to the multimodal model.")
    ranking: bool = setting(True, "Also train the ranker (ranking.model).")
    distribute: str = setting("auto",
        "auto | one_device | mirrored | multi_worker: the tf.distribute strategy; auto picks MirroredStrategy when "
        "several GPUs are visible.")
    backup_every_steps: int = setting(200,
        "Fault tolerance: back up training state to RUN_DIR/backup every N steps (and per epoch), so a killed run "
        "resumes when the same command is rerun; 0 turns backups off.", NON_NEGATIVE)
    save_weights: bool = setting(True,
        "Save model weights to RUN_DIR/weights, so `tfmmrec evaluate RUN_DIR` can re-evaluate the run (e.g. with "
        "other evaluate.ks) and `tfmmrec export RUN_DIR` re-export it without retraining.")


@dataclass
class EvaluateConfig:
    """The test-split metrics (``tfmmrec.evaluate``)."""

    ks: list[int] = setting([10, 20, 50], "Cutoffs K of Recall@K / NDCG@K in the evaluation.", POSITIVE)


@dataclass
class ExportConfig:
    """The SavedModels of a run (``tfmmrec.export``)."""

    top_k: int = setting(100, "K of the exported retrieval model's top-K answer.", POSITIVE)
    index: str = setting("brute_force",
        "brute_force | scann (approximate; needs the scann extra, not the stock TF Serving).")


@dataclass
class TensorBoardConfig:
    """TensorBoard logs of a run, under ``RUN_DIR/<log_dir>/<model>`` (see ``tfmmrec.train.tensorboard``)."""

    enabled: bool = setting(True, "Write TensorBoard logs during `train`.")
    log_dir: str = setting("tensorboard", "Log directory, relative to the run directory (or absolute).")
    histograms: bool = setting(True, "Per-epoch histograms of user/item embedding norms.")
    projector: bool = setting(True,
        "Item embeddings for the embedding projector, with metadata and a thumbnail sprite.")
    projector_max_items: int = setting(2000, "At most this many items (the first rows) in the projector.", POSITIVE)
    sprite_size: int = setting(32, "Edge in pixels of each item thumbnail in the projector sprite.", POSITIVE)
    metadata_columns: list[str] = section(list,
        "Item columns shown in the projector; empty = item id, the first text column (title) and the categorical "
        "columns.")


# What moved validation recall on ml-latest-small and the demo (benchmarks/README.md, "Quality"): the
# temperature most (its best differs by dataset: 0.15 on ml-latest-small, 0.2 on the demo and
# MovieLens-100K; 0.05 and 0.3 far below), then the learning rate. Each list holds the default.
# (No id_dropout: the default multimodal model, warm_cold, does not use it.)
DEFAULT_TUNE_SPACE = {
    "retrieval.temperature": [0.1, 0.15, 0.2, 0.3],
    "retrieval.learning_rate": [0.005, 0.01, 0.02],
    "retrieval.embedding_dim": [64, 128],
}


@dataclass
class TuneConfig:
    """keras-tuner search (``tfmmrec tune``); ``space`` maps a config key to the values to try."""

    task: str = setting("retrieval",
        "retrieval (objective: validation Recall@objective_k) | ranking (validation AUC, or -RMSE for ratings).")
    variant: str = setting("multimodal", "retrieval only: multimodal | id_only model.")
    algorithm: str = setting("random",
        "grid | random | bayesian (keras-tuner oracles; bayesian needs scipy: pip install keras-tuner[bayesian]).")
    max_trials: int = setting(8, "Number of trials (configurations); a resumed search counts trials already done.",
        POSITIVE)
    objective_k: int = setting(20, "K of the validation Recall@K objective.", POSITIVE)
    epochs: int | None = setting(None, "Epochs per trial; null = the task's configured epochs.")
    directory: str = setting("tune",
        "Tuner state, trials and HParams logs, relative to the output directory; the search resumes from it.")
    space: dict[str, list[Any]] = setting(DEFAULT_TUNE_SPACE,
        "Config key -> list of values to try, e.g. {retrieval.learning_rate: [0.001, 0.01]}; any key of this config "
        "can be tuned.")


@dataclass
class LimitsConfig:
    """Bounds on untrusted input (catalog files and serving requests), so no single file or request
    can take the machine's memory or time. A catalog file over a limit masks that modality for
    that item and is counted in the decode report; a serving request over one is refused with an
    error naming the input."""

    max_file_bytes: int = setting(64 * 2**20, "bytes of one media file (64 MiB), checked before it is opened", POSITIVE)
    max_image_pixels: int = setting(40_000_000, "width x height read from the image header, checked before decoding",
        POSITIVE)
    max_audio_seconds: float = setting(600.0, "length of one audio clip (from its header) before it is decoded")
    max_text_chars: int = setting(20_000, "characters of one item's text; longer text is refused, not truncated",
        POSITIVE)


@dataclass
class RunConfig:
    """A whole run: data split, encoders, models, evaluation and export."""

    seed: int = setting(0, "Global seed (weights init, shuffling, sampled negatives).")
    data: DataConfig = section(DataConfig, "Loading the dataset (tfmmrec.data.loader).")
    split: SplitConfig = section(SplitConfig, "How interactions are split into train/valid/test (tfmmrec.data.splits).")
    encoders: dict[str, str] = setting({},
        "Modality -> encoder name (tfmmrec.encoders.registry); an empty mapping uses the built-in compact encoders, "
        "the offline default.")
    pretrain: PretrainConfig = section(PretrainConfig,
        "Self-supervised cross-modal alignment (tfmmrec pretrain, tfmmrec.encoders.align).")
    retrieval: RetrievalConfig = section(RetrievalConfig, "Two-tower retrieval model (TFRS) and its training.")
    ranking: RankingConfig = section(RankingConfig, "Ranking model (DCN-v2 or DeepFM) and its training.")
    multitask: MultitaskConfig = section(MultitaskConfig,
        "Retrieval + ranking head + item-category classification from content on shared towers "
        "(tfmmrec.models.multitask); an extra retrieval variant when enabled.")
    train: TrainConfig = section(TrainConfig, "Which models a run trains, where, and what it keeps.")
    evaluate: EvaluateConfig = section(EvaluateConfig, "The test-split metrics (tfmmrec.evaluate).")
    export: ExportConfig = section(ExportConfig, "The SavedModels of a run (tfmmrec.export).")
    tensorboard: TensorBoardConfig = section(TensorBoardConfig,
        "TensorBoard logs (tfmmrec.train.tensorboard); `tensorboard --logdir RUN_DIR/tensorboard`.")
    tune: TuneConfig = section(TuneConfig, "keras-tuner search (`tfmmrec tune`, tfmmrec.train.tune).")
    limits: LimitsConfig = section(LimitsConfig,
        "Bounds on untrusted input: catalog files over a limit are masked and reported, serving requests over one are"
        " refused naming the input.")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self, path: str | Path | None = None) -> str:
        text = yaml.safe_dump(self.to_dict(), sort_keys=False)
        if path is not None:
            Path(path).write_text(text)
        return text

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> RunConfig:
        return _build(cls, raw or {}, "")

    @classmethod
    def from_yaml(cls, path: str | Path, *, preset: str | None = None) -> RunConfig:
        """The config in the YAML file ``path``, on top of the ``PRESETS`` entry ``preset`` (if any):
        a key the file sets wins, the preset fills the keys it does not."""
        return cls.from_dict(_merged(preset_keys(preset), _read_yaml(path)))

    @classmethod
    def from_preset(cls, name: str) -> RunConfig:
        """The defaults with the keys of preset ``name`` (``PRESETS``)."""
        return cls.from_dict(preset_keys(name))

    def with_overrides(self, assignments: list[str]) -> RunConfig:
        """Apply ``key.sub=value`` overrides (values parsed as YAML)."""
        raw = self.to_dict()
        for assignment in assignments:
            key, sep, value = assignment.partition("=")
            if not sep:
                raise ConfigError(f"override {assignment!r} is not of the form key=value")
            node = raw
            parts = key.split(".")
            for part in parts[:-1]:
                if not isinstance(node.get(part), dict):
                    raise ConfigError(f"{key}: {part!r} is not a section")
                node = node[part]
            node[parts[-1]] = _override_value(value)
        return RunConfig.from_dict(raw)


# Named configs: the keys they change from the defaults. ``tfmmrec demo`` runs with "demo";
# ``--preset NAME`` starts any run command from one (``--config`` and ``--set`` apply on top).
PRESETS: dict[str, dict[str, Any]] = {
    # The demo catalog's point is new items: hold out whole items (cold start) so the printed
    # table has cold-item columns; on ``auto`` it would be a random split with no cold item.
    "demo": {"split": {"strategy": "cold_start"}},
}


def preset_keys(name: str | None) -> dict[str, Any]:
    """A copy of preset ``name``'s keys (``{}`` for None)."""
    if name is None:
        return {}
    if name not in PRESETS:
        raise ConfigError(f"preset {name!r}: unknown; known presets: {sorted(PRESETS)}")
    return copy.deepcopy(PRESETS[name])


def _read_yaml(path: str | Path) -> dict[str, Any]:
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except yaml.YAMLError as err:  # the CLI prefixes the file name
        raise ConfigError(f"not valid YAML: {' '.join(str(err).split())}") from None
    if raw is not None and not isinstance(raw, dict):
        raise ConfigError(f"expected a mapping of config keys at the top level, got {type(raw).__name__}")
    return raw or {}


def _merged(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """``top`` over ``base``, section by section."""
    out = dict(base)
    for key, value in top.items():
        out[key] = _merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _override_value(text: str) -> Any:
    """A ``--set`` value parsed as YAML, except that ``1e-5`` is a number (YAML 1.1 reads
    exponents without a dot as strings, a surprise on a command line)."""
    value = yaml.safe_load(text)
    if isinstance(value, str):
        try:
            return float(value) if value.strip().lower() not in ("nan", "inf", "-inf", "infinity") else value
        except ValueError:
            return value
    return value


def _build(cls: type, raw: Any, path: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"{path or 'config'}: expected a mapping, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - fields)
    moved = [k for k in unknown if cls is RunConfig and k in MOVED]
    if moved:
        raise ConfigError(f"{moved[0]}: this key moved to {MOVED[moved[0]]}")
    if unknown:
        raise ConfigError(f"{path + '.' if path else ''}{unknown[0]}: unknown key; known keys: {sorted(fields)}")
    ranges = {f.name: f.metadata.get("within") for f in dataclasses.fields(cls)}
    kwargs = {}
    for name, value in raw.items():
        key = f"{path}.{name}" if path else name
        kwargs[name] = _coerce(hints[name], value, key)
        if ranges[name] is not None:
            text, ok = ranges[name]
            numbers = kwargs[name] if isinstance(kwargs[name], list) else [kwargs[name]]
            for i, v in enumerate(numbers):
                if isinstance(v, (int, float)) and not ok(v):
                    where = f"{key}[{i}]" if isinstance(kwargs[name], list) else key
                    raise ConfigError(f"{where}: must be {text}, got {v!r}")
    return cls(**kwargs)


def _coerce(hint: Any, value: Any, path: str) -> Any:
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, path)
    origin = typing.get_origin(hint)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path}: expected a list, got {value!r}")
        (inner,) = typing.get_args(hint)[:1]
        return [_coerce(inner, v, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping, got {value!r}")
        _, inner = typing.get_args(hint)
        return {k: _coerce(inner, v, f"{path}.{k}") for k, v in value.items()}
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(hint):
            if option is type(None) and value is None:
                return None
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (int, float, str, bool) and not (isinstance(value, hint) and not
                                                (hint is int and isinstance(value, bool))):
        raise ConfigError(f"{path}: expected {hint.__name__}, got {value!r}")
    return value
