"""The operation gate: who may do what, approvals bound to the exact request, break-glass, failure modes."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import text

from control_plane.crypto import sm3_hex
from control_plane.gate import ApprovalError, Blocked, DependencyDown, Forbidden, GateError, OperationRequest, Unauthenticated, iam
from control_plane.gate.models import Principal
from control_plane.context import Context
from control_plane.soc.inline import Decision, InlineEngine, SocUnavailable
from tests.gate.conftest import ROLES, People

# Separation of duties (三权分立) as the design asks, written out independently of the policy file:
# which roles may request each operation. Everything not listed for a role is refused.
EXPECTED = {
    "deploy.preview": {"ops_engineer", "sysadmin"},
    "deploy.up": {"ops_engineer", "sysadmin"},
    "deploy.destroy": {"ops_engineer", "sysadmin"},
    "playbook.run": {"ops_engineer", "sysadmin", "secadmin"},
    "backup.run": {"ops_engineer", "sysadmin"},
    "backup.delete": {"sysadmin"},
    "backup.prune": {"sysadmin"},
    "dr.restore": {"ops_engineer", "sysadmin"},
    "dr.credential": {"sysadmin"},
    "dr.destroy": {"sysadmin"},
    "resource.request": {"dept_admin", "ops_engineer"},
    "resource.resize": {"dept_admin", "ops_engineer"},
    "resource.extend": {"dept_admin", "ops_engineer"},
    "resource.return": {"dept_admin", "ops_engineer"},
    "resource.answer": {"dept_admin"},
    "resource.quota": {"sysadmin"},
    "dr.drill": {"ops_engineer", "sysadmin"},
    "soc.alert.update": {"secadmin"},
    "soc.exception.change": {"secadmin"},
    "iam.user.create": {"secadmin"},
    "iam.user.change": {"secadmin"},
    "iam.role.change": {"secadmin"},
    "iam.token.create": set(ROLES) | {"dept_admin"},
    "iam.token.revoke": set(ROLES) | {"dept_admin"},
    "iam.password.set": set(ROLES) | {"dept_admin"},
    "notify.subscription.set": set(ROLES),
    "notify.ack": set(ROLES),
    "services.up": {"sysadmin"},
    "services.down": {"sysadmin"},
    "jobs.run": {"sysadmin"},
    "jobs.pause": {"sysadmin"},
    "jobs.resume": {"sysadmin"},
    "jobs.prune": {"sysadmin"},
    "soc.retention.apply": {"secadmin"},
    "audit.checkpoint": {"sysadmin", "secadmin"},
    "gate.review.close": {"secadmin"},
    "keys.rotate": {"secadmin"},
    "report.build": {"ops_engineer", "sysadmin"},
    "report.submit": {"ops_engineer", "sysadmin"},
    # the bastion: everyone registers their own key; access, locks and host credentials are the security administrator's
    "bastion.key.add": set(ROLES),
    "bastion.key.remove": set(ROLES),
    "bastion.grant.add": {"secadmin"},
    "bastion.grant.revoke": {"secadmin"},
    "bastion.lock": {"secadmin"},
    "bastion.unlock": {"secadmin"},
    "bastion.session.kill": {"secadmin", "sysadmin"},
    "bastion.command": {"ops_engineer", "sysadmin", "secadmin"},
    "bastion.credentials.rotate": {"secadmin"},
    "bastion.serve": {"sysadmin"},
}
SELF_ONLY = ("iam.token", "bastion.key", "iam.password", "notify.subscription")  # the target is the person themself


def test_policy_covers_exactly_the_expected_operations(sqlite_runtime: Context) -> None:
    """Every gated operation is in the matrix and vice versa."""
    assert set(sqlite_runtime.gate.policy.operations) == set(EXPECTED)


@pytest.mark.parametrize("operation", sorted(EXPECTED))
@pytest.mark.parametrize("role", ROLES)
def test_role_matrix(sqlite_runtime: Context, role: str, operation: str) -> None:
    """Each role against each operation: allowed exactly where the separation-of-duties table says."""
    p = Principal(role, (role,), "127.0.0.1", "token")
    req = OperationRequest(operation, target=role if operation.startswith(SELF_ONLY) else "some-target")
    if role in EXPECTED[operation]:
        sqlite_runtime.gate.authorize(p, req)
    else:
        with pytest.raises(Forbidden):
            sqlite_runtime.gate.authorize(p, req)


def test_auditor_changes_nothing_but_own_tokens(people: People) -> None:
    """The auditor may manage only their own tokens, nobody else's."""
    with pytest.raises(Forbidden, match="only for themself"):
        people.rt.gate.authorize(people["auditor"], OperationRequest("iam.token.create", "ops_engineer"))


