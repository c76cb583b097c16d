"""Clients for TF Serving: REST (standard library ``urllib``) and gRPC (tensorflow-serving-api).

Both retry what is worth retrying -- connection failures, timeouts, HTTP 429/5xx, gRPC
UNAVAILABLE / DEADLINE_EXCEEDED / RESOURCE_EXHAUSTED -- with exponential backoff, and fail
at once on what is not (a 400 is a bad request: sending it again cannot help). Every failure
is a ``ServingError`` that names the model, the signature and the server's own message.

Example::

    client = RestClient("http://localhost:8501", "demo_retrieval")
    client.recommend(["u0042"], k=10)                  # -> {"item_ids": [[...]], "scores": [[...]], ...}
    client.predict({"user_id": ["u0042"]}, signature="embed_query")
"""
from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

RETRYABLE_HTTP = {429, 500, 502, 503, 504}


class ServingError(RuntimeError):
    """A request that failed for good; ``status`` is the HTTP status or gRPC code name, if any."""

    def __init__(self, message: str, status: int | str | None = None, retryable: bool = False) -> None:
        super().__init__(message)
        self.status, self.retryable = status, retryable


@dataclass
class RetryPolicy:
    """``attempts`` tries in all; waits ``backoff * 2**i`` seconds (capped at ``max_backoff``) between
    them, with ``sleep`` (e.g. an event loop's, or one that records the waits)."""

    attempts: int = 3
    backoff: float = 0.1
    max_backoff: float = 2.0
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False, compare=False)

    def run(self, call: Callable[[], Any]) -> Any:
        for attempt in range(self.attempts):
            try:
                return call()
            except ServingError as e:
                if not e.retryable or attempt == self.attempts - 1:
                    if e.retryable:
                        raise ServingError(f"{e} (gave up after {self.attempts} attempts)", e.status,
                                           retryable=True) from e
                    raise
                self.sleep(min(self.backoff * 2 ** attempt, self.max_backoff))
        raise AssertionError("unreachable")


