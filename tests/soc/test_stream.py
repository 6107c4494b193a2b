"""The streaming detection path: fast alerts, never twice, and in agreement with scheduled detection."""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

from control_plane.context import Context
from control_plane.soc import alerts, detect
from control_plane.soc.ingest import Ingestor
from control_plane.soc.rules import RULES_DIR, load_rules
from control_plane.soc.stream import StreamDetector

NEW_USER = "34c307c5-9fcf-5e19-a655-5ea43470e855"


def _new_user_event(host: str, when: datetime) -> dict:
    return {"@timestamp": when.isoformat().replace("+00:00", "Z"), "host": {"name": host}, "process": {"name": "useradd"},
            "event": {"module": "syslog", "category": ["iam"], "action": "user_created", "outcome": "success"},
            "user": {"target": {"name": "svc-x"}}}  # fmt: skip


def _ruleset(tmp_path: Path):  # noqa: ANN202
    d = tmp_path / "rules"
    d.mkdir()
    for name in ("new_local_user", "ssh_failed_login", "ssh_bruteforce"):
        (d / f"{name}.yml").write_text((RULES_DIR / f"{name}.yml").read_text())
    rs = load_rules(d)
    assert not rs.issues
    return rs


def _alerts_for(rt: Context, host: str) -> list[dict]:
    return [a for a in alerts.search(rt.es, rule=NEW_USER, limit=1000) if f"host.name={host}" in a["group_key"]]


def test_tick_raises_once_and_scheduled_detection_agrees(sqlite_runtime: Context, services, tmp_path: Path) -> None:  # noqa: ANN001
    """A poll raises the alert; the next poll and the scheduled pass over the same window raise nothing more."""
    rt = sqlite_runtime
    rs = _ruleset(tmp_path)
    host = f"stream-{uuid.uuid4().hex[:8]}"
    now = datetime.now(timezone.utc)
    Ingestor(rt.es, tmp_path / "spool").ingest([_new_user_event(host, now - timedelta(seconds=5))])
    rt.es.indices.refresh(index="soc-events-*")
    sd = StreamDetector(rt, rs)
    # correlation-only base rules are not streamed; the generating single-event rule is
    assert set(sd.rules) == {NEW_USER}
    assert sd.tick() >= 1
    assert len(_alerts_for(rt, host)) == 1
    assert sd.tick() == 0
    res = detect.run(rt, rs, lookback_s=120)
    assert not res.errors
    got = _alerts_for(rt, host)
    assert len(got) == 1 and got[0]["count"] == 1, got
    # a second event of the same group within suppression updates the same alert, once
    Ingestor(rt.es, tmp_path / "spool").ingest([_new_user_event(host, now - timedelta(seconds=1))])
    rt.es.indices.refresh(index="soc-events-*")
    assert sd.tick() == 0
    sd.tick()
    got = _alerts_for(rt, host)
    assert len(got) == 1 and got[0]["count"] == 2, got


def test_running_detector_alerts_within_seconds(sqlite_runtime: Context, services, tmp_path: Path) -> None:  # noqa: ANN001
    """The background thread picks up a new event without anyone refreshing or calling it (bounded wait, not a latency test)."""
    rt = sqlite_runtime
    sd = StreamDetector(rt, _ruleset(tmp_path), poll_s=0.2).start()
    try:
        host = f"stream-{uuid.uuid4().hex[:8]}"
        Ingestor(rt.es, tmp_path / "spool").ingest([_new_user_event(host, datetime.now(timezone.utc))])
        deadline = time.monotonic() + 30
        while not _alerts_for(rt, host) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(_alerts_for(rt, host)) == 1
        assert sd.last_error is None
    finally:
        sd.stop()


def test_old_events_are_left_to_scheduled_detection(sqlite_runtime: Context, services, tmp_path: Path) -> None:  # noqa: ANN001
    """An event older than the horizon (a replayed spool) is not the fast path's: scheduled detection raises it."""
    rt = sqlite_runtime
    rs = _ruleset(tmp_path)
    host = f"stream-{uuid.uuid4().hex[:8]}"
    Ingestor(rt.es, tmp_path / "spool").ingest([_new_user_event(host, datetime.now(timezone.utc) - timedelta(minutes=10))])
    rt.es.indices.refresh(index="soc-events-*")
    StreamDetector(rt, rs, horizon_s=60).tick()
    assert _alerts_for(rt, host) == []
    detect.run(rt, rs, lookback_s=900, settle_s=0)
    assert len(_alerts_for(rt, host)) == 1