def test_tokens_stored_as_sm3_only(people: People) -> None:
    """The DB holds the SM3 of the secret and never the secret."""
    tok = people.tokens["ops_engineer"]
    _, tid, secret = tok.split("_", 2)
    with people.rt.engine.connect() as c:
        row = c.execute(text("SELECT * FROM iam_tokens WHERE id = :i"), {"i": tid}).one()._mapping
    assert row["secret_sm3"] == sm3_hex(secret.encode())
    assert secret not in json.dumps(dict(row))


def test_expired_revoked_malformed_tokens(people: People) -> None:
    """Each bad token is refused with its own reason, and every refusal is audited."""
    rt = people.rt
    tid = people.tokens["auditor"].split("_")[1]
    iam.revoke_token(rt, tid)
    with pytest.raises(Unauthenticated, match="revoked"):
        people["auditor"]
    tid2 = people.tokens["approver"].split("_")[1]
    with rt.engine.begin() as c:
        c.execute(text("UPDATE iam_tokens SET expires = '2001-01-01T00:00:00.000000Z' WHERE id = :i"), {"i": tid2})
    with pytest.raises(Unauthenticated, match="expired"):
        people["approver"]
    with pytest.raises(Unauthenticated, match="malformed"):
        rt.gate.authenticate("hello", source="127.0.0.1")
    with pytest.raises(Unauthenticated, match="unknown"):
        rt.gate.authenticate(people.tokens["ops_engineer"][:-2] + "xx", source="127.0.0.1")
    refusals = rt.ledger.query(operation="gate.authenticate")
    assert len(refusals) == 4 and {r.outcome for r in refusals} == {"refused"}


def test_disabled_user_cannot_authenticate(people: People) -> None:
    """Disabling a user stops their tokens at once."""
    iam.change_user(people.rt, "ops_engineer", disabled=True)
    with pytest.raises(Unauthenticated, match="disabled"):
        people["ops_engineer"]


def test_high_risk_needs_one_approver_not_the_requester(people: People) -> None:
    """High risk waits; the requester cannot approve; an approver can; the run happens once."""
    gate = people.rt.gate
    view = gate.submit(people["sysadmin"], OperationRequest("jobs.pause", "audit.verify", reason="maintenance"))
    assert (view.status, view.risk, view.approvals_needed) == ("pending_approval", "high", 1)
    with pytest.raises(ApprovalError):
        gate.run(people["sysadmin"], view.id)
    with pytest.raises(Forbidden, match="not an approver"):
        gate.approve(people["sysadmin"], view.id)
    assert gate.approve(people["approver"], view.id, "ok, window agreed").status == "approved"
    with pytest.raises(ApprovalError, match="only the requester"):
        gate.run(people["ops_engineer"], view.id)
    done = gate.run(people["sysadmin"], view.id)
    assert done.status == "succeeded" and done.result["paused"] is True
    with pytest.raises(ApprovalError, match="not approved"):
        gate.run(people["sysadmin"], view.id)
    recs = [r for r in people.rt.ledger.query(limit=100, newest_first=False) if r.request_id == view.id]
    assert [(r.actor, r.operation, r.outcome) for r in recs] == [
        ("sysadmin", "jobs.pause", "accepted"),
        ("sysadmin", "ops.run", "refused"),  # before approval
        ("sysadmin", "ops.approve", "refused"),  # not an approver
        ("approver", "ops.approve", "succeeded"),
        ("ops_engineer", "ops.run", "refused"),  # not the requester
        ("sysadmin", "jobs.pause", "started"),
        ("sysadmin", "jobs.pause", "succeeded"),
        ("sysadmin", "ops.run", "refused"),  # single use
    ]


def test_approver_who_requested_cannot_self_approve(people: People) -> None:
    """Even an approver cannot approve their own request."""
    iam.change_user(people.rt, "approver", roles=["approver", "sysadmin"])
    gate = people.rt.gate
    view = gate.submit(people["approver"], OperationRequest("jobs.pause", "audit.verify"))
    with pytest.raises(ApprovalError, match="requester cannot approve"):
        gate.approve(people["approver"], view.id)


def test_critical_needs_two_distinct_approvers(people: People) -> None:
    """Critical: one approval is not enough, the same approver twice is refused, two distinct ones suffice."""
    gate = people.rt.gate
    view = gate.submit(people["secadmin"], OperationRequest("iam.role.change", "ops_engineer", {"roles": ["ops_engineer", "approver"]}))
    assert (view.risk, view.approvals_needed) == ("critical", 2)
    assert gate.approve(people["approver"], view.id).status == "pending_approval"
    with pytest.raises(ApprovalError, match="already decided"):
        gate.approve(people["approver"], view.id)
    assert gate.approve(people["approver2"], view.id).status == "approved"
    assert gate.run(people["secadmin"], view.id).result["roles"] == ["approver", "ops_engineer"]


