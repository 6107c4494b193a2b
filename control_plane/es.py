"""Elasticsearch access: the official client, over TLS with per-component credentials."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from elasticsearch import ApiError, Elasticsearch
from elasticsearch import ConnectionError as ESConnectionError
from elasticsearch import TransportError

from control_plane.credentials import load_generated
from control_plane.errors import GovctlError

UNREACHABLE = (ESConnectionError, TransportError)


class SearchUnavailable(GovctlError):
    """Elasticsearch cannot be reached; work is kept and retried later."""

    exit_code = 6

    http_status = 503


def client(url: str | list[str], *, timeout: float = 10.0, **auth: Any) -> Elasticsearch:
    """The official client with explicit timeouts (never hang on a dead node); given several nodes, a request a dead one refused goes to the next."""
    nodes = [url] if isinstance(url, str) else list(url)
    return Elasticsearch(nodes, request_timeout=timeout, max_retries=max(1, len(nodes)), retry_on_timeout=len(nodes) > 1,
                         dead_node_backoff_factor=0.5, max_dead_node_backoff=10.0, **auth)  # fmt: skip


# The node's users, one per component (their roles are in services/es_security.py's roles.yml).
USERS = {"govctl": "govctl_control_plane", "govctl_shipper": "govctl_shipper", "govctl_analyst": "govctl_analyst"}
CONTROL_PLANE_USER = "govctl"
SHIPPER_USER = "govctl_shipper"
ANALYST_USER = "govctl_analyst"


def load_credentials(path: Path) -> dict[str, str]:
    """The components' passwords (generated, 0600, on first use)."""
    return load_generated(path, tuple(USERS))


def client_kwargs(ca_cert: Path, creds_file: Path, user: str = CONTROL_PLANE_USER) -> dict[str, Any]:
    """What the official client needs to reach the node as ``user``: the CA and basic auth."""
    creds = load_credentials(creds_file)
    return {"ca_certs": str(ca_cert), "basic_auth": (user, creds[user]), "verify_certs": True}


def client_for(settings: Any, *, user: str | None = None, timeout: float = 10.0) -> Elasticsearch:
    """A client for our node over TLS (our CA), authenticated as ``user`` (default: the control plane)."""
    kw = client_kwargs(settings.es_ca_path(), settings.es_credentials_path(), user or CONTROL_PLANE_USER)
    return client(settings.services.elasticsearch.urls, timeout=timeout, **kw)


def ensure_template(es: Elasticsearch, name: str, patterns: list[str], mappings: dict[str, Any], *, priority: int = 100) -> None:
    """Create or update a composable index template (one shard; a replica wherever a second node exists)."""
    es.indices.put_index_template(
        name=name,
        index_patterns=patterns,
        priority=priority,
        template={"settings": {"number_of_shards": 1, **REPLICAS}, "mappings": mappings},
    )


# One replica where the cluster has a second node, none on a single node (which stays green):
# losing any one node of a cluster loses no document.
REPLICAS = {"auto_expand_replicas": "0-1"}


__all__ = ["ApiError", "UNREACHABLE", "SearchUnavailable", "client", "client_for", "ensure_template"]
