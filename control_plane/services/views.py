"""The local services' API routes."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from control_plane.apikit import context, reads

router = APIRouter(tags=["services"])


@router.get("/api/v1/services", summary="Local services: address, pid, health")
def services(request: Request, p: Any = Depends(reads("services.read"))) -> list[dict[str, Any]]:
    return [s.as_dict() for s in context(request).supervisor.status()]
