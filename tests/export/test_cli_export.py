"""``tfmmrec reindex`` and ``tfmmrec export``: thin commands over the export API."""
from __future__ import annotations

import shutil
from pathlib import Path

from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from tfmmrec.cli import main


def test_reindex_then_export_configs_with_a_canary_label(trained_run, tmp_path: Path, capsys) -> None:
    base = tmp_path / "saved_models"
    source = trained_run.exports["retrieval"]
    shutil.copytree(source, base / "shop_retrieval" / "1")
    shutil.copytree(trained_run.exports["ranking"], base / "shop_ranking" / "1")

    assert main(["reindex", str(trained_run.dataset.root), "--model-dir", str(base / "shop_retrieval")]) == 0
    assert f"shop_retrieval/2: {len(trained_run.item_ids)} items kept, 0 added from content, 0 removed" \
        in capsys.readouterr().out
    assert (base / "shop_retrieval" / "2" / "saved_model.pb").is_file()

    assert main(["export", str(base), "--label", "shop_retrieval:stable=1", "--label", "shop_retrieval:canary=2"]) == 0
    config = text_format.Parse((base / "models.config").read_text(), model_server_config_pb2.ModelServerConfig())
    by_name = {c.name: c for c in config.model_config_list.config}
    assert set(by_name) == {"shop_retrieval", "shop_ranking"}
    assert dict(by_name["shop_retrieval"].version_labels) == {"stable": 1, "canary": 2}
    assert dict(by_name["shop_ranking"].version_labels) == {"stable": 1}
    assert (base / "batching.config").is_file()

    assert main(["export", str(base), "--label", "shop_retrieval-canary"]) == 2
    assert "NAME:LABEL=VERSION" in capsys.readouterr().err
    assert main(["reindex", str(trained_run.dataset.root), "--model-dir", str(tmp_path / "nothing_here")]) == 2
    assert "no version to reindex from" in capsys.readouterr().err
