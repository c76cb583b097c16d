"""Evaluation, one module for every model: full-catalog retrieval metrics with seen items excluded
(``evaluate_retrieval``), the TFRS FactorizedTopK protocol for comparison with TFRS tutorials
(``factorized_top_k_accuracy``), and ranking metrics (``auc``, ``log_loss``, ``rmse``)."""
from tfmmrec.evaluate.ranking import auc, log_loss, rmse
from tfmmrec.evaluate.retrieval import DEFAULT_KS, METRICS, evaluate_retrieval
from tfmmrec.evaluate.topk import TFRS_KS, factorized_top_k_accuracy

__all__ = ["DEFAULT_KS", "METRICS", "TFRS_KS", "auc", "evaluate_retrieval", "factorized_top_k_accuracy", "log_loss",
           "rmse"]
