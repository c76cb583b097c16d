"""The REST client against a real local HTTP server running the exported SavedModel, its retry
and timeout behaviour against deliberately flaky servers, and gRPC request building."""
from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
import tensorflow as tf

from tfmmrec.serving import GrpcClient, RestClient, RetryPolicy, ServingError
from tfmmrec.serving.dev_server import serve


@pytest.fixture(scope="module")
def server(trained_run):
    base = trained_run.exports["retrieval"].parent.parent
    srv = serve(base, port=0)
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()


def test_rest_client_queries_the_served_model(server, trained_run) -> None:
    name = trained_run.exports["retrieval"].parent.name
    version = int(trained_run.exports["retrieval"].name)
    client = RestClient(server, name, timeout=30)
    status = client.status()["model_version_status"]
    assert status[0] == {"version": str(version), "state": "AVAILABLE", "status": {"error_code": "OK",
                                                                                  "error_message": ""}}
    assert "embed_item_content" in client.metadata()["metadata"]["signature_def"]["signature_def"]

    users = [str(u) for u in trained_run.data.user_ids[:3]]
    exclude = [[str(trained_run.item_ids[0])]] * 3
    got = client.recommend(users, k=4, exclude_item_ids=exclude)
    local = tf.saved_model.load(str(trained_run.exports["retrieval"])).signatures["serving_default"]
    want = local(user_id=tf.constant(users), recent_item_ids=tf.constant([[""]]),
                 exclude_item_ids=tf.constant(exclude), k=tf.constant([4]))
    assert got["item_ids"] == [[b.decode() for b in row] for row in want["item_ids"].numpy()]
    np.testing.assert_allclose(got["scores"], want["scores"].numpy(), rtol=1e-6)
    arrivals = client.recommend(users, k=4, new_items_only=True)  # the export's recommend_new_items
    want = tf.saved_model.load(str(trained_run.exports["retrieval"])).signatures["recommend_new_items"](
        user_id=tf.constant(users), recent_item_ids=tf.constant([[""]]), exclude_item_ids=tf.constant([[""]]),
        k=tf.constant([4]))
    assert arrivals["item_ids"] == [[b.decode() for b in row] for row in want["item_ids"].numpy()]
    trained = {str(trained_run.item_ids[r]) for r in trained_run.data.train_item_rows}
    assert not set(sum(arrivals["item_ids"], [])) & trained  # none of them has training interactions

    rows = client.predict({"user_id": users[:2]}, signature="embed_query", columnar=False)["predictions"]
    dim = trained_run.models["multimodal"].query_tower.embedding_dim
    assert [r["known"] for r in rows] == [True, True] and [len(r["embedding"]) for r in rows] == [dim, dim]
    by_label = RestClient(server, name, label="stable", timeout=30)
    by_label = by_label.recommend(users[:1], k=4, exclude_item_ids=exclude[:1])
    assert by_label["item_ids"] == got["item_ids"][:1]


def test_bad_requests_fail_at_once_with_the_servers_message(server, trained_run) -> None:
    name = trained_run.exports["retrieval"].parent.name
    waits: list[float] = []
    client = RestClient(server, name, timeout=30, retry=RetryPolicy(attempts=3, backoff=5.0, sleep=waits.append))
    with pytest.raises(ServingError, match=r"HTTP 400: .*k must be between 1 and 10") as err:
        client.recommend(["u0000"], k=50)
    assert err.value.status == 400 and not err.value.retryable
    assert waits == []  # not retried: no backoff wait
    with pytest.raises(ServingError, match="HTTP 404: .*no_such_model"):
        RestClient(server, "no_such_model", timeout=30).status()


