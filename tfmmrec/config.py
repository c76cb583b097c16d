"""Run configuration: dataclasses that round-trip through YAML.

Every knob of a run lives here with its default, so a run is reproduced from its
``config.yaml`` alone. Unknown keys and wrong types are rejected with the key's path.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A config key is unknown or has the wrong type; the message gives the key's path."""


@dataclass
class SplitConfig:
    """How interactions are split (see ``tfmmrec.data.splits``)."""

    strategy: str = "auto"
    valid_frac: float = 0.1
    test_frac: float = 0.1
    cold_item_frac: float = 0.1
    seed: int = 0


@dataclass
class RetrievalConfig:
    """Two-tower retrieval. Temperature and logQ defaults measured on the demo and MovieLens."""

    embedding_dim: int = 128
    fusion_hidden: list[int] = field(default_factory=lambda: [128])
    fusion_dropout: float = 0.0
    fusion: str = "concat"  # a key of tfmmrec.fusion.ITEM_TOWER_FUSIONS
    fusion_balance_weight: float = 0.0  # modality-balance regulariser (weighing fusions only); 0 = off
    temperature: float = 0.2
    logq: bool = True
    remove_accidental_hits: bool = True
    id_dropout: float = 0.3
    modality_dropout: float = 0.1
    learning_rate: float = 0.01
    batch_size: int = 1024
    epochs: int = 20  # a maximum: training stops early on the validation split (patience)
    # Model selection on the validation split after every epoch (tfmmrec.train.early_stopping):
    # stop after `patience` epochs without a better `validation_metric`, keep the best epoch.
    # `validation_objective` with warm/cold validation items: all, warm, cold or mean (of the two).
    patience: int = 3
    validation_metric: str = "recall@20"
    validation_objective: str = "all"
    validation_batch_size: int = 256  # validation users scored against the whole catalog at once
    # Negatives and loss (see tfmmrec.models.retrieval): extra uniformly sampled candidates per
    # batch (mixed negatives, logQ of the mixture), and the k hardest negatives only (0 = all).
    mixed_negatives: int = 0
    num_hard_negatives: int = 0
    # Query tower: the user's last `history_length` training items pooled through the item tower
    # ("mean", "attention" or "mean+attention"); the users table's categorical columns as features;
    # a share of training examples routed to the unknown-user row so it learns the generic user.
    history_length: int = 0
    history_pooling: str = "mean"
    user_features: bool = False
    user_id_dropout: float = 0.0
    # FGSM-style adversarial perturbation of content embeddings (0 = off) and its loss weight.
    adversarial_epsilon: float = 0.0
    adversarial_weight: float = 1.0
    # XLA-compile the training step: true / false, or null = auto: on from batch_size 4096
    # (train.fit.XLA_FROM_BATCH), where the in-batch softmax dominates and XLA repays its few seconds
    # of compilation; off below it and with history pooling (tf.unique does not compile).
    jit_compile: bool | None = None
    # Item representation of the multimodal model (tfmmrec.models.coldstart), measured in
    # benchmarks/README.md ("Quality"): "warm_cold" = a warm tower for items with training
    # interactions and a content tower aligned to it for the rest, one index (the default);
    # "joint" = one tower adding id and content embeddings with id_dropout (the first release).
    item_representation: str = "warm_cold"
    warm_tower: str = "id_content"  # warm_cold: "id_content" (ids + content, no ID dropout) or "id" (ids only)
    content_align_weight: float = 1.0  # warm_cold: weight of the content tower's 1 - cos alignment to the warm tower
    # warm_cold: the content tower's negatives include the batch items' warm embeddings, as in the served
    # index, where a cold item competes with warm items' warm embeddings.
    content_warm_negatives: bool = True
    # warm_cold: candidates of c in g(n) = n / (n + c), the warm tower's share for an item with n training
    # interactions (0: warm items are their warm embedding); the best on validation is kept.
    warm_blend_c: list[float] = field(default_factory=lambda: [0.0, 1.0, 3.0, 10.0])
    # warm_cold: candidates of the factor on content-only (cold) items' scores, calibrating them against warm
    # items' (1 = none); chosen on validation together with warm_blend_c.
    # The pair kept: see blend_objective.
    cold_scale: list[float] = field(default_factory=lambda: [1.0, 0.95, 0.9, 0.85, 0.8, 0.75, 0.7, 0.6, 0.5,
                                                             1.05, 1.1, 1.15, 1.2, 1.3])
    # warm_cold, cold-start split: "warm_first" (the best recall of all validation items among the pairs that
    # keep warm items within blend_warm_tolerance of the warm model alone), "all" (the best recall of all
    # validation items) or "balanced" (neither warm nor cold items pay for the other more than they must).
    # Measured in benchmarks/README.md ("Quality").
    blend_objective: str = "warm_first"
    blend_warm_tolerance: float = 0.05  # warm_first: warm items' allowed relative loss against the warm model alone


@dataclass
class RankingConfig:
    """DeepFM ranking. ``negatives``: sampled negatives per positive for implicit feedback.
    Training stops early on the validation split's AUC (RMSE for ratings), see ``patience``."""

    field_dim: int = 16
    hidden_units: list[int] = field(default_factory=lambda: [64, 32])
    dropout: float = 0.1
    id_dropout: float = 0.3
    negatives: int = 4
    learning_rate: float = 0.005
    batch_size: int = 1024
    epochs: int = 20
    patience: int = 3  # epochs without a better validation AUC / RMSE before stopping (best weights kept)
    # "dcn" (DCN-v2: cross layers + deep part) or "deepfm", over the same fields; dcn measured the lower
    # RMSE on ml-latest-small ratings (benchmarks/README.md, "Quality").
    model: str = "dcn"
    cross_layers: int = 2
    cross_projection_dim: int = 0  # low-rank cross layers when > 0 (DCN-v2's DCN-Mix-free variant)
    user_features: bool = True  # the users table's columns (if the dataset has one) as ranking fields


