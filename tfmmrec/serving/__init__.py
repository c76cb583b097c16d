"""Talking to TF Serving: REST and gRPC clients, and a REST stand-in for tests and development."""
from tfmmrec.serving.client import GrpcClient, RestClient, RetryPolicy, ServingError

__all__ = ["GrpcClient", "RestClient", "RetryPolicy", "ServingError"]
