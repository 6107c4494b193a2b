"""The HTTP API: health, metrics, status, and the operation gate; OpenAPI at /docs.

Every /api/v1 route needs a bearer token; every route that changes anything goes through the gate
(``submit``, ``approve``, ``cancel``, ``run``): there is no other way in.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import Depends, FastAPI, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from control_plane import __version__, metrics
from control_plane.errors import GovctlError


class SubmitBody(BaseModel):
    """A request to change something."""

    operation: str = Field(examples=["deploy.up"])
    target: str = Field(default="", examples=["primary"])
    params: dict[str, Any] = Field(default_factory=dict)
    reason: str = ""
    break_glass: bool = False


class EventsBody(BaseModel):
    """ECS events to index (each needs @timestamp)."""

    events: list[dict[str, Any]] = Field(max_length=10000)


class DecisionBody(BaseModel):
    """An approver's comment."""

    comment: str = ""


_bearer = HTTPBearer(auto_error=False)
AUDIT_READERS = {"auditor", "secadmin", "sysadmin"}
INGESTERS = {"secadmin", "sysadmin"}


def create_app(rt: Any, scheduler: Any = None) -> FastAPI:
    """Build the app around a runtime (and the scheduler service, for its role)."""

    def principal(request: Request, cred: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> Any:
        """Authenticate the bearer token through the gate (the API has no peer authentication)."""
        source = request.client.host if request.client else "unknown"
        return rt.gate.authenticate(cred.credentials if cred else None, source=source)

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
    def services(p: Any = Depends(principal)) -> list[dict[str, Any]]:
        return [s.as_dict() for s in rt.supervisor.status()]

    @app.get("/api/v1/jobs", tags=["scheduler"], summary="Scheduled jobs, their cadence, next and last run")
    def jobs(p: Any = Depends(principal)) -> list[dict[str, Any]]:
        from control_plane.scheduler import list_jobs

        return list_jobs(rt)

    @app.post("/api/v1/ops", tags=["gate"], status_code=201, summary="Submit an operation through the gate")
    def submit(body: SubmitBody, p: Any = Depends(principal)) -> dict[str, Any]:
        from control_plane.gate import OperationRequest

        view = rt.gate.submit(p, OperationRequest(body.operation, body.target, body.params, body.reason, body.break_glass))
        return view.as_dict()

    @app.get("/api/v1/ops", tags=["gate"], summary="Operations, newest first")
    def list_ops(status: str | None = None, limit: int = 50, p: Any = Depends(principal)) -> list[dict[str, Any]]:
        return [v.as_dict() for v in rt.gate.list(status=status, limit=min(limit, 500))]

    @app.get("/api/v1/ops/{op_id}", tags=["gate"], summary="One operation: request, risk, SOC findings, preview, approvals")
    def get_op(op_id: str, p: Any = Depends(principal)) -> dict[str, Any]:
        return rt.gate.get(op_id).as_dict()

    @app.post("/api/v1/ops/{op_id}/approve", tags=["gate"], summary="Approve (approvers only, never your own)")
    def approve(op_id: str, body: DecisionBody, p: Any = Depends(principal)) -> dict[str, Any]:
        return rt.gate.approve(p, op_id, body.comment).as_dict()

    @app.post("/api/v1/ops/{op_id}/reject", tags=["gate"], summary="Reject")
    def reject(op_id: str, body: DecisionBody, p: Any = Depends(principal)) -> dict[str, Any]:
        return rt.gate.approve(p, op_id, body.comment, decision="reject").as_dict()

    @app.post("/api/v1/ops/{op_id}/cancel", tags=["gate"], summary="Withdraw a pending or approved operation")
    def cancel(op_id: str, p: Any = Depends(principal)) -> dict[str, Any]:
        return rt.gate.cancel(p, op_id).as_dict()

    @app.post("/api/v1/ops/{op_id}/run", tags=["gate"], summary="Run your approved operation (once)")
    def run(op_id: str, p: Any = Depends(principal)) -> dict[str, Any]:
        return rt.gate.run(p, op_id).as_dict()

    @app.post("/api/v1/soc/events", tags=["soc"], status_code=202, summary="Bulk-index ECS events (spooled if Elasticsearch is down)")
    def ingest_events(body: EventsBody, p: Any = Depends(principal)) -> dict[str, Any]:
        from control_plane.audit import AuditEvent
        from control_plane.gate import Forbidden
        from control_plane.soc.ingest import Ingestor

        if not INGESTERS & set(p.roles):
            raise Forbidden(f"{p.name} may not send events", hint=f"it needs one of: {', '.join(sorted(INGESTERS))}")
        res = Ingestor(rt.es, rt.settings.var / "soc" / "spool").ingest_documents(body.events, source=f"api:{p.name}")
        rt.ledger.append(AuditEvent(actor=p.name, role=",".join(p.roles), source=p.source, operation="soc.ingest", target="api",
                                    params={"events": len(body.events)}, details=res.as_dict()))  # fmt: skip
        return res.as_dict()

    @app.get("/api/v1/audit", tags=["audit"], summary="Audit records (auditors and administrators)")
    def audit(actor: str | None = None, operation: str | None = None, since: str | None = None, until: str | None = None,
              limit: int = 100, p: Any = Depends(principal)) -> list[dict[str, Any]]:  # fmt: skip
        from control_plane.gate import Forbidden

        if not AUDIT_READERS & set(p.roles):
            raise Forbidden(f"{p.name} may not read the audit trail", hint=f"it needs one of: {', '.join(sorted(AUDIT_READERS))}")
        recs = rt.ledger.query(actor=actor, operation=operation, since=since, until=until, limit=min(limit, 1000))
        return [r.as_dict() for r in recs]

    return app


def server_config(settings: Any, app: Any, *, port: int | None = None) -> Any:
    """The uvicorn configuration the control plane serves with: proxy headers only from configured proxies."""
    import uvicorn

    proxies = settings.api.trusted_proxies
    return uvicorn.Config(app, host=settings.api.host, port=port or settings.api.port, log_level="warning",
                          proxy_headers=bool(proxies), forwarded_allow_ips=",".join(proxies) or "")  # fmt: skip
