"""The HTTP API: /healthz reflects the real services, /metrics is Prometheus text, /docs serves OpenAPI."""

from __future__ import annotations

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from control_plane.api.app import create_app
from control_plane.config import Settings
from control_plane.context import Context
from control_plane.wiring import context_for
from control_plane.services import Supervisor


def test_healthz_reports_services(services: Supervisor, settings: Settings) -> None:
    """With the session's services up, /healthz is ok and lists each as healthy."""
    rt = context_for(settings)
    body = TestClient(create_app(rt)).get("/healthz").json()
    assert body["status"] == "ok"
    assert body["checks"]["state_db"] == "ok"
    assert body["checks"]["services"] == {n: "healthy" for n in ("postgres", "elasticsearch", "node_exporter", "alertmanager", "prometheus")}


def test_metrics_exposition_counts_requests(sqlite_runtime: Context) -> None:
    """/metrics parses as Prometheus text and counts the requests made before it by route."""
    client = TestClient(create_app(sqlite_runtime))
    for _ in range(3):
        client.get("/api/v1/jobs")
    fams = {f.name: f for f in text_string_to_metric_families(client.get("/metrics").text)}
    hist = fams["govctl_http_request_duration_seconds"]
    counts = [s.value for s in hist.samples if s.name.endswith("_count") and s.labels.get("route") == "/api/v1/jobs"]
    assert counts and counts[0] >= 3
    assert "process_cpu_seconds" in fams


def test_openapi_docs(sqlite_runtime: Context) -> None:
    """/docs serves the UI and /openapi.json lists the routes."""
    client = TestClient(create_app(sqlite_runtime))
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/healthz", "/metrics", "/api/v1/services", "/api/v1/jobs"} <= set(paths)
