"""Serving modules with explicit, named signatures (see ``export.retrieval`` and ``export.ranking``
for the signatures and their documented fallbacks); kept as the historical import path."""
from __future__ import annotations

from tfmmrec.export.ranking import RankingServing, export_ranking
from tfmmrec.export.retrieval import QueryEncoder, RetrievalServing, export_retrieval

__all__ = ["QueryEncoder", "RankingServing", "RetrievalServing", "export_ranking", "export_retrieval"]
