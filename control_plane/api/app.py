"""The HTTP API: health, metrics and read-only status; OpenAPI at /docs.

Routes that change the world arrive with the operation gate; until then the API only reads.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from control_plane import __version__, metrics
from control_plane.errors import GovctlError


def create_app(rt: Any, scheduler: Any = None) -> FastAPI:
    """Build the app around a runtime (and the scheduler service, for its role)."""
    app = FastAPI(title="govctl control plane", version=__version__,
                  description="Operations control plane of the city government cloud.")  # fmt: skip

    @app.middleware("http")
    async def observe(request: Request, call_next: Any) -> Response:
        t0 = time.perf_counter()
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
            return response
        finally:
            route = request.scope.get("route")
            path = getattr(route, "path", "unmatched")
            metrics.HTTP_SECONDS.labels(request.method, path, str(status)).observe(time.perf_counter() - t0)
            if status >= 500:
                metrics.HTTP_ERRORS.labels(path).inc()

    @app.exception_handler(GovctlError)
    async def govctl_error(_request: Request, exc: GovctlError) -> JSONResponse:
        return JSONResponse(status_code=exc.http_status, content={"error": exc.message, "hint": exc.hint})

    @app.get("/healthz", tags=["meta"], summary="Liveness and the health of what the control plane depends on")
    def healthz() -> JSONResponse:
        checks: dict[str, Any] = {}
        try:
            with rt.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            checks["state_db"] = "ok"
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            checks["state_db"] = f"error: {type(exc).__name__}"
        checks["services"] = {s.name: s.health for s in rt.supervisor.status()}
        checks["scheduler"] = scheduler.role if scheduler is not None else "off"
        ok = checks["state_db"] == "ok"
        degraded = any(h not in ("healthy", "disabled") for h in checks["services"].values())
        body = {"status": "ok" if ok and not degraded else ("degraded" if ok else "failing"),
                "version": __version__, "checks": checks}  # fmt: skip
        return JSONResponse(status_code=200 if ok else 503, content=body)

    @app.get("/metrics", tags=["meta"], summary="Prometheus exposition of the control plane's metrics")
    def prom_metrics() -> Response:
        return Response(generate_latest(metrics.REGISTRY), media_type=CONTENT_TYPE_LATEST)

    @app.get("/api/v1/services", tags=["services"], summary="Local services: address, pid, health")
    def services() -> list[dict[str, Any]]:
        return [s.as_dict() for s in rt.supervisor.status()]

    @app.get("/api/v1/jobs", tags=["scheduler"], summary="Scheduled jobs, their cadence, next and last run")
    def jobs() -> list[dict[str, Any]]:
        from control_plane.scheduler import list_jobs

        return list_jobs(rt)

    return app