def to_json_value(value: Any) -> Any:
    """Lists/arrays/bytes -> JSON values in TF Serving's convention (bytes as ``{"b64": ...}``)."""
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, bytes):
        return {"b64": base64.b64encode(value).decode("ascii")}
    if isinstance(value, (list, tuple)):
        return [to_json_value(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


class RestClient:
    """TF Serving REST client for one model (optionally a fixed version or label)."""

    def __init__(self, url: str, model: str, *, version: int | None = None, label: str | None = None,
                 timeout: float = 5.0, retry: RetryPolicy | None = None) -> None:
        if version is not None and label is not None:
            raise ValueError("give a version or a label, not both")
        self.url, self.model, self.timeout = url.rstrip("/"), model, timeout
        self.retry = retry or RetryPolicy()
        self.path = f"/v1/models/{model}" + (f"/versions/{version}" if version is not None else "") + (
            f"/labels/{label}" if label is not None else "")

    def _request(self, path: str, body: dict[str, Any] | None, what: str) -> dict[str, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method="GET" if body is None else "POST",
                                     headers={"Content-Type": "application/json"})

        def call() -> dict[str, Any]:
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    return json.loads(resp.read())
            except urllib.error.HTTPError as e:
                try:
                    detail = json.loads(e.read()).get("error", "")
                except (ValueError, AttributeError):
                    detail = ""
                raise ServingError(f"{what} on {self.url}{path} failed: HTTP {e.code}: {detail or e.reason}",
                                   status=e.code, retryable=e.code in RETRYABLE_HTTP) from None
            except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
                reason = getattr(e, "reason", e)
                raise ServingError(f"{what} on {self.url}{path} failed: {reason} (timeout {self.timeout}s)",
                                   retryable=True) from None
        return self.retry.run(call)

    def status(self) -> dict[str, Any]:
        """``GET /v1/models/NAME``: the versions and their states (the readiness probe's URL)."""
        return self._request(self.path, None, f"status of {self.model}")

    def metadata(self) -> dict[str, Any]:
        return self._request(self.path + "/metadata", None, f"metadata of {self.model}")

    def predict(self, inputs: dict[str, Any], signature: str = "serving_default",
                columnar: bool = True) -> dict[str, Any]:
        """Columnar by default (``{"inputs": ...}`` -> ``outputs``); ``columnar=False`` sends rows."""
        what = f"predict {self.model}/{signature}"
        if columnar:
            body = {"signature_name": signature, "inputs": {k: to_json_value(v) for k, v in inputs.items()}}
            out = self._request(self.path + ":predict", body, what)["outputs"]
            return out if isinstance(out, dict) else {"output": out}
        values = {k: to_json_value(v) for k, v in inputs.items()}
        n = {len(v) for v in values.values()}
        if len(n) != 1:
            raise ValueError(f"row format needs inputs with one batch size; got {sorted(n)}")
        rows = [{k: v[i] for k, v in values.items()} for i in range(n.pop())]
        return {"predictions": self._request(self.path + ":predict",
                                             {"signature_name": signature, "instances": rows}, what)["predictions"]}

    def recommend(self, user_ids: list[str], *, k: int | None = None, recent_item_ids: list[list[str]] | None = None,
                  exclude_item_ids: list[list[str]] | None = None, new_items_only: bool = False) -> dict[str, Any]:
        """Top-K for each user (the retrieval export's ``serving_default``; with ``new_items_only``
        its ``recommend_new_items``: among items without training interactions); lists are padded with ""."""
        inputs: dict[str, Any] = {"user_id": list(user_ids)}
        if k is not None:
            inputs["k"] = [int(k)]
        for name, lists in (("recent_item_ids", recent_item_ids), ("exclude_item_ids", exclude_item_ids)):
            if lists is not None:
                width = max(1, max(len(x) for x in lists))
                inputs[name] = [list(x) + [""] * (width - len(x)) for x in lists]
        return self.predict(inputs, "recommend_new_items" if new_items_only else "serving_default")


class GrpcClient:
    """TF Serving gRPC client (PredictionService) for one model, with the same retry policy."""

    RETRYABLE = {"UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED"}

    def __init__(self, target: str, model: str, *, version: int | None = None, label: str | None = None,
                 timeout: float = 5.0, retry: RetryPolicy | None = None, channel: Any = None) -> None:
        import grpc
        from tensorflow_serving.apis import prediction_service_pb2_grpc

        self.model, self.version, self.label, self.timeout = model, version, label, timeout
        self.retry = retry or RetryPolicy()
        self.channel = channel or grpc.insecure_channel(target)
        self.stub = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
        self.target = target

    def build_request(self, inputs: dict[str, Any], signature: str = "serving_default") -> Any:
        """A ``PredictRequest``: strings and bytes as DT_STRING, ints as DT_INT32, floats as DT_FLOAT."""
        import tensorflow as tf
        from tensorflow_serving.apis import predict_pb2

        request = predict_pb2.PredictRequest()
        request.model_spec.name = self.model
        request.model_spec.signature_name = signature
        if self.version is not None:
            request.model_spec.version.value = self.version
        if self.label is not None:
            request.model_spec.version_label = self.label
        for key, value in inputs.items():
            array = np.asarray(value)
            if array.dtype.kind in "USO":
                flat = [v.encode("utf-8") if isinstance(v, str) else bytes(v) for v in array.reshape(-1).tolist()]
                proto = tf.make_tensor_proto(flat, dtype=tf.string, shape=array.shape)
            elif array.dtype.kind in "iu":
                proto = tf.make_tensor_proto(array.astype(np.int32))
            else:
                proto = tf.make_tensor_proto(array.astype(np.float32))
            request.inputs[key].CopyFrom(proto)
        return request

    def predict(self, inputs: dict[str, Any], signature: str = "serving_default") -> dict[str, np.ndarray]:
        import grpc
        import tensorflow as tf

        request = self.build_request(inputs, signature)

        def call() -> Any:
            try:
                return self.stub.Predict(request, timeout=self.timeout)
            except grpc.RpcError as e:
                code = e.code().name if hasattr(e, "code") else "UNKNOWN"
                details = e.details() if hasattr(e, "details") else str(e)
                raise ServingError(f"predict {self.model}/{signature} on {self.target} failed: {code}: {details}",
                                   status=code, retryable=code in self.RETRYABLE) from None
        response = self.retry.run(call)
        return {k: tf.make_ndarray(v) for k, v in response.outputs.items()}