def test_change_after_approval_voids_it(people: People) -> None:
    """Editing the stored request after approval makes the run refuse: approvals are bound to its hash."""
    gate = people.rt.gate
    view = gate.submit(people["sysadmin"], OperationRequest("jobs.pause", "audit.verify"))
    gate.approve(people["approver"], view.id)
    with people.rt.engine.begin() as c:
        c.execute(text("UPDATE gate_operations SET target = 'audit.mirror' WHERE id = :i"), {"i": view.id})
    with pytest.raises(ApprovalError, match="changed after approval"):
        gate.run(people["sysadmin"], view.id)


def test_expired_approval_does_not_count(people: People) -> None:
    """An approval past its TTL no longer counts."""
    gate = people.rt.gate
    view = gate.submit(people["sysadmin"], OperationRequest("jobs.pause", "audit.verify"))
    gate.approve(people["approver"], view.id)
    with people.rt.engine.begin() as c:
        c.execute(text("UPDATE gate_approvals SET expires = '2001-01-01T00:00:00.000000Z'"))
    with pytest.raises(ApprovalError, match="lacks valid approvals"):
        gate.run(people["sysadmin"], view.id)


def test_identical_resubmission_needs_its_own_approval(people: People) -> None:
    """Re-issuing an approved command is a new request awaiting approval; the approved one still runs only once."""
    gate = people.rt.gate
    req = OperationRequest("jobs.pause", "audit.verify")
    first = gate.submit(people["sysadmin"], req)
    gate.approve(people["approver"], first.id)
    again = gate.submit(people["sysadmin"], req)
    assert again.id != first.id and again.status == "pending_approval"
    assert gate.run(people["sysadmin"], first.id).status == "succeeded"
    with pytest.raises(ApprovalError, match="not approved"):
        gate.run(people["sysadmin"], first.id)


def test_request_hash_binds_reason_and_break_glass(people: People) -> None:
    """Two requests differing only in their reason are hashed (and so approved) apart."""
    gate = people.rt.gate
    a = gate.submit(people["sysadmin"], OperationRequest("jobs.pause", "audit.verify", reason="maintenance"))
    b = gate.submit(people["sysadmin"], OperationRequest("jobs.pause", "audit.verify", reason="something else"))
    assert a.request_hash != b.request_hash


def test_whitelist_refuses_other_networks(people: People) -> None:
    """A valid token from an address outside the whitelist is refused."""
    p = people.rt.gate.authenticate(people.tokens["sysadmin"], source="10.9.9.9")
    with pytest.raises(Forbidden, match="no whitelist entry"):
        people.rt.gate.submit(p, OperationRequest("jobs.run", "audit.checkpoint"))


def test_unknown_operation_refused_and_audited(people: People) -> None:
    """Unknown operations list the known ones and are refused (and audited) before anything else."""
    with pytest.raises(Forbidden, match="unknown operation") as ei:
        people.rt.gate.submit(people["sysadmin"], OperationRequest("deploy.nuke", "x"))
    assert "deploy.up" in ei.value.hint
    assert people.rt.ledger.query(operation="deploy.nuke")[0].outcome == "refused"


def test_policy_changes_are_exactly_the_declared_operations(sqlite_runtime: Context) -> None:
    """Every operation under changes: is declared by a domain's ops.py, and every declared one is in the policy."""
    declared = set(sqlite_runtime.wiring.operations)
    in_policy = set(sqlite_runtime.gate.policy.changes)
    assert declared - in_policy == set(), f"declared but not in the policy: {sorted(declared - in_policy)}"
    assert in_policy - declared == set(), f"in the policy but declared by no domain: {sorted(in_policy - declared)}"
    assert len(declared) >= 28


def test_soc_block_and_require_approval(people: People) -> None:
    """A blocking rule refuses the operation; a require-approval rule lifts low risk to high."""
    gate = people.rt.gate
    gate.soc = InlineEngine([
        ("no-checkpoints-on-fridays", lambda e: Decision("block", reasons=("test block",)) if e.operation == "audit.checkpoint" else None),
        ("watch-job-runs", lambda e: Decision("require_approval", reasons=("unusual",)) if e.operation == "jobs.run" else None),
    ])  # fmt: skip
    with pytest.raises(Blocked, match="test block"):
        gate.submit(people["sysadmin"], OperationRequest("audit.checkpoint", "audit"))
    view = gate.submit(people["sysadmin"], OperationRequest("jobs.run", "audit.checkpoint"))
    assert (view.risk, view.status, view.soc["matched_rules"]) == ("high", "pending_approval", ["watch-job-runs"])


