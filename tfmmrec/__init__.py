"""tfmmrec: multimodal recommendation with TensorFlow, TFRS and TF-Hub.

TFRS 0.7.7 and ``hub.KerasLayer`` need Keras 2 (``tf_keras``), while TF >= 2.16 makes
``tf.keras`` Keras 3. Setting ``TF_USE_LEGACY_KERAS=1`` before anything touches ``tf.keras``
selects Keras 2; it is set here, first thing. If your program touched ``tf.keras`` before
importing tfmmrec, set the variable yourself at the very top (or in the shell):
``import os; os.environ["TF_USE_LEGACY_KERAS"] = "1"``.

Then two environment guards (``_deps_check``): a scann built for another TensorFlow minor is
hidden from TFRS with a warning (it would break ``import tensorflow_recommenders``), and a
setuptools without ``pkg_resources`` (needed by tensorflow_hub) stops the import with the fix.

``import tfmmrec`` itself imports no TensorFlow: each public name below is imported from its
module when it is first used (PEP 562), so ``tfmmrec --help`` and ``tfmmrec config`` answer at once.
"""
from __future__ import annotations

import importlib
import os
from typing import Any

_TF_LOG_LEVEL_FROM_USER = "TF_CPP_MIN_LOG_LEVEL" in os.environ  # the CLI's --debug lowers only ours
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from tfmmrec._deps_check import check_pkg_resources, guard_scann  # noqa: E402
from tfmmrec._keras_check import check_keras_version  # noqa: E402

check_keras_version()  # tf.keras if TensorFlow is already imported, else TF_USE_LEGACY_KERAS
check_pkg_resources()
guard_scann()  # before anything imports TFRS, which imports any installed scann

__version__ = "0.1.0"

# Where each public name lives; ``from tfmmrec import X`` imports that module on first use.
_PUBLIC = {
    "tfmmrec.config": ["LimitsConfig", "MultitaskConfig", "PretrainConfig", "RankingConfig", "RetrievalConfig",
                       "RunConfig", "SplitConfig"],
    "tfmmrec.data.demo": ["write_demo_catalog"],
    "tfmmrec.data.loader": ["Dataset", "load_dataset"],
    "tfmmrec.data.manifest": ["DatasetError", "Manifest", "ModalitySpec"],
    "tfmmrec.data.mmrec": ["import_mmrec"],
    "tfmmrec.data.movielens": ["download_movielens_100k", "import_movielens_100k", "import_movielens_csv"],
    "tfmmrec.data.paths": ["PathRefused", "resolve_in_root"],
    "tfmmrec.data.splits": ["split_interactions"],
    "tfmmrec.encoders.align": ["add_aligned_modality", "align_modalities"],
    "tfmmrec.encoders.contracts": ["ContentEncoder"],
    "tfmmrec.encoders.encode": ["ItemContent", "encode_catalog", "update_store"],
    "tfmmrec.encoders.handles": ["EncoderUnavailable"],
    "tfmmrec.encoders.registry": ["ENCODERS", "EncoderSpec", "get_encoder_spec", "load_encoder", "register_encoder"],
    "tfmmrec.encoders.store": ["EmbeddingStore"],
    "tfmmrec.evaluate.protocol": ["embed_all"],
    "tfmmrec.evaluate.ranking": ["auc", "rmse"],
    "tfmmrec.evaluate.retrieval": ["evaluate_retrieval"],
    "tfmmrec.evaluate.topk": ["factorized_top_k_accuracy"],
    "tfmmrec.export.reindex": ["reindex"],
    "tfmmrec.export.tf_serving": ["write_serving_configs"],
    "tfmmrec.export.versioning": ["ExportError"],
    "tfmmrec.fusion": ["FUSIONS", "make_fusion"],
    "tfmmrec.fusion.concat": ["ConcatFusion"],
    "tfmmrec.media.stream": ["DecodeReport"],
    "tfmmrec.models.build": ["build_ranking", "build_retrieval", "build_warm_cold"],
    "tfmmrec.models.catalog_eval": ["CatalogEvaluation"],
    "tfmmrec.models.coldstart": ["WarmColdItemTower"],
    "tfmmrec.models.dcn": ["DCN"],
    "tfmmrec.models.features": ["ItemFeatureTable", "build_user_features"],
    "tfmmrec.models.finetune": ["FineTuneRetrieval"],
    "tfmmrec.models.mf": ["MatrixFactorization"],
    "tfmmrec.models.multitask": ["MultitaskRetrieval"],
    "tfmmrec.models.ranking": ["DeepFM"],
    "tfmmrec.models.retrieval": ["TwoTowerRetrieval"],
    "tfmmrec.models.tasks": ["RetrievalTask"],
    "tfmmrec.models.towers": ["ItemTower", "QueryTower"],
    "tfmmrec.pipeline": ["run"],
    "tfmmrec.serving.client": ["GrpcClient", "RestClient"],
    "tfmmrec.train.coldstart": ["train_warm_cold"],
    "tfmmrec.train.distribute": ["resolve_strategy"],
    "tfmmrec.train.early_stopping": ["ValidationEarlyStopping"],
    "tfmmrec.train.eval_inputs": ["ranking_eval_dataset", "retrieval_eval_dataset"],
    "tfmmrec.train.inputs": ["ranking_dataset", "retrieval_dataset"],
    "tfmmrec.train.prepare": ["PreparedData", "prepare_data", "user_features"],
    "tfmmrec.train.resume": ["ResumableBackup"],
    "tfmmrec.train.run_dir": ["RunDirError"],
    "tfmmrec.train.saved_run": ["RunResult", "evaluate_run"],
    "tfmmrec.train.tune": ["TuneResult", "tune"],
}
_MODULE_OF = {name: module for module, names in _PUBLIC.items() for name in names}

