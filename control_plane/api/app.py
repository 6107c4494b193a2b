"""The HTTP API: health and metrics here, each domain's routes from its ``views.py``; OpenAPI at /docs.

Every /api/v1 route needs a bearer token and declares what it maps to in the policy (a read, or
a change the gate decides); every route that changes anything goes through the gate (``submit``,
``approve``, ``cancel``, ``run``): there is no other way in.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from control_plane import __version__, metrics
from control_plane.context import Context
from control_plane.errors import GovctlError
from control_plane.wiring import parts


CONSOLE_CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; worker-src 'self' blob:; "
               "connect-src 'self'; frame-src 'self'; frame-ancestors 'self'; form-action 'self'; base-uri 'none'; object-src 'none'")


def create_app(rt: Context, scheduler: Any = None) -> FastAPI:
    """Build the app around a context (and the scheduler service, for its role); each domain's routes are mounted."""
    app = FastAPI(title="govctl control plane", version=__version__,
                  description="Operations control plane of the city government cloud.")  # fmt: skip
    app.state.ctx = rt
    for mod in parts("views"):
        app.include_router(mod.router)
    from control_plane.console.views import mount_static

    mount_static(app)

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

    @app.middleware("http")
    async def security_headers(request: Request, call_next: Any) -> Response:
        response = await call_next(request)
        if not request.url.path.startswith(("/api/", "/docs", "/redoc", "/openapi.json")):
            # the console: our own scripts only, no framing, no sniffing, no referrer leaving the intranet page
            response.headers.setdefault("Content-Security-Policy", CONSOLE_CSP)
            response.headers["X-Content-Type-Options"] = "nosniff"
            response.headers["X-Frame-Options"] = "SAMEORIGIN"
            response.headers["Referrer-Policy"] = "no-referrer"
        return response

    @app.exception_handler(GovctlError)
    async def govctl_error(request: Request, exc: GovctlError) -> Response:
        if not request.url.path.startswith("/api/"):
            from control_plane.console.web import error_page

            return error_page(request, exc)
        return JSONResponse(status_code=exc.http_status, content={"error": exc.message, "hint": exc.hint})

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        """A console page whose dependency failed says so (the API keeps its plain 500)."""
        import logging

        logging.getLogger("govctl.api").error("%s %s failed: %s", request.method, request.url.path, exc, exc_info=exc)
        if request.url.path.startswith("/api/"):
            return JSONResponse(status_code=500, content={"error": f"internal error: {type(exc).__name__}", "hint": "see the control plane's log"})
        from control_plane.console.web import error_page

        down = type(exc).__module__.startswith(("elastic_transport", "elasticsearch"))
        err = GovctlError(f"{'Elasticsearch 不可用 / Elasticsearch is unreachable' if down else '内部错误 / internal error'}: {type(exc).__name__}",
                          hint="govctl services status shows what is down" if down else "see the control plane's log")  # fmt: skip
        err.http_status = 503 if down else 500
        return error_page(request, err)

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

    return app


def server_config(settings: Any, app: Any, *, port: int | None = None) -> Any:
    """The uvicorn configuration the control plane serves with: proxy headers only from configured proxies."""
    import uvicorn

    proxies = settings.api.trusted_proxies
    return uvicorn.Config(app, host=settings.api.host, port=port or settings.api.port, log_level="warning",
                          proxy_headers=bool(proxies), forwarded_allow_ips=",".join(proxies) or "")  # fmt: skip


def api_routes(app: FastAPI) -> list[Any]:
    """Every route of the app, the domains' included routers (and the routers they include) flattened."""
    out: list[Any] = []
    for r in app.routes:
        inner = getattr(r, "original_router", None)
        out.extend(api_routes(inner) if inner is not None else [r])
    return out
