"""The gate's scheduled jobs."""

from __future__ import annotations

from typing import Any

from control_plane.scheduler.registry import job


@job("gate.alerts", description="send break-glass alerts that could not be sent at once", every_s=30)
def resend_alerts(rt: Any) -> str:
    """Retry critical alerts for break-glass operations left unsent while Elasticsearch was down."""
    from control_plane.gate.service import send_break_glass_alerts

    return f"sent {send_break_glass_alerts(rt)} alerts"
