"""The ledger's API routes."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from control_plane.apikit import context, reads

router = APIRouter(tags=["audit"])


@router.get("/api/v1/audit", summary="Audit records (auditors and administrators)")
def audit(request: Request, actor: str | None = None, operation: str | None = None, since: str | None = None, until: str | None = None,
          limit: int = 100, p: Any = Depends(reads("audit.read"))) -> list[dict[str, Any]]:  # fmt: skip
    recs = context(request).ledger.query(actor=actor, operation=operation, since=since, until=until, limit=min(limit, 1000))
    return [r.as_dict() for r in recs]
