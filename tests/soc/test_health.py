"""The engine watches itself: rule errors, lag, mapping drift and synthetic coverage each raise an engine-health alert."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

from control_plane.context import Context
from control_plane.soc import alerts, detect, health
from control_plane.soc.rules import RULES_DIR, load_rules


def _rules(tmp_path: Path, names: tuple[str, ...], *, edit: dict[str, tuple[str, str]] | None = None):  # noqa: ANN202
    d = tmp_path / f"rules-{uuid.uuid4().hex[:6]}"
    (d / "tests").mkdir(parents=True)
    for n in names:
        text = (RULES_DIR / f"{n}.yml").read_text()
        if edit and n in edit:
            text = text.replace(*edit[n])
        (d / f"{n}.yml").write_text(text)
        t = RULES_DIR / "tests" / f"{n}.yml"
        if t.exists():
            (d / "tests" / f"{n}.yml").write_text(t.read_text())
    rs = load_rules(d)
    assert not rs.issues, rs.issues
    return rs, d


def _health_alerts(rt: Context, check: str, subject: str) -> list[dict]:
    return [a for a in alerts.search(rt.es, kind="engine_health", limit=500) if a["group_key"] == f"{check}|{subject}"]


def test_synthetic_events_prove_coverage_and_a_blind_rule_is_reported(sqlite_runtime: Context, services, tmp_path: Path) -> None:  # noqa: ANN001
    """Each rule gets a synthetic event; detection alerts on it (kept out of the analyst queue); a rule whose alerts never come is a coverage finding."""
    rt = sqlite_runtime
    rs, d = _rules(tmp_path, ("new_local_user", "shadow_file_read"))
    t0 = datetime.now(timezone.utc)
    assert health.inject(rt, rs, d, t0) == 2
    rt.es.indices.refresh(index="soc-events-*")
    # detection runs over the window: both rules raise their (synthetic) alerts; none triggers a response
    res = detect.run(rt, rs, now=t0 + timedelta(seconds=5), lookback_s=60)
    assert not res.errors and res.created == 0, res  # synthetic alerts are not counted as analyst alerts
    found = health.verify(rt, rs, t0 + timedelta(seconds=200), grace_s=120)
    assert found == []
    syn = alerts.search(rt.es, kind="synthetic", limit=500)
    assert {a["rule"]["id"] for a in syn} >= {r.id for r in rs.rules}
    assert not [a for a in alerts.search(rt.es, limit=500) if a.get("kind") == "synthetic"]

    # now a rule that the detector never runs (a broken pipeline): its synthetic event raises nothing
    t1 = t0 + timedelta(minutes=10)
    health.inject(rt, rs, d, t1)
    found = health.verify(rt, rs, t1 + timedelta(seconds=121), grace_s=120)
    assert {f.check for f in found} == {"coverage"} and {f.subject for f in found} == {r.id for r in rs.rules}
    for f in found:
        health.raise_health(rt.es, f)
        health.raise_health(rt.es, f)  # a persisting problem updates one alert
    for r in rs.rules:
        got = _health_alerts(rt, "coverage", r.id)
        assert len(got) == 1 and got[0]["count"] == 2 and got[0]["status"] == "open"


def test_mapping_drift_rule_error_and_lag(sqlite_runtime: Context, services, tmp_path: Path) -> None:  # noqa: ANN001
    """A rule reading a field nothing maps, a rule whose query fails, and a checkpoint far behind are each findings."""
    rt = sqlite_runtime
    field = f"process.zz{uuid.uuid4().hex[:6]}"
    rs, d = _rules(tmp_path, ("new_local_user", "shadow_file_read"), edit={"new_local_user": ("event.action: user_created", f"{field}: user_created")})
    drift = health.check_mapping(rt.es, rs)
    assert [(f.check, f.subject) for f in drift] == [("mapping_drift", rs.rules[0].id if field in rs.rules[0].fields else rs.rules[1].id)]
    assert field in drift[0].message
    # the shipped rules are all mapped by the template
    assert health.check_mapping(rt.es, load_rules()) == []

    # a rule whose query Elasticsearch refuses: the detection run records the error, the health check reports it
    bad = next(r for r in rs.rules if field not in r.fields)
    bad.query = "process.name:(((unbalanced"
    now = datetime.now(timezone.utc)
    health.inject(rt, rs, d, now - timedelta(seconds=30))  # today's index exists, so the query really reaches a shard
    rt.es.indices.refresh(index="soc-events-*")
    res = detect.run(rt, rs, now=now, lookback_s=60)
    assert bad.id in res.errors
    found = health.check_detection(rt, rs, now + timedelta(seconds=10), lag_target_s=300)
    assert ("rule_error", bad.id) in {(f.check, f.subject) for f in found}
    # nothing ran for an hour: every rule is behind
    found = health.check_detection(rt, rs, now + timedelta(hours=1), lag_target_s=300)
    assert {f.subject for f in found if f.check == "detection_lag"} == {r.id for r in rs.rules}
    # run() raises them all as engine-health alerts
    out = health.run(rt, rs, d, now=now + timedelta(hours=1), lag_target_s=300, synthetic_events=False)
    assert out and all(_health_alerts(rt, f.check, f.subject) for f in out)
