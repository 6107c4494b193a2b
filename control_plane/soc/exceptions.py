"""Exceptions: "this rule (or every rule) does not apply to events like these", with an owner, a
reason and an expiry. Changed only through the gate (``soc.exception.change``, audited); an
expired exception stops applying by itself. Matching is on ECS fields: equality (case-insensitive),
or a CIDR for address fields."""

from __future__ import annotations

import ipaddress
import json
import secrets
import time
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from sqlalchemy import Column, String, Table, Text, and_, select, update

from control_plane import clock
from control_plane.errors import GovctlError
from control_plane.soc.matcher import get_field
from control_plane.db import metadata

if TYPE_CHECKING:
    from control_plane.context import Context

exceptions = Table(
    "soc_exceptions", metadata,
    Column("id", String(16), primary_key=True), Column("rule_id", String(64), nullable=False),
    Column("match", Text, nullable=False), Column("owner", String(64), nullable=False), Column("reason", Text, nullable=False),
    Column("expires", String(32), nullable=False), Column("created", String(32), nullable=False),
    Column("created_by", String(64), nullable=False), Column("revoked", String(32)),
)  # fmt: skip
MAX_DAYS = 180
GLOBAL = "*"


class ExceptionError(GovctlError):
    """An exception that cannot be added or revoked."""

    http_status = 400
    exit_code = 2


_iso = clock.iso


def add(rt: Context, *, rule: str, match: dict[str, Any], owner: str, reason: str, days: float, by: str) -> dict[str, Any]:
    """Create an exception for one rule (id or file name) or for all (``*``)."""
    if not match or not all(isinstance(k, str) and isinstance(v, (str, int, float)) for k, v in match.items()):
        raise ExceptionError("an exception needs field: value pairs to match, e.g. source.ip=10.9.9.0/24")
    if not reason.strip() or not owner.strip():
        raise ExceptionError("an exception needs an owner and a reason")
    if not 0 < days <= MAX_DAYS:
        raise ExceptionError(f"an exception expires within {MAX_DAYS} days; give 0 < days <= {MAX_DAYS}")
    rule_id = rule if rule == GLOBAL else _resolve(rt, rule)
    now = datetime.now(timezone.utc)
    row = {"id": secrets.token_hex(6), "rule_id": rule_id, "match": json.dumps(match, sort_keys=True), "owner": owner, "reason": reason,
           "expires": _iso(now + timedelta(days=days)), "created": _iso(now), "created_by": by, "revoked": None}  # fmt: skip
    with rt.engine.begin() as conn:
        conn.execute(exceptions.insert().values(**row))
    _cache.clear()
    return {**row, "match": match}


def revoke(rt: Context, exc_id: str) -> dict[str, Any]:
    """End an exception now."""
    with rt.engine.begin() as conn:
        n = conn.execute(update(exceptions).where(and_(exceptions.c.id == exc_id, exceptions.c.revoked.is_(None)))
                         .values(revoked=_iso(datetime.now(timezone.utc)))).rowcount  # fmt: skip
    if not n:
        raise ExceptionError(f"no active exception {exc_id!r}")
    _cache.clear()
    return {"revoked": exc_id}


def _resolve(rt: Context, rule: str) -> str:
    from control_plane.soc.rules import load_rules

    d = rt.settings.soc.rules_dir
    rs = load_rules(rt.settings.path(d) if d else None)
    for r in [*rs.rules, *rs.correlations]:
        if rule in (r.id, r.path.stem):
            return r.id
    raise ExceptionError(f"no rule {rule!r}", hint="use a rule id or file name from govctl soc rules list, or * for all rules")


def listing(rt: Context, *, include_inactive: bool = False) -> list[dict[str, Any]]:
    """Exceptions (active ones unless asked), with their match decoded."""
    now = _iso(datetime.now(timezone.utc))
    with rt.engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(select(exceptions).order_by(exceptions.c.created))]
    for r in rows:
        r["match"] = json.loads(r["match"])
        r["active"] = r["revoked"] is None and r["expires"] > now
    return rows if include_inactive else [r for r in rows if r["active"]]


_cache: dict[str, tuple[float, list[dict[str, Any]]]] = {}


def active(rt: Context, ttl_s: float = 5.0) -> list[dict[str, Any]]:
    """Active exceptions, cached briefly (the inline decision is on the hot path)."""
    key = str(id(rt))
    hit = _cache.get(key)
    if hit and time.monotonic() - hit[0] < ttl_s:
        now = _iso(datetime.now(timezone.utc))
        return [e for e in hit[1] if e["expires"] > now]
    rows = listing(rt)
    _cache[key] = (time.monotonic(), rows)
    return rows


def _field_matches(actual: Any, want: Any) -> bool:
    if isinstance(actual, list):
        return any(_field_matches(a, want) for a in actual)
    if actual is None:
        return False
    w = str(want)
    if "/" in w:
        try:
            return ipaddress.ip_address(str(actual)) in ipaddress.ip_network(w, strict=False)
        except ValueError:
            pass
    return str(actual).lower() == w.lower()


def excepted(excs: list[dict[str, Any]], rule_id: str, event: dict[str, Any]) -> dict[str, Any] | None:
    """The first active exception covering this rule and event, if any."""
    for e in excs:
        if e["rule_id"] in (rule_id, GLOBAL) and all(_field_matches(get_field(event, f), v) for f, v in e["match"].items()):
            return e
    return None