@dataclass
class MultitaskConfig:
    """Retrieval + ranking head + item-category classification from content on shared towers
    (``tfmmrec.models.multitask``), trained as an extra retrieval variant when ``enabled``.
    Towers, negatives and optimiser come from ``retrieval``."""

    enabled: bool = False
    retrieval_weight: float = 1.0
    ranking_weight: float = 1.0
    category_weight: float = 1.0
    category_field: int = 0  # index into the manifest's categorical columns
    ranking_hidden: list[int] = field(default_factory=lambda: [64])


@dataclass
class PretrainConfig:
    """Self-supervised cross-modal alignment (``tfmmrec pretrain``, see ``encoders.align``).

    ``enabled``: add each item's aligned joint embedding as one more content modality
    (``aligned``) for the models; ``only_aligned``: give the models that one instead of the
    per-modality embeddings. The rest shapes the small projection heads trained with a
    CLIP-style InfoNCE loss over the frozen embeddings of all catalog items."""

    enabled: bool = False  # add the aligned joint embedding as one more content modality, "aligned"
    only_aligned: bool = False  # give the models the aligned embedding instead of the per-modality ones
    dim: int = 64  # width of the aligned joint embedding
    hidden: int = 128  # hidden units of each modality's projection head
    temperature: float = 0.1  # InfoNCE softmax temperature
    epochs: int = 40  # passes over the catalog
    batch_size: int = 256  # items per contrastive batch (batch_size - 1 negatives each)
    learning_rate: float = 0.002  # Adam learning rate of the projection heads
    seed: int = 0  # initialisation and batch order of the alignment


@dataclass
class TrainingConfig:
    """What a run keeps besides its metrics. Saved weights let ``tfmmrec evaluate RUN_DIR``
    re-evaluate a run later (e.g. with other ``ks``) without retraining."""

    save_weights: bool = True


@dataclass
class TensorBoardConfig:
    """TensorBoard logs of a run, under ``RUN_DIR/<log_dir>/<model>`` (see ``tfmmrec.train.tensorboard``)."""

    enabled: bool = True
    log_dir: str = "tensorboard"
    histograms: bool = True
    projector: bool = True
    projector_max_items: int = 2000
    sprite_size: int = 32
    metadata_columns: list[str] = field(default_factory=list)


@dataclass
class TuneConfig:
    """keras-tuner search (``tfmmrec tune``); ``space`` maps a config key to the values to try."""

    task: str = "retrieval"
    variant: str = "multimodal"
    algorithm: str = "random"
    max_trials: int = 8
    objective_k: int = 20
    epochs: int | None = None
    directory: str = "tune"
    space: dict[str, list[Any]] = field(default_factory=lambda: {
        "retrieval.learning_rate": [0.001, 0.005, 0.02],
        "retrieval.temperature": [0.05, 0.1, 0.2, 0.5],
        "retrieval.embedding_dim": [32, 64, 128],
        "retrieval.id_dropout": [0.0, 0.3, 0.5],
    })


@dataclass
class LimitsConfig:
    """Bounds on untrusted input (catalog files and serving requests), so no single file or request
    can take the machine's memory or time. A catalog file over a limit masks that modality for
    that item and is counted in the decode report; a serving request over one is refused with an
    error naming the input."""

    max_file_bytes: int = 64 * 2**20  # bytes of one media file (64 MiB), checked before it is opened
    max_image_pixels: int = 40_000_000  # width x height read from the image header, checked before decoding
    max_audio_seconds: float = 600.0  # length of one audio clip (from its header) before it is decoded
    max_text_chars: int = 20_000  # characters of one item's text; longer text is refused, not truncated


@dataclass
class RunConfig:
    """A whole run: data split, encoders, models, evaluation and export."""

    split: SplitConfig = field(default_factory=SplitConfig)
    encoders: dict[str, str] = field(default_factory=dict)
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)
    ranking: RankingConfig = field(default_factory=RankingConfig)
    multitask: MultitaskConfig = field(default_factory=MultitaskConfig)
    train_id_only: bool = True
    train_ranking: bool = True
    ks: list[int] = field(default_factory=lambda: [10, 20, 50])
    export_top_k: int = 100
    export_index: str = "brute_force"  # or "scann" (approximate; needs the scann extra, not the stock TF Serving)
    on_unknown_items: str = "error"
    seed: int = 0
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    distribute: str = "auto"
    training: TrainingConfig = field(default_factory=TrainingConfig)
    tensorboard: TensorBoardConfig = field(default_factory=TensorBoardConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    # Fault tolerance: back up training state to RUN_DIR/backup every N steps (and per epoch), so a
    # killed run resumes when the same command is rerun; 0 turns backups off.
    backup_every_steps: int = 200

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
    def from_yaml(cls, path: str | Path) -> RunConfig:
        try:
            raw = yaml.safe_load(Path(path).read_text())
        except yaml.YAMLError as err:  # the CLI prefixes the file name
            raise ConfigError(f"not valid YAML: {' '.join(str(err).split())}") from None
        if raw is not None and not isinstance(raw, dict):
            raise ConfigError(f"expected a mapping of config keys at the top level, got {type(raw).__name__}")
        return cls.from_dict(raw or {})

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
    if unknown:
        raise ConfigError(f"{path + '.' if path else ''}{unknown[0]}: unknown key; known keys: {sorted(fields)}")
    kwargs = {}
    for name, value in raw.items():
        kwargs[name] = _coerce(hints[name], value, f"{path}.{name}" if path else name)
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
