"""``tfmmrec reindex`` and ``tfmmrec export``: thin commands over the export API."""
from __future__ import annotations

from pathlib import Path

from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from tfmmrec.cli import main


def test_export_writes_configs_with_a_canary_label(tmp_path: Path, capsys) -> None:
    base = tmp_path / "saved_models"
    for name, versions in (("shop_retrieval", [1, 2]), ("shop_ranking", [1])):
        for v in versions:
            (base / name / str(v)).mkdir(parents=True)
    assert main(["serving-config", str(base),
                 "--label", "shop_retrieval:stable=1", "--label", "shop_retrieval:canary=2"]) == 0
    config = text_format.Parse((base / "models.config").read_text(), model_server_config_pb2.ModelServerConfig())
    by_name = {c.name: c for c in config.model_config_list.config}
    assert set(by_name) == {"shop_retrieval", "shop_ranking"}
    assert dict(by_name["shop_retrieval"].version_labels) == {"stable": 1, "canary": 2}
    assert dict(by_name["shop_ranking"].version_labels) == {"stable": 1}
    assert (base / "batching.config").is_file()

    assert main(["serving-config", str(base), "--label", "shop_retrieval-canary"]) == 2
    assert "NAME:LABEL=VERSION" in capsys.readouterr().err


def test_reindex_without_an_export_is_a_clear_error(demo_dir: Path, tmp_path: Path, capsys) -> None:
    assert main(["reindex", str(demo_dir), "--model-dir", str(tmp_path / "nothing_here")]) == 2
    assert "no version to reindex from" in capsys.readouterr().err