def test_empty_engine_says_no_rules_loaded(people: People) -> None:
    """With no SOC rules the decision is allow, and it says why."""
    people.rt.gate.soc = InlineEngine()
    view = people.rt.gate.submit(people["sysadmin"], OperationRequest("jobs.run", "audit.checkpoint"))
    assert view.soc == {"action": "allow", "matched_rules": [], "reasons": ["no rules loaded"], "degraded": False, "session_action": "allow"}


def test_fail_closed_for_high_open_for_low(people: People) -> None:
    """With the SOC engine down, high risk is refused (closed) and low risk proceeds, marked degraded (open)."""

    class Down(InlineEngine):
        def evaluate(self, event):  # noqa: ANN001, ANN201
            raise SocUnavailable("Elasticsearch unreachable")

    gate = people.rt.gate
    gate.soc = Down()
    with pytest.raises(DependencyDown, match="fails closed"):
        gate.submit(people["sysadmin"], OperationRequest("jobs.pause", "audit.verify"))
    view = gate.submit(people["sysadmin"], OperationRequest("jobs.run", "audit.checkpoint"))
    assert view.status == "succeeded" and view.soc["degraded"] is True


def test_break_glass_skips_approval_alerts_and_opens_review(people: People, services) -> None:  # noqa: ANN001
    """Break-glass runs at once for a named role, raises a critical alert in Elasticsearch and opens a review."""

    rt = people.rt
    _break_glass_covers_jobs_run(rt)
    with pytest.raises(Forbidden, match="may not use break-glass"):
        rt.gate.submit(people["ops_engineer"], OperationRequest("deploy.up", "primary", break_glass=True, reason="x"))
    with pytest.raises(Forbidden, match="does not cover services.down"):
        rt.gate.submit(people["sysadmin"], OperationRequest("services.down", "none", break_glass=True, reason="x"))
    with pytest.raises(GateError, match="needs a reason"):
        rt.gate.submit(people["sysadmin"], OperationRequest("jobs.run", "audit.checkpoint", break_glass=True))
    view = rt.gate.submit(people["sysadmin"], OperationRequest("jobs.run", "audit.checkpoint", reason="incident 7", break_glass=True))
    assert view.status == "succeeded" and view.break_glass
    reviews = rt.gate.open_reviews()
    assert [r["op_id"] for r in reviews] == [view.id] and reviews[0]["alert_sent"]
    alert = rt.es.get(index="soc-alerts", id=f"gate-break-glass-{view.id}")["_source"]
    assert alert["severity"] == "critical" and alert["operation"]["requester"] == "sysadmin"
    with pytest.raises(Forbidden):  # the system administrator cannot close reviews at all
        rt.gate.submit(people["sysadmin"], OperationRequest("gate.review.close", view.id, {"verdict": "fine"}))

    with pytest.raises(ApprovalError, match="cannot review it"):  # nor could whoever broke the glass, whatever their roles
        rt.gate.close_review(view.id, reviewer="sysadmin", verdict="fine")
    rt.gate.submit(people["secadmin"], OperationRequest("gate.review.close", view.id, {"verdict": "justified"}))
    assert rt.gate.open_reviews() == []


def test_break_glass_alert_waits_for_elasticsearch(people: People, services) -> None:  # noqa: ANN001
    """With Elasticsearch down the review is kept unalerted, and the retry job sends the alert later."""
    from control_plane.es import client
    from control_plane.gate.scheduled import resend_alerts

    rt = people.rt
    _break_glass_covers_jobs_run(rt)
    real = rt.es
    rt.__dict__["es"] = client("http://127.0.0.1:9", timeout=1)  # nothing listens there
    bg = rt.gate.submit(people["sysadmin"], OperationRequest("jobs.run", "audit.checkpoint", reason="incident 8", break_glass=True))
    assert bg.status == "succeeded"
    assert not rt.gate.open_reviews()[0]["alert_sent"]
    rt.__dict__["es"] = real
    assert resend_alerts(rt) == "sent 1 alerts"
    assert rt.es.get(index="soc-alerts", id=f"gate-break-glass-{bg.id}")["found"]


def _break_glass_covers_jobs_run(rt: Context) -> None:
    from control_plane.gate.policy import BreakGlass

    rt.gate.policy = rt.gate.policy.model_copy(update={"break_glass": BreakGlass(roles=["sysadmin"], operations=["jobs.run"])})