class _Flaky(BaseHTTPRequestHandler):
    """Answers 503 to the first ``fail`` requests, then a fixed predict reply; or hangs (``delay``)."""

    fail, delay, hits = 0, 0.0, []

    def log_message(self, *args) -> None:
        pass

    def do_POST(self) -> None:  # noqa: N802
        self.hits.append(time.monotonic())
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        time.sleep(self.delay)
        status, body = (503, {"error": "overloaded"}) if len(self.hits) <= self.fail else (200, {"outputs": {"y": [1]}})
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def _flaky_server(**attrs):
    handler = type("Handler", (_Flaky,), {**attrs, "hits": []})
    srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, handler


def test_retries_with_backoff_then_succeeds_or_gives_up() -> None:
    srv, handler = _flaky_server(fail=2)
    try:
        url = f"http://127.0.0.1:{srv.server_address[1]}"
        waits: list[float] = []
        out = RestClient(url, "m", retry=RetryPolicy(attempts=3, backoff=0.2, sleep=waits.append)).predict({"x": [1]})
        assert out == {"y": [1]} and len(handler.hits) == 3
        assert waits == [0.2, 0.4]  # exponential backoff between the three attempts
        handler.hits.clear()
        handler.fail = 10
        with pytest.raises(ServingError, match=r"HTTP 503: overloaded \(gave up after 2 attempts\)"):
            RestClient(url, "m", retry=RetryPolicy(attempts=2, backoff=0.01)).predict({"x": [1]})
    finally:
        srv.shutdown()


def test_timeouts_and_unreachable_servers_are_clear_errors() -> None:
    srv, _ = _flaky_server(delay=3.0)
    try:
        url = f"http://127.0.0.1:{srv.server_address[1]}"
        with pytest.raises(ServingError, match=r"timed out.*timeout 0.3s.*gave up after 2 attempts"):
            RestClient(url, "m", timeout=0.3, retry=RetryPolicy(attempts=2, backoff=0.01)).predict({"x": [1]})
    finally:
        srv.shutdown()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free_port = s.getsockname()[1]
    with pytest.raises(ServingError, match="Connection refused") as err:
        RestClient(f"http://127.0.0.1:{free_port}", "m", retry=RetryPolicy(attempts=2, backoff=0.01)).status()
    assert err.value.retryable


def test_grpc_request_building_and_an_unavailable_server() -> None:
    client = GrpcClient("127.0.0.1:1", "demo_retrieval", label="stable", timeout=0.5,
                        retry=RetryPolicy(attempts=2, backoff=0.01))
    request = client.build_request({"user_id": ["u1", "u2"], "k": [5], "recent_item_ids": [["a", ""], ["b", "c"]],
                                    "image": [b"\x89PNG..."]}, signature="serving_default")
    assert request.model_spec.name == "demo_retrieval" and request.model_spec.version_label == "stable"
    assert tf.make_ndarray(request.inputs["user_id"]).tolist() == [b"u1", b"u2"]
    assert request.inputs["k"].dtype == tf.int32.as_datatype_enum
    assert tf.make_ndarray(request.inputs["recent_item_ids"]).shape == (2, 2)
    assert tf.make_ndarray(request.inputs["image"]).tolist() == [b"\x89PNG..."]
    with pytest.raises(ServingError, match=r"(UNAVAILABLE|DEADLINE_EXCEEDED).*gave up after 2 attempts"):
        client.predict({"user_id": ["u1"]})


def test_backoff_doubles_up_to_its_cap_and_only_retryable_errors_are_retried() -> None:
    waits: list[float] = []
    calls = iter([ServingError("busy", 503, retryable=True)] * 4 + [None])

    def call() -> str:
        error = next(calls)
        if error is not None:
            raise error
        return "ok"
    assert RetryPolicy(attempts=5, backoff=1.0, max_backoff=3.0, sleep=waits.append).run(call) == "ok"
    assert waits == [1.0, 2.0, 3.0, 3.0]
    waits.clear()
    with pytest.raises(ServingError, match="bad"):
        RetryPolicy(attempts=5, sleep=waits.append).run(lambda: (_ for _ in ()).throw(ServingError("bad", 400)))
    assert waits == []
