"""The bastion's API routes (reads; changes go through POST /api/v1/ops like every operation)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Request

from control_plane.apikit import context, reads
from control_plane.bastion import store

router = APIRouter(tags=["bastion"])


@router.get("/api/v1/bastion/sessions", summary="Bastion sessions (live by default), newest first")
def sessions(request: Request, all: bool = False, user: str | None = None, limit: int = 100,
             p: Any = Depends(reads("bastion.read"))) -> list[dict[str, Any]]:  # fmt: skip
    return store.list_sessions(context(request), live_only=not all, user=user, limit=min(max(limit, 1), 1000))


@router.get("/api/v1/bastion/sessions/{session_id}", summary="One session, with what its recording proves")
def session(request: Request, session_id: str, p: Any = Depends(reads("bastion.read"))) -> dict[str, Any]:
    from control_plane.bastion.recording import recordings_key, verify

    ctx = context(request)
    s = store.get_session(ctx, session_id)
    kek = recordings_key(ctx.key_passphrase(), ctx.settings.crypto.kdf_iterations)
    v = verify(Path(s["recording"]), kek, ctx.signer.public_key, expect_final=s["final_sm3"] or None, events=True)
    return {**s, "verified": v.as_dict(), "commands_log": [e for e in v.events[1:] if e[1] == "m"]}


@router.get("/api/v1/bastion/grants", summary="Asset grants")
def grants(request: Request, user: str | None = None, active: bool = False, p: Any = Depends(reads("bastion.read"))) -> list[dict[str, Any]]:
    return store.list_grants(context(request), user, active_only=active)


@router.get("/api/v1/bastion/keys", summary="Registered SSH keys (public halves)")
def keys(request: Request, user: str | None = None, p: Any = Depends(reads("bastion.read"))) -> list[dict[str, Any]]:
    return store.list_keys(context(request), user)
