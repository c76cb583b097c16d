"""SavedModels for TF Serving: versioned exports, signatures, index rebuilds, serving configs."""
from tfmmrec.export.build import export_ranking_model, export_retrieval_model, raw_content_inputs
from tfmmrec.export.ranking import RankingServing, export_ranking
from tfmmrec.export.reindex import ReindexResult, reindex
from tfmmrec.export.retrieval import QueryEncoder, RetrievalServing, export_retrieval
from tfmmrec.export.tf_serving import read_warmup_records, write_serving_configs
from tfmmrec.export.versioning import save_versioned

__all__ = ["QueryEncoder", "RankingServing", "ReindexResult", "RetrievalServing", "export_ranking",
           "export_ranking_model", "export_retrieval", "export_retrieval_model", "raw_content_inputs",
           "read_warmup_records", "reindex", "save_versioned", "write_serving_configs"]
