"""Elasticsearch access: the official client, over TLS with per-component credentials."""

from __future__ import annotations

from typing import Any

from elasticsearch import ApiError, Elasticsearch
from elasticsearch import ConnectionError as ESConnectionError
from elasticsearch import TransportError

from control_plane.errors import GovctlError

UNREACHABLE = (ESConnectionError, TransportError)


class SearchUnavailable(GovctlError):
    """Elasticsearch cannot be reached; work is kept and retried later."""

    http_status = 503


def client(url: str, *, timeout: float = 10.0, **auth: Any) -> Elasticsearch:
    """The official client with explicit timeouts (never hang on a dead node)."""
    return Elasticsearch(url, request_timeout=timeout, max_retries=1, retry_on_timeout=False, **auth)


def client_for(settings: Any, *, user: str | None = None, timeout: float = 10.0) -> Elasticsearch:
    """A client for our node over TLS (our CA), authenticated as ``user`` (default: the control plane)."""
    from control_plane.services import es_security

    kw = es_security.client_kwargs(settings.es_ca_path(), settings.es_credentials_path(), user or es_security.CONTROL_PLANE_USER)
    return client(settings.services.elasticsearch.url, timeout=timeout, **kw)


def ensure_template(es: Elasticsearch, name: str, patterns: list[str], mappings: dict[str, Any], *, priority: int = 100) -> None:
    """Create or update a composable index template (one shard, no replicas on the local node)."""
    es.indices.put_index_template(
        name=name,
        index_patterns=patterns,
        priority=priority,
        template={"settings": {"number_of_shards": 1, "number_of_replicas": 0}, "mappings": mappings},
    )


__all__ = ["ApiError", "UNREACHABLE", "SearchUnavailable", "client", "client_for", "ensure_template"]
