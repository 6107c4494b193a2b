"""Exceptions: through the gate, applied in detection and inline decisions, gone when expired or revoked."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import text

from control_plane.gate import Forbidden, OperationRequest
from control_plane.context import Context
from control_plane.soc import alerts, detect
from control_plane.soc import exceptions as ex
from control_plane.soc.inline import OperationEvent
from control_plane.soc.ingest import Ingestor
from control_plane.soc.rules import RULES_DIR, load_rules
from tests.gate.conftest import make_people


def _approved(rt: Context, people, req: OperationRequest):  # noqa: ANN001, ANN202
    view = rt.gate.submit(people["secadmin"], req)
    assert view.status == "pending_approval" and view.risk == "high"
    rt.gate.approve(people["approver"], view.id, "ok")
    return rt.gate.run(people["secadmin"], view.id)


def test_exception_waives_inline_block_until_revoked(sqlite_runtime: Context) -> None:
    """A reviewed exception lets one host's maintenance command through; other hosts stay blocked; revoking restores it.

    (Only this rule is waived: a command that a second rule also blocks would stay blocked.)
    """
    rt = sqlite_runtime
    people = make_people(rt)
    with pytest.raises(Forbidden):
        rt.gate.submit(people["ops_engineer"], OperationRequest("soc.exception.change", "audit_disabled", {"action": "add"}))
    op = lambda host: OperationEvent("host.exec", host, {"command": "systemctl stop auditd"}, "ops", ("ops_engineer",), "10.1.1.1")  # noqa: E731
    assert rt.gate.soc.evaluate(op("back-data-1")).action == "block"
    done = _approved(rt, people, OperationRequest("soc.exception.change", "audit_disabled",
                                                  {"action": "add", "match": {"govctl.target": "back-data-1"}, "reason": "auditd upgrade window", "days": 1}))  # fmt: skip
    exc_id = done.result["id"]
    d = rt.gate.soc.evaluate(op("back-data-1"))
    assert d.action == "allow" and any(f"waived by exception {exc_id}" in r for r in d.reasons)
    assert rt.gate.soc.evaluate(op("prim-data-1")).action == "block"
    _approved(rt, people, OperationRequest("soc.exception.change", exc_id, {"action": "revoke"}))
    assert rt.gate.soc.evaluate(op("back-data-1")).action == "block"
    assert len([r for r in rt.ledger.query(operation="soc.exception.change", limit=50) if r.outcome == "succeeded"]) == 2


def test_expired_exception_stops_applying(sqlite_runtime: Context) -> None:
    """Past its expiry an exception no longer matches, with nobody touching it."""
    rt = sqlite_runtime
    e = ex.add(rt, rule="*", match={"source.ip": "10.9.0.0/16"}, owner="sec", reason="scanner", days=1, by="sec")
    assert ex.excepted(ex.listing(rt), "any-rule", {"source": {"ip": "10.9.3.4"}})
    with rt.engine.begin() as c:
        c.execute(text("UPDATE soc_exceptions SET expires = '2001-01-01T00:00:00.000000Z' WHERE id = :i"), {"i": e["id"]})
    assert ex.listing(rt) == [] and ex.listing(rt, include_inactive=True)[0]["active"] is False
    with pytest.raises(ex.ExceptionError, match="180 days"):
        ex.add(rt, rule="*", match={"source.ip": "10.9.0.0/16"}, owner="sec", reason="forever", days=999, by="sec")


def test_detection_skips_excepted_events(sqlite_runtime: Context, services, tmp_path: Path) -> None:  # noqa: ANN001
    """Events covered by an exception raise no alert; others from the same rule still do."""
    rt = sqlite_runtime
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "x.yml").write_text((RULES_DIR / "ssh_login_outside_whitelist.yml").read_text())
    rules = load_rules(tmp_path / "r")
    host = f"h{uuid.uuid4().hex[:6]}"
    now = datetime.now(timezone.utc)
    evs = [{"@timestamp": (now - timedelta(seconds=30 + i)).isoformat().replace("+00:00", "Z"), "host": {"name": host},
            "process": {"name": "sshd"}, "event": {"module": "syslog", "category": ["authentication"], "action": "ssh_login", "outcome": "success"},
            "user": {"name": "ops"}, "source": {"ip": ip}} for i, ip in enumerate(["198.51.100.77", "203.0.113.99"])]  # fmt: skip
    Ingestor(rt.es, tmp_path / "spool").ingest(evs)
    rt.es.indices.refresh(index="soc-events-*")
    ex.add(rt, rule=rules.rules[0].id, match={"source.ip": "198.51.100.0/24", "host.name": host}, owner="sec", reason="vendor VPN", days=1, by="sec")
    res = detect.run(rt, rules, settle_s=0)
    assert res.excepted >= 1
    keys = [a["group_key"] for a in alerts.search(rt.es, limit=1000) if f"host.name={host}|" in a["group_key"]]
    assert any("203.0.113.99" in k for k in keys) and not any("198.51.100.77" in k for k in keys)
