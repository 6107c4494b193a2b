"""The one clock: stored timestamps are fixed-width UTC with Z (text order is time order); people see Asia/Shanghai."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from control_plane import clock


def test_stored_form_is_fixed_width_utc_and_sorts_as_time_sorts() -> None:
    """Times around a second and a day boundary, stored, sort as text exactly as they do as times."""
    base = datetime(2026, 12, 31, 23, 59, 59, 999_999, tzinfo=timezone.utc)
    times = [base + timedelta(microseconds=d) for d in (-1_000_000, -1, 0, 1, 86_400_000_000)]
    stored = [clock.iso(t) for t in times]
    assert len({len(s) for s in stored}) == 1 and all(s.endswith("Z") for s in stored)
    assert sorted(stored) == stored
    assert clock.iso(datetime(2026, 1, 1, 8, 0, tzinfo=clock.SHOWN_TZ)) == "2026-01-01T00:00:00.000000Z"


def test_parse_accepts_what_people_and_systems_send() -> None:
    """Z, an offset, and no zone (taken as UTC) all parse to the same instant and normalise to the stored form."""
    assert clock.normalize("2026-10-01T08:00:00+08:00") == clock.normalize("2026-10-01T00:00:00Z") == clock.normalize("2026-10-01T00:00:00")


def test_shown_in_shanghai_and_es_form_in_milliseconds() -> None:
    """People read Asia/Shanghai; Elasticsearch gets milliseconds (its date precision)."""
    t = datetime(2026, 10, 31, 16, 30, 0, 123_456, tzinfo=timezone.utc)
    assert clock.shown(clock.iso(t)) == "2026-11-01 00:30:00"
    assert clock.es_iso(t) == "2026-10-31T16:30:00.123Z"
    assert clock.iso_in(60) > clock.now_iso() > clock.iso_in(-60)
