"""Correlation rules on the real, x-pack-free Elasticsearch: event_count, value_count, temporal_ordered."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from control_plane import clock
from control_plane.context import Context
from control_plane.soc import alerts, detect
from control_plane.soc.correlate import windows
from control_plane.soc.ingest import Ingestor
from control_plane.soc.rules import RULES_DIR, load_rules


def _ev(ip: str, user: str, outcome: str, when: datetime, host: str) -> dict:
    return {"@timestamp": when.isoformat().replace("+00:00", "Z"), "host": {"name": host}, "process": {"name": "sshd"},
            "event": {"module": "syslog", "category": ["authentication"], "action": "ssh_login", "outcome": outcome},
            "user": {"name": user}, "source": {"ip": ip}}  # fmt: skip


@pytest.fixture()
def rules(tmp_path: Path):  # noqa: ANN201
    """Only the SSH base rules and the three correlations over them."""
    d = tmp_path / "rules"
    d.mkdir()
    for name in ("ssh_failed_login", "ssh_failed_login_existing_user", "ssh_login_success", "ssh_bruteforce", "ssh_bruteforce_then_success",
                 "ssh_password_spray"):
        (d / f"{name}.yml").write_text((RULES_DIR / f"{name}.yml").read_text())
    rs = load_rules(d)
    assert not rs.issues and len(rs.correlations) == 3
    return rs


def _ips() -> tuple[str, str, str]:
    n = uuid.uuid4().int
    return tuple(f"198.18.{(n >> (8 * i)) % 250}.{(n >> (8 * i + 4)) % 250 + 1}" for i in range(3))  # type: ignore[return-value]


def test_correlations_fire_on_the_right_groups(sqlite_runtime: Context, services, rules, tmp_path: Path) -> None:  # noqa: ANN001
    """Brute force (≥5 failures), spraying (≥3 users) and failure-then-success each alert for their source only."""
    rt = sqlite_runtime
    brute, spray, ordered_wrong = _ips()
    host = f"h{uuid.uuid4().hex[:6]}"
    now = datetime.now(timezone.utc)
    t = now - timedelta(seconds=240)
    evs = [_ev(brute, "ops", "failure", t + timedelta(seconds=i), host) for i in range(6)]
    evs.append(_ev(brute, "ops", "success", t + timedelta(seconds=30), host))                     # guessed it
    evs += [_ev(spray, u, "failure", t + timedelta(seconds=40 + i), host) for i, u in enumerate(["a1", "b2", "c3"])]
    evs.append(_ev(ordered_wrong, "ops", "success", t + timedelta(seconds=50), host))             # success first …
    evs.append(_ev(ordered_wrong, "ops", "failure", t + timedelta(seconds=55), host))             # … then a failure: no chain
    Ingestor(rt.es, tmp_path / "spool").ingest(evs)
    rt.es.indices.refresh(index="soc-events-*")
    res = detect.run(rt, rules, settle_s=0)
    assert not res.errors, res.errors
    got = {}
    for a in alerts.search(rt.es, limit=1000, since=(now - timedelta(minutes=10)).isoformat()):
        for ip in (brute, spray, ordered_wrong):
            if a["group_key"] == f"source.ip={ip}":
                got.setdefault(ip, set()).add(a["rule"]["name"])
    assert got.get(brute) == {"ssh_bruteforce", "ssh_bruteforce_then_success"}, got
    assert got.get(spray) == {"ssh_password_spray"}, got
    assert ordered_wrong not in got, got  # neither 5 failures, nor 3 users, nor failure → success in that order
    # base rules that only feed correlations raise nothing of their own
    assert not any(a["rule"]["name"] in ("ssh_failed_login", "ssh_login_success") for a in alerts.search(rt.es, limit=1000))
    for c in rules.correlations:  # as if the checkpoints were lost: the same windows are evaluated again
        detect._save(rt, c.id, last_end=clock.es_iso(now - timedelta(minutes=10)))
    again = detect.run(rt, rules, settle_s=0)
    assert again.created == 0  # the same bursts, seen again in overlapping windows, raise nothing new


def test_windows_cover_downtime() -> None:
    """After a long pause the windows step through the missed time, overlapping by half a timespan."""
    end = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)
    ws = windows(end - timedelta(minutes=30), end, 600)
    assert ws[0][0] <= end - timedelta(minutes=30) and ws[-1] == (end - timedelta(minutes=10), end)
    for (a0, a1), (b0, b1) in zip(ws, ws[1:]):
        assert b0 < a1  # overlapping: no gap between windows


def test_unknown_reference_reported(tmp_path: Path) -> None:
    """A correlation naming a rule that does not exist is refused with the field."""
    (tmp_path / "c.yml").write_text((RULES_DIR / "ssh_bruteforce.yml").read_text().replace("[ssh_failed_login]", "[no_such_rule]"))
    rs = load_rules(tmp_path)
    assert rs.correlations == [] and "correlation.rules" in str(rs.issues[0]) and "no_such_rule" in str(rs.issues[0])
