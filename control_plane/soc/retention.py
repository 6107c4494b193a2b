"""Retention of the daily event indices (no ILM on the x-pack-free node: our own job)."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone
from typing import Any

from control_plane.soc.schema import EVENTS_PREFIX

_DAILY = re.compile(rf"^{re.escape(EVENTS_PREFIX)}(\d{{4}})\.(\d{{2}})\.(\d{{2}})$")


def expired_indices(names: list[str], days: int, today: date | None = None) -> list[str]:
    """Daily event indices whose day is more than ``days`` before today (others are never touched)."""
    today = today or datetime.now(timezone.utc).date()
    cutoff = today - timedelta(days=days)
    out = []
    for n in names:
        m = _DAILY.match(n)
        if m and date(int(m[1]), int(m[2]), int(m[3])) < cutoff:
            out.append(n)
    return sorted(out)


def apply(es: Any, days: int, today: date | None = None) -> list[str]:
    """Delete the expired daily indices by name (the node refuses wildcard deletes) and return them."""
    names = list(es.indices.get(index=f"{EVENTS_PREFIX}*", ignore_unavailable=True, allow_no_indices=True))
    gone = expired_indices(names, days, today)
    for n in gone:
        es.indices.delete(index=n)
    return gone
