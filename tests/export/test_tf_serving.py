"""TF Serving's side files parse as the protos TF Serving reads them into."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from google.protobuf import (
    descriptor_pb2,
    descriptor_pool,
    message_factory,
    text_format,
    wrappers_pb2,  # noqa: F401  (registers wrappers.proto in the default pool)
)
from tensorflow_serving.config import model_server_config_pb2

from tfmmrec.export.tf_serving import models_config_text, write_serving_configs

DEPLOY = Path(__file__).parents[2] / "deploy"


def _proto_class(name: str, fields: dict[str, str]) -> type:
    """A message with TF Serving's field names and types (tensorflow-serving-api does not ship
    session_bundle_config.proto / monitoring_config.proto), so text_format.Parse rejects any typo."""
    file = descriptor_pb2.FileDescriptorProto(name=f"tfmmrec_test_{name}.proto", package="tfmmrec_test",
                                              dependency=["google/protobuf/wrappers.proto"], syntax="proto3")
    msg = file.message_type.add(name=name)
    sub = {}
    for number, (field, kind) in enumerate(fields.items(), start=1):
        entry = msg.field.add(name=field, number=number, label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL)
        if kind.startswith("."):
            entry.type, entry.type_name = descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE, kind
        else:
            sub[field] = kind
            entry.type = getattr(descriptor_pb2.FieldDescriptorProto, f"TYPE_{kind.upper()}")
    pool = descriptor_pool.Default()
    try:
        pool.FindMessageTypeByName(f"tfmmrec_test.{name}")
    except KeyError:
        pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"tfmmrec_test.{name}"))


BatchingParameters = _proto_class("BatchingParameters", {
    "max_batch_size": ".google.protobuf.Int64Value", "batch_timeout_micros": ".google.protobuf.Int64Value",
    "thread_pool_name": ".google.protobuf.StringValue", "num_batch_threads": ".google.protobuf.Int64Value",
    "max_enqueued_batches": ".google.protobuf.Int64Value", "pad_variable_length_inputs": "bool"})
PrometheusConfig = _proto_class("PrometheusConfig", {"enable": "bool", "path": "string"})
MonitoringConfig = _proto_class("MonitoringConfig", {"prometheus_config": ".tfmmrec_test.PrometheusConfig"})


def test_models_config_serves_the_labelled_versions(tmp_path: Path) -> None:
    for name, versions in (("shop_retrieval", [1, 2]), ("shop_ranking", [1])):
        for v in versions:
            (tmp_path / name / str(v)).mkdir(parents=True)
    paths = write_serving_configs(tmp_path, ["shop_retrieval", "shop_ranking"])
    config = text_format.Parse(paths["models.config"].read_text(), model_server_config_pb2.ModelServerConfig())
    by_name = {c.name: c for c in config.model_config_list.config}
    assert by_name["shop_retrieval"].base_path == "/models/shop_retrieval"
    assert dict(by_name["shop_retrieval"].version_labels) == {"stable": 2}
    assert list(by_name["shop_retrieval"].model_version_policy.specific.versions) == [2]

    canary = models_config_text(tmp_path, ["shop_retrieval"], labels={"shop_retrieval": {"stable": 1, "canary": 2}})
    parsed = text_format.Parse(canary, model_server_config_pb2.ModelServerConfig()).model_config_list.config[0]
    assert dict(parsed.version_labels) == {"stable": 1, "canary": 2}
    assert list(parsed.model_version_policy.specific.versions) == [1, 2]
    with pytest.raises(ValueError, match="version 7"):
        models_config_text(tmp_path, ["shop_retrieval"], labels={"shop_retrieval": {"stable": 7}})

    batching = text_format.Parse(paths["batching.config"].read_text(), BatchingParameters())
    assert batching.max_batch_size.value == 64 and batching.batch_timeout_micros.value > 0


def test_deploy_files_parse() -> None:
    text_format.Parse((DEPLOY / "models.config").read_text(), model_server_config_pb2.ModelServerConfig())
    text_format.Parse((DEPLOY / "batching.config").read_text(), BatchingParameters())
    monitoring = text_format.Parse((DEPLOY / "monitoring.config").read_text(), MonitoringConfig())
    assert monitoring.prometheus_config.enable and monitoring.prometheus_config.path
    docs = list(yaml.safe_load_all((DEPLOY / "kubernetes" / "tfserving.yaml").read_text()))
    kinds = {d["kind"]: d for d in docs}
    assert set(kinds) == {"ConfigMap", "Deployment", "Service", "HorizontalPodAutoscaler"}
    container = kinds["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/v1/models/demo_retrieval"
    for key in ("models.config", "batching.config", "monitoring.config"):  # the ConfigMap holds the same files
        assert text_format.Parse(kinds["ConfigMap"]["data"][key], {
            "models.config": model_server_config_pb2.ModelServerConfig, "batching.config": BatchingParameters,
            "monitoring.config": MonitoringConfig}[key]())
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    assert "../saved_models:/models:ro" in compose["services"]["tfserving"]["volumes"]
