"""The notification scan: announce, retry, settle, escalate."""

from __future__ import annotations

from typing import TYPE_CHECKING

from control_plane.scheduler.registry import job

if TYPE_CHECKING:
    from control_plane.context import Context


@job("notify.scan", description="announce new alerts, approvals, breaches and failures; escalate what nobody acknowledged",
     every_s=lambda s: s.notify.every_s, misfire_grace_s=60)  # fmt: skip
def scan(ctx: Context) -> str:
    """One pass (idempotent: each thing is announced once)."""
    from control_plane.notify.service import scan as run

    r = run(ctx)
    return ", ".join(f"{k} {v}" for k, v in r.items())
