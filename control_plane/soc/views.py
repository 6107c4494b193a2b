"""The SOC engine's API routes."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from control_plane.apikit import context, reads
from control_plane.soc.ingest import Ingestor

router = APIRouter(tags=["soc"])


class EventsBody(BaseModel):
    """ECS events to index (each needs @timestamp)."""

    events: list[dict[str, Any]] = Field(max_length=10000)


@router.post("/api/v1/soc/events", status_code=202, summary="Bulk-index ECS events (spooled if Elasticsearch is down)")
def ingest_events(request: Request, body: EventsBody, p: Any = Depends(reads("soc.ingest"))) -> dict[str, Any]:
    ctx = context(request)
    res = Ingestor(ctx.es, ctx.settings.var / "soc" / "spool").ingest_documents(body.events, source=f"api:{p.name}")
    ctx.gate.record(p, "soc.ingest", target="api", params={"events": len(body.events)}, details=res.as_dict())
    return res.as_dict()


@router.get("/api/v1/soc/alerts", summary="Alerts, newest first (open and acknowledged unless a status is given)")
def list_alerts(request: Request, status: str | None = None, severity: str | None = None, rule: str | None = None, limit: int = 200,
                p: Any = Depends(reads("soc.read"))) -> list[dict[str, Any]]:  # fmt: skip
    from control_plane.soc import alerts

    rows = alerts.search(context(request).es, status=status, severity=severity, rule=rule, limit=min(max(limit, 1), 1000))
    return rows if status else [a for a in rows if a.get("status") != "closed"]
