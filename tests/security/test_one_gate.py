"""The redesign's promises, attacked: engines are the only system principals, ask only for what the policy lists,
set origins no person can, and never run a preview inside a detection pass; the context cannot be rewired at run time."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import yaml

from control_plane.config import load
from control_plane.context import Context
from control_plane.gate import Forbidden, GateError, OperationRequest, system_principal
from control_plane.gate.models import Principal
from control_plane.gate.policy import DEFAULT_POLICY
from control_plane.operation import Call, Operation
from control_plane.wiring import wiring
from tests.conftest import make_test_config, write_config
from tests.gate.conftest import People


def test_a_person_cannot_pose_as_a_system_principal(people: People) -> None:
    """A principal named system:… that did not come from the engine itself (a token, a peer) is refused and audited."""
    gate = people.rt.gate
    forged = Principal("system:scheduler", ("sysadmin",), "127.0.0.1", "token")
    with pytest.raises(Forbidden, match="system:scheduler may not"):
        gate.submit(forged, OperationRequest("jobs.prune", "job_runs", {}))
    assert people.rt.ledger.query(actor="system:scheduler")[0].outcome == "refused"


def test_system_principals_ask_only_for_what_the_policy_lists(people: People) -> None:
    """The scheduler may back up and report, not destroy a stack; the SOC engine may request playbooks and nothing else."""
    with pytest.raises(Forbidden, match="may not deploy.destroy"):
        people.rt.gate.submit(system_principal("system:scheduler"), OperationRequest("deploy.destroy", "local", {}))
    with pytest.raises(Forbidden, match="may not backup.prune"):
        people.rt.gate.submit(system_principal("system:soc-engine"), OperationRequest("backup.prune", "repository", {"dry_run": True}))
    with pytest.raises(ValueError, match="system:"):
        system_principal("scheduler")


def test_unattended_runs_are_only_those_the_policy_names(people: People) -> None:
    """The scheduler's own housekeeping runs at once as system:scheduler and is audited under that name."""
    v = people.rt.gate.submit(system_principal("system:scheduler"), OperationRequest("jobs.prune", "job_runs", {"keep_days": 30}, reason="test"))
    assert v.status == "succeeded" and v.requester == "system:scheduler" and v.approvals_needed == 0
    recs = people.rt.ledger.query(actor="system:scheduler", operation="jobs.prune")
    assert {r.outcome for r in recs} == {"accepted", "started", "succeeded"}


def test_a_person_cannot_set_an_origin(people: People) -> None:
    """Only the engines say which alert raised a request; a person's origin is refused (and audited) before anything runs."""
    with pytest.raises(GateError, match="origin is set by the control plane"):
        people.rt.gate.submit(people["sysadmin"], OperationRequest("jobs.run", "audit.checkpoint", {}, origin={"alert": "a1"}))


def test_origin_is_bound_into_the_approved_request(people: People) -> None:
    """Two requests alike but for their origin hash differently: an approval for one is not an approval for the other."""
    from control_plane.gate.models import request_hash

    a = request_hash("playbook.run", "h", {}, origin={"alert": "a1"})
    b = request_hash("playbook.run", "h", {}, origin={"alert": "a2"})
    assert a != b != request_hash("playbook.run", "h", {})


def test_the_context_is_frozen(sqlite_runtime: Context) -> None:
    """Nothing rides on the context: a callback or a replaced signer must be passed as an argument."""
    with pytest.raises(AttributeError, match="frozen"):
        sqlite_runtime.deploy_progress = print  # type: ignore[attr-defined]
    with pytest.raises(AttributeError, match="frozen"):
        sqlite_runtime.settings = None  # type: ignore[misc]


def test_an_engines_request_is_previewed_when_an_approver_opens_it(tmp_path: Path, settings: Any) -> None:
    """A SOC response is queued without its preview (no check-mode run inside a detection pass); opening it makes it, once."""
    policy = yaml.safe_load(DEFAULT_POLICY.read_text(encoding="utf-8"))
    policy["changes"]["test.previewed"] = {"roles": ["secadmin"], "risk": "high"}
    policy["system"]["system:soc-engine"]["operations"].append("test.previewed")
    (tmp_path / "policy.yaml").write_text(yaml.safe_dump(policy, allow_unicode=True), encoding="utf-8")
    data = make_test_config(var_dir=tmp_path / "var")
    data["gate"] = {**data.get("gate", {}), "policy_file": str(tmp_path / "policy.yaml")}
    previews: list[str] = []

    def preview(call: Call) -> dict[str, Any]:
        previews.append(call.target)
        return {"would": f"change {call.target}"}

    op = Operation("test.previewed", r"^[a-z0-9-]+$", "a name", lambda c: {"ran": c.target}, preview=preview)
    w = wiring()
    ctx = Context(load(write_config(tmp_path / "govctl.yaml", data)), dataclasses.replace(w, operations={**w.operations, op.name: op}))
    v = ctx.gate.submit(system_principal("system:soc-engine"), OperationRequest("test.previewed", "prim-app-1", {}, reason="response",
                                                                               origin={"alert": "a1"}))  # fmt: skip
    assert v.status == "pending_approval" and v.preview is None and previews == []
    assert v.origin == {"alert": "a1"}
    assert ctx.gate.get(v.id).preview is None and previews == []  # listing or reading does not run it
    # a reader who is not an approver (an auditor) opening it runs nothing on the hosts
    assert ctx.gate.get(v.id, opened_by=Principal("aud", ("auditor",), "127.0.0.1", "token")).preview is None and previews == []
    approver = Principal("appr", ("approver",), "127.0.0.1", "token")
    opened = ctx.gate.get(v.id, opened_by=approver)
    assert opened.preview == {"would": "change prim-app-1"} and previews == ["prim-app-1"]
    assert ctx.gate.get(v.id, opened_by=approver).preview == opened.preview and previews == ["prim-app-1"]  # made once
