"""The one clock: timestamps are stored as UTC RFC 3339 with ``Z`` and shown in Asia/Shanghai.

Every stored timestamp has the same fixed width (microseconds, ``Z``), so text comparison in
SQL orders them correctly; ``parse`` accepts what people type and what other systems send.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

SHOWN_TZ = ZoneInfo("Asia/Shanghai")
_FMT = "%Y-%m-%dT%H:%M:%S.%fZ"


def now() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(timezone.utc)


def iso(t: datetime) -> str:
    """``t`` in the stored form (naive times are taken as UTC)."""
    if t.tzinfo is None:
        t = t.replace(tzinfo=timezone.utc)
    return t.astimezone(timezone.utc).strftime(_FMT)


def es_iso(t: datetime) -> str:
    """``t`` as Elasticsearch keeps dates: UTC to the millisecond, ``Z`` (event windows and alert times)."""
    if t.tzinfo is None:
        t = t.replace(tzinfo=timezone.utc)
    return t.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def now_iso() -> str:
    """The current time in the stored form."""
    return iso(now())


def iso_in(seconds: float) -> str:
    """The stored form of now plus ``seconds`` (negative: in the past)."""
    return iso(now() + timedelta(seconds=seconds))


def parse(value: str) -> datetime:
    """An aware datetime from RFC 3339 / ISO 8601 text (``Z`` or an offset; none means UTC)."""
    t = datetime.fromisoformat(value.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def normalize(value: str) -> str:
    """Any accepted timestamp text in the stored form."""
    return iso(parse(value))


def shown(value: str | datetime) -> str:
    """A timestamp as people here read it: Asia/Shanghai, to the second."""
    t = parse(value) if isinstance(value, str) else value
    return t.astimezone(SHOWN_TZ).strftime("%Y-%m-%d %H:%M:%S")