__all__ = [
    "ContentEncoder", "EmbeddingStore", "EncoderUnavailable", "FineTuneRetrieval", "PretrainConfig",
    "add_aligned_modality", "align_modalities", "get_encoder_spec", "register_encoder", "update_store",
    "ConcatFusion", "Dataset", "DatasetError", "DeepFM", "ENCODERS", "EncoderSpec", "ItemContent", "ItemTower",
    "Manifest", "ModalitySpec", "QueryTower", "RankingConfig", "RetrievalConfig", "RunConfig", "RunResult",
    "SplitConfig", "TwoTowerRetrieval", "auc", "download_movielens_100k", "encode_catalog", "evaluate_retrieval",
    "import_mmrec", "import_movielens_100k", "import_movielens_csv", "load_dataset", "load_encoder", "rmse", "run",
    "split_interactions", "write_demo_catalog", "TuneResult", "evaluate_run", "tune", "GrpcClient", "RestClient",
    "reindex", "write_serving_configs", "FUSIONS", "factorized_top_k_accuracy", "make_fusion", "DCN",
    "MatrixFactorization", "MultitaskConfig", "MultitaskRetrieval", "RetrievalTask", "ResumableBackup",
    "resolve_strategy", "DecodeReport",
    "LimitsConfig", "PathRefused", "resolve_in_root", "ExportError", "RunDirError", "CatalogEvaluation",
    "ItemFeatureTable", "PreparedData", "ValidationEarlyStopping", "build_ranking", "build_retrieval",
    "build_user_features", "embed_all", "prepare_data", "ranking_dataset", "ranking_eval_dataset",
    "retrieval_dataset", "retrieval_eval_dataset", "user_features", "WarmColdItemTower", "build_warm_cold",
    "train_warm_cold",
]


def __getattr__(name: str) -> Any:
    """Import a public name (or a submodule, e.g. ``tfmmrec.pipeline``) on first use."""
    if name.startswith("__"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = _MODULE_OF.get(name)
    if module is not None:
        value = getattr(importlib.import_module(module), name)
    else:
        try:
            value = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as err:
            if err.name != f"{__name__}.{name}":
                raise
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
