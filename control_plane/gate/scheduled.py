"""The gate's scheduled jobs."""

from __future__ import annotations

from typing import TYPE_CHECKING

from control_plane.scheduler.registry import job

if TYPE_CHECKING:
    from control_plane.context import Context


@job("gate.alerts", description="send break-glass alerts that could not be sent at once", every_s=30)
def resend_alerts(ctx: Context) -> str:
    """Retry critical alerts for break-glass operations left unsent while the alert sink was down."""
    return f"sent {ctx.gate.send_break_glass_alerts()} alerts"
