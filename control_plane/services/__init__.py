"""The local services govctl runs for itself: Elasticsearch, Prometheus, node_exporter, PostgreSQL."""

from control_plane.services.supervisor import ServiceError, ServiceStatus, Supervisor

__all__ = ["ServiceError", "ServiceStatus", "Supervisor"]
