"""The HTTP API (FastAPI): thin routes over the services, one JSON error envelope."""

from tastegraph.api.server import create_api

__all__ = ["create_api"]
