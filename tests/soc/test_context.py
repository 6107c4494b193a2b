"""Correlation context in inline decisions: asked of the real Elasticsearch, degraded honestly when it is down."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from control_plane.audit.mirror import mirror
from control_plane.soc.audit_feed import FEED
from control_plane.es import client
from control_plane.gate import Forbidden, OperationRequest, iam
from control_plane.context import Context
from control_plane.soc.context import ContextRules
from control_plane.soc.inline import InlineEngine, OperationEvent
from control_plane.soc.ingest import Ingestor
from control_plane.soc.rules import RULES_DIR, load_rules


def _refresh(rt: Context) -> None:
    rt.es.indices.refresh(index="soc-events-*", ignore_unavailable=True, allow_no_indices=True)


def test_repeated_refusals_make_the_next_operation_need_approval(sqlite_runtime: Context, services) -> None:  # noqa: ANN001
    """Five refusals of one actor, mirrored from the audit ledger, turn their next low-risk operation into a pending one."""
    rt = sqlite_runtime
    gate = rt.gate
    name = f"probe-{uuid.uuid4().hex[:8]}"
    iam.change_user(rt, name, roles=["ops_engineer"])
    me = gate.authenticate(iam.create_token(rt, name)[1], source="127.0.0.1")
    other = f"calm-{uuid.uuid4().hex[:8]}"
    iam.change_user(rt, other, roles=["ops_engineer"])
    calm = gate.authenticate(iam.create_token(rt, other)[1], source="127.0.0.1")

    before = gate.submit(me, OperationRequest("iam.token.create", name))
    assert before.status == "succeeded" and before.soc["degraded"] is False
    for _ in range(5):
        with pytest.raises(Forbidden):
            gate.submit(me, OperationRequest("iam.user.change", "someone-else", {"roles": ["secadmin"]}))
    res = mirror(rt.ledger, rt.es, rt.settings.audit.es_index, feeds=(FEED,))
    assert res.error is None and res.sent >= 5
    _refresh(rt)

    after = gate.submit(me, OperationRequest("iam.token.create", name))
    assert (after.status, after.risk) == ("pending_approval", "high")
    assert "1f355dc4-6bae-4e30-ad0e-8bfd502ae2a3" in after.soc["matched_rules"]
    assert any(f"user.name={name}: 5 in 10 min" in r for r in after.soc["reasons"]), after.soc["reasons"]
    # somebody else is not affected by the probe's refusals
    assert gate.submit(calm, OperationRequest("iam.token.create", other)).status == "succeeded"


def test_source_address_context_from_ssh_events(sqlite_runtime: Context, services, tmp_path: Path) -> None:  # noqa: ANN001
    """An address brute-forcing SSH (event_count per source.ip) needs approval for operations it requests; four failures do not."""
    rt = sqlite_runtime
    engine = rt.gate.soc
    n = uuid.uuid4().int
    ip = f"198.19.{n % 250}.{(n >> 8) % 250 + 1}"
    now = datetime.now(timezone.utc)
    evs = [{"@timestamp": (now - timedelta(seconds=30 + i)).isoformat().replace("+00:00", "Z"), "host": {"name": "prim-app-1"},
            "process": {"name": "sshd"}, "user": {"name": "root"}, "source": {"ip": ip},
            "event": {"module": "syslog", "category": ["authentication"], "action": "ssh_login", "outcome": "failure"}} for i in range(5)]  # fmt: skip
    op = OperationEvent("jobs.run", "audit.verify", {}, "sysadmin", ("sysadmin",), ip)
    Ingestor(rt.es, tmp_path / "spool").ingest(evs[:4])
    _refresh(rt)
    assert engine.evaluate(op).action == "allow"
    Ingestor(rt.es, tmp_path / "spool").ingest(evs[4:])
    _refresh(rt)
    d = engine.evaluate(op)
    assert d.action == "require_approval" and not d.degraded
    assert any(f"source.ip={ip}: 5 in 5 min" in r for r in d.reasons), d.reasons


def _block_rules(tmp_path: Path):  # noqa: ANN202
    d = tmp_path / "rules"
    d.mkdir()
    (d / "gate_operation_refused.yml").write_text((RULES_DIR / "gate_operation_refused.yml").read_text())
    corr = (RULES_DIR / "repeated_refused_operations.yml").read_text().replace("action: alert", "action: block")
    assert "action: block" in corr
    (d / "repeated_refused_operations.yml").write_text(corr)
    rs = load_rules(d)
    assert not rs.issues and len(rs.correlations) == 1
    return rs


def test_elasticsearch_down_block_capable_context_requires_approval(sqlite_runtime: Context, tmp_path: Path) -> None:
    """With ES unreachable the in-process rules still answer, the decision is marked degraded, and a block-capable context rule becomes require_approval."""
    rs = _block_rules(tmp_path)
    dead = client("http://127.0.0.1:9", timeout=0.3)
    engine = InlineEngine.from_rules(rs)
    engine.context = ContextRules(rs.correlations, lambda: dead)
    d = engine.evaluate(OperationEvent("jobs.run", "audit.verify", {}, "alice", ("sysadmin",), "127.0.0.1"))
    assert (d.action, d.degraded) == ("require_approval", True)
    assert "1f355dc4-6bae-4e30-ad0e-8bfd502ae2a3" in d.matched_rules
    assert any("correlation context unavailable" in r for r in d.reasons)
    assert any("requires approval instead of blocking" in r for r in d.reasons)

    # through the gate: the low-risk operation waits for an approver instead of running
    from tests.gate.conftest import make_people

    people = make_people(sqlite_runtime)
    people.rt.gate.soc = engine
    view = people.rt.gate.submit(people["sysadmin"], OperationRequest("jobs.run", "audit.verify"))
    assert (view.status, view.soc["degraded"]) == ("pending_approval", True)

    # the same rule in shadow mode is not block-capable: degraded, but allowed
    shadow = rs.correlations[0]
    shadow.ours = shadow.ours.model_copy(update={"mode": "shadow"})
    d2 = engine.evaluate(OperationEvent("jobs.run", "audit.verify", {}, "alice", ("sysadmin",), "127.0.0.1"))
    assert (d2.action, d2.degraded) == ("allow", True)


def test_context_block_with_elasticsearch_up(sqlite_runtime: Context, services, tmp_path: Path) -> None:  # noqa: ANN001
    """A block context rule that holds blocks; an exception for the actor waives it."""
    rt = sqlite_runtime
    rs = _block_rules(tmp_path)
    engine = InlineEngine.from_rules(rs)
    engine.context = ContextRules(rs.correlations, lambda: rt.es)
    who = f"probe-{uuid.uuid4().hex[:8]}"
    now = datetime.now(timezone.utc)
    evs = [{"@timestamp": (now - timedelta(seconds=10 + i)).isoformat().replace("+00:00", "Z"),
            "event": {"module": "govctl", "dataset": "govctl.audit", "action": "deploy.up", "outcome": "failure"},
            "user": {"name": who}, "govctl": {"operation": "deploy.up", "decision": "deny"}} for i in range(6)]  # fmt: skip
    Ingestor(rt.es, tmp_path / "spool").ingest(evs)
    _refresh(rt)
    op = OperationEvent("jobs.run", "audit.verify", {}, who, ("sysadmin",), "127.0.0.1")
    d = engine.evaluate(op)
    assert d.action == "block" and not d.degraded and any(f"user.name={who}: 6 in 10 min" in r for r in d.reasons)
    engine.exceptions = lambda: [{"id": "exc-1", "rule_id": rs.correlations[0].id, "match": {"user.name": who}, "reason": "pen test",
                                  "owner": "secadmin", "expires": "2099-01-01T00:00:00Z"}]  # fmt: skip
    d2 = engine.evaluate(op)
    assert d2.action == "allow" and any("waived by exception exc-1" in r for r in d2.reasons), d2.reasons
