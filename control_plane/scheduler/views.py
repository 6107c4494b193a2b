"""The scheduler's API routes."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from control_plane.apikit import context, reads
from control_plane.scheduler.service import list_jobs

router = APIRouter(tags=["scheduler"])


@router.get("/api/v1/jobs", summary="Scheduled jobs, their cadence, next and last run")
def jobs(request: Request, p: Any = Depends(reads("jobs.read"))) -> list[dict[str, Any]]:
    return list_jobs(context(request))
