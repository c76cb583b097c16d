"""tfmmrec: multimodal recommendation with TensorFlow, TFRS and TF-Hub.

TFRS 0.7.7 and ``hub.KerasLayer`` need Keras 2 (``tf_keras``), while TF >= 2.16 makes
``tf.keras`` Keras 3. Setting ``TF_USE_LEGACY_KERAS=1`` before anything touches ``tf.keras``
selects Keras 2; it is set here, first thing. If your program touched ``tf.keras`` before
importing tfmmrec, set the variable yourself at the very top (or in the shell):
``import os; os.environ["TF_USE_LEGACY_KERAS"] = "1"``.

Then two environment guards (``_deps_check``): a scann built for another TensorFlow minor is
hidden from TFRS with a warning (it would break ``import tensorflow_recommenders``), and a
setuptools without ``pkg_resources`` (needed by tensorflow_hub) stops the import with the fix.
"""
from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from tfmmrec._deps_check import check_pkg_resources, guard_scann  # noqa: E402
from tfmmrec._keras_check import check_keras_version  # noqa: E402

check_keras_version()
check_pkg_resources()
guard_scann()  # before anything imports TFRS, which imports any installed scann

from tfmmrec.config import PretrainConfig, RankingConfig, RetrievalConfig, RunConfig, SplitConfig  # noqa: E402
from tfmmrec.data.demo import write_demo_catalog  # noqa: E402
from tfmmrec.data.loader import Dataset, load_dataset  # noqa: E402
from tfmmrec.data.manifest import DatasetError, Manifest, ModalitySpec  # noqa: E402
from tfmmrec.data.mmrec import import_mmrec  # noqa: E402
from tfmmrec.data.movielens import download_movielens_100k, import_movielens_100k, import_movielens_csv  # noqa: E402
from tfmmrec.data.splits import split_interactions  # noqa: E402
from tfmmrec.encoders.contracts import ContentEncoder  # noqa: E402
from tfmmrec.encoders.encode import ItemContent, encode_catalog, update_store  # noqa: E402
from tfmmrec.encoders.handles import EncoderUnavailable  # noqa: E402
from tfmmrec.encoders.registry import ENCODERS, EncoderSpec, get_encoder_spec, load_encoder, register_encoder  # noqa: E402
from tfmmrec.encoders.store import EmbeddingStore  # noqa: E402
from tfmmrec.evaluate.ranking import auc, rmse  # noqa: E402
from tfmmrec.evaluate.retrieval import evaluate_retrieval  # noqa: E402
from tfmmrec.evaluate.topk import factorized_top_k_accuracy  # noqa: E402
from tfmmrec.export.reindex import reindex  # noqa: E402
from tfmmrec.export.tf_serving import write_serving_configs  # noqa: E402
from tfmmrec.fusion import FUSIONS, make_fusion  # noqa: E402
from tfmmrec.fusion.concat import ConcatFusion  # noqa: E402
from tfmmrec.models.ranking import DeepFM  # noqa: E402
from tfmmrec.models.retrieval import TwoTowerRetrieval  # noqa: E402
from tfmmrec.models.towers import ItemTower, QueryTower  # noqa: E402
from tfmmrec.pipeline import RunResult, TuneResult, evaluate_run, run, tune  # noqa: E402
from tfmmrec.serving.client import GrpcClient, RestClient  # noqa: E402
from tfmmrec.train.distribute import resolve_strategy  # noqa: E402
from tfmmrec.train.finetune import FineTuneRetrieval  # noqa: E402
from tfmmrec.train.pretrain import add_aligned_modality, align_modalities  # noqa: E402
from tfmmrec.train.resume import ResumableBackup  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "ContentEncoder", "EmbeddingStore", "EncoderUnavailable", "FineTuneRetrieval", "PretrainConfig",
    "add_aligned_modality", "align_modalities", "get_encoder_spec", "register_encoder", "update_store",
    "ConcatFusion", "Dataset", "DatasetError", "DeepFM", "ENCODERS", "EncoderSpec", "ItemContent", "ItemTower",
    "Manifest", "ModalitySpec", "QueryTower", "RankingConfig", "RetrievalConfig", "RunConfig", "RunResult",
    "SplitConfig", "TwoTowerRetrieval", "auc", "download_movielens_100k", "encode_catalog", "evaluate_retrieval",
    "import_mmrec", "import_movielens_100k", "import_movielens_csv", "load_dataset", "load_encoder", "rmse", "run",
    "split_interactions", "write_demo_catalog",
    "TuneResult", "evaluate_run", "tune",
    "GrpcClient", "RestClient", "reindex", "write_serving_configs",
]
__all__ += ["FUSIONS", "factorized_top_k_accuracy", "make_fusion"]

from tfmmrec.config import MultitaskConfig  # noqa: E402
from tfmmrec.models.dcn import DCN  # noqa: E402
from tfmmrec.models.multitask import MultitaskRetrieval  # noqa: E402
from tfmmrec.models.tasks import RetrievalTask  # noqa: E402

__all__ += ["DCN", "MultitaskConfig", "MultitaskRetrieval", "RetrievalTask"]
__all__ += ["ResumableBackup", "resolve_strategy"]

from tfmmrec.config import LimitsConfig  # noqa: E402
from tfmmrec.data.paths import PathRefused, resolve_in_root  # noqa: E402
from tfmmrec.media.stream import DecodeReport  # noqa: E402

__all__ += ["DecodeReport", "LimitsConfig", "PathRefused", "resolve_in_root"]

from tfmmrec.export.versioning import ExportError  # noqa: E402
from tfmmrec.train.run_dir import RunDirError  # noqa: E402

__all__ += ["ExportError", "RunDirError"]

# Keras-style training and evaluation (``model.fit`` / ``model.evaluate``; notebooks/keras_fit.ipynb).
from tfmmrec.models.catalog_eval import CatalogEvaluation  # noqa: E402
from tfmmrec.models.features import ItemFeatureTable, build_user_features  # noqa: E402
from tfmmrec.pipeline import PreparedData, prepare_data, user_features  # noqa: E402
from tfmmrec.train.early_stopping import ValidationEarlyStopping  # noqa: E402
from tfmmrec.train.eval_inputs import ranking_eval_dataset, retrieval_eval_dataset  # noqa: E402
from tfmmrec.train.fit import build_ranking, build_retrieval, embed_all  # noqa: E402
from tfmmrec.train.inputs import ranking_dataset, retrieval_dataset  # noqa: E402

__all__ += ["CatalogEvaluation", "ItemFeatureTable", "PreparedData", "ValidationEarlyStopping", "build_ranking",
            "build_retrieval", "build_user_features", "embed_all", "prepare_data", "ranking_dataset",
            "ranking_eval_dataset", "retrieval_dataset", "retrieval_eval_dataset", "user_features"]

from tfmmrec.models.coldstart import WarmColdItemTower  # noqa: E402
from tfmmrec.train.coldstart import build_warm_cold, train_warm_cold  # noqa: E402

__all__ += ["WarmColdItemTower", "build_warm_cold", "train_warm_cold"]
