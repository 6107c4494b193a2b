"""Self-approval and borrowed identities: credentials for others, roles through the back door, reserved names, 三权分立."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pyotp
import pytest
from typer.testing import CliRunner

from control_plane import cli, clikit
from control_plane.gate import ApprovalError, Forbidden, GateError, OperationRequest, Unauthenticated, iam
from control_plane.gate.models import Principal
from control_plane.context import Context
from control_plane.wiring import context_for
from tests.conftest import make_test_config, write_config
from tests.gate.conftest import People
from tests.security.conftest import refusals


def test_nobody_creates_a_token_for_someone_else(people: People) -> None:
    """A security administrator asking for another person's token is refused and audited; their own is fine."""
    gate = people.rt.gate
    with pytest.raises(Forbidden, match="only for themself"):
        gate.submit(people["secadmin"], OperationRequest("iam.token.create", "approver", {"ttl_days": 1}))
    assert refusals(people.rt, "iam.token.create")
    assert gate.submit(people["secadmin"], OperationRequest("iam.token.create", "secadmin", {"ttl_days": 1})).secret


def test_roles_change_only_through_the_role_operation(people: People) -> None:
    """iam.user.change cannot carry roles (one approval); iam.role.change is critical (two approvers)."""
    gate = people.rt.gate
    with pytest.raises(GateError, match="params"):
        gate.submit(people["secadmin"], OperationRequest("iam.user.change", "auditor", {"roles": ["auditor", "approver"], "disabled": False}))
    v = gate.submit(people["secadmin"], OperationRequest("iam.role.change", "auditor", {"roles": ["approver"]}))
    assert v.status == "pending_approval" and v.approvals_needed == 2 and v.risk == "critical"


@pytest.mark.parametrize("name", ["soc-engine", "system", "root", "local:root", "system:scheduler", "anonymous", "Admin", "a b"])
def test_reserved_and_malformed_names_cannot_be_registered(people: People, name: str) -> None:
    """System principals and peer names are not user names: refused at submission, audited."""
    with pytest.raises(GateError):
        people.rt.gate.submit(people["secadmin"], OperationRequest("iam.user.create", name, {"roles": ["auditor"]}))
    assert iam.get_user(people.rt, name) is None


@pytest.mark.parametrize("roles", [["sysadmin", "secadmin"], ["secadmin", "auditor"], ["sysadmin", "auditor", "approver"]])
def test_separation_of_duties_at_creation_and_at_role_change(people: People, roles: list[str]) -> None:
    """sysadmin, secadmin and auditor are mutually exclusive for one person (三权分立)."""
    gate = people.rt.gate
    with pytest.raises(GateError, match="separation of duties"):
        gate.submit(people["secadmin"], OperationRequest("iam.user.create", "carol", {"roles": roles}))
    with pytest.raises(GateError, match="separation of duties"):
        gate.submit(people["secadmin"], OperationRequest("iam.role.change", "ops_engineer", {"roles": roles}))
    with pytest.raises(GateError, match="separation of duties"):
        iam.change_user(people.rt, "dave", roles=roles)


def test_a_person_approves_once_and_never_through_a_peer_or_system_principal(people: People) -> None:
    """Approvals count distinct registered people; the host's root and the SOC engine are not approvers."""
    gate = people.rt.gate
    v = gate.submit(people["sysadmin"], OperationRequest("backup.prune", "repository", {}))
    assert v.approvals_needed == 2
    gate.approve(people["approver"], v.id)
    with pytest.raises(ApprovalError, match="already decided"):
        gate.approve(people["approver"], v.id)
    for fake in (Principal("local:root", ("approver",), "local", "peer"), Principal("system:soc-engine", ("approver",), "local", "system")):
        with pytest.raises(Forbidden, match="not a registered person"):
            gate.approve(fake, v.id)
    assert gate.get(v.id).status == "pending_approval"


def test_approve_after_cancel_does_not_revive_the_request(people: People) -> None:
    """A cancelled (or rejected) request stays so: a late approval is refused."""
    gate = people.rt.gate
    v = gate.submit(people["sysadmin"], OperationRequest("jobs.pause", "audit.verify", {}))
    gate.cancel(people["sysadmin"], v.id)
    with pytest.raises(ApprovalError):
        gate.approve(people["approver"], v.id)
    assert gate.get(v.id).status == "cancelled"
    w = gate.submit(people["sysadmin"], OperationRequest("jobs.pause", "audit.verify", {}, reason="again"))
    gate.approve(people["approver"], w.id, decision="reject")
    with pytest.raises(ApprovalError):
        gate.approve(people["approver2"], w.id)
    assert gate.get(w.id).status == "rejected"


def _enrol(rt: Context, name: str, code: str) -> tuple[str, pyotp.TOTP]:
    uri = iam.start_enrolment(rt, name, code)
    totp = pyotp.parse_uri(uri)
    _token_id, secret, _ = iam.finish_enrolment(rt, name, code, totp.now())
    return secret, totp


def _next_code(totp: pyotp.TOTP, rt: Context, name: str) -> str:
    """A code for a time step this user has not used yet (waits for the next step when needed, bounded)."""
    deadline = time.monotonic() + 65
    while True:
        last = iam.get_user(rt, name)["totp_last_step"] or 0
        now = int(time.time()) // 30
        for step in (now, now + 1):
            if step > last:
                return totp.at(step * 30)
        assert time.monotonic() < deadline, "no unused TOTP step within a minute"
        time.sleep(1)


def test_enrolment_gives_the_person_their_own_token_and_second_factor(people: People) -> None:
    """A new user gets a one-time code, not a token; enrolling sets their TOTP; approvals then need a fresh code."""
    rt, gate = people.rt, people.rt.gate
    created = gate.submit(people["secadmin"], OperationRequest("iam.user.create", "erin", {"roles": ["approver"]}))
    assert created.status == "pending_approval"
    gate.approve(people["approver"], created.id)
    done = gate.run(people["secadmin"], created.id)
    code = done.secret
    assert code.startswith("enr_") and not iam.list_tokens(rt, "erin")
    with pytest.raises(Unauthenticated):
        iam.start_enrolment(rt, "erin", "enr_wrong")
    token, totp = _enrol(rt, "erin", code)
    with pytest.raises(Unauthenticated):  # the code works once
        iam.start_enrolment(rt, "erin", code)
    erin = gate.authenticate(token, source="127.0.0.1")
    v = gate.submit(people["sysadmin"], OperationRequest("jobs.pause", "audit.verify", {}))
    with pytest.raises(Unauthenticated, match="one-time password"):
        gate.approve(erin, v.id)
    otp = _next_code(totp, rt, "erin")
    assert gate.approve(erin, v.id, otp=otp).status == "approved"
    w = gate.submit(people["sysadmin"], OperationRequest("jobs.pause", "audit.verify", {}, reason="second"))
    with pytest.raises(Unauthenticated, match="used already"):
        gate.approve(erin, w.id, otp=otp)


def test_bootstrap_prints_enrolment_codes_not_tokens(tmp_path: Path) -> None:
    """The first-run command hands out one-time codes; no approver's token ever passes through one person."""
    import json

    cfg = write_config(tmp_path / "govctl.yaml", make_test_config(var_dir=tmp_path / "var"))
    clikit.state.clear()
    res = CliRunner().invoke(cli.app, ["--config", str(cfg), "iam", "bootstrap", "--json"], env={"GOVCTL_TOKEN": ""})
    assert res.exit_code == 0, res.output
    made = json.loads(res.stdout)
    assert {m["enrolment_code"][:4] for m in made.values()} == {"enr_"} and "token" not in res.stdout.lower().replace("enrol", "")
    assert not iam.list_tokens(clikit.state["ctx"])


def test_failed_logins_lock_the_token_out(people: People) -> None:
    """Five wrong secrets for a token id lock it, even against the right secret, for the window (GB/T 22239 8.1.4.1 b)."""
    gate = people.rt.gate
    good = people.tokens["auditor"]
    prefix = good.rsplit("_", 1)[0]
    for i in range(iam.FAIL_LIMIT):
        with pytest.raises(Unauthenticated):
            gate.authenticate(f"{prefix}_wrong{i}", source="10.9.8.7")
    with pytest.raises(Unauthenticated, match="too many failed logins"):
        gate.authenticate(good, source="127.0.0.1")
    assert len(refusals(people.rt, "gate.authenticate")) >= iam.FAIL_LIMIT + 1
    assert gate.authenticate(people.tokens["sysadmin"], source="127.0.0.1").name == "sysadmin"  # others are unaffected


def test_token_on_the_command_line_is_refused(tmp_path: Path) -> None:
    """--token VALUE is readable in /proc by every local user: refused with the hint; a loose token file too."""
    cfg = write_config(tmp_path / "govctl.yaml", make_test_config(var_dir=tmp_path / "var"))
    env = {**os.environ, "GOVCTL_CONFIG": str(cfg)}
    env.pop("GOVCTL_TOKEN", None)
    p = subprocess.run([sys.executable, "-m", "control_plane.cli", "--token", "gct_x_y", "jobs", "list"], capture_output=True, text=True, env=env, timeout=60)
    assert p.returncode == 2 and "GOVCTL_TOKEN" in p.stderr and "--token-file" in p.stderr
    loose = tmp_path / "tok"
    loose.write_text("gct_x_y\n")
    loose.chmod(0o644)
    p = subprocess.run([sys.executable, "-m", "control_plane.cli", "--token-file", str(loose), "jobs", "list"], capture_output=True, text=True, env=env, timeout=60)
    assert p.returncode == 2 and "chmod 600" in p.stderr


def test_peer_identity_comes_from_the_kernel_not_the_environment(tmp_path: Path) -> None:
    """USER and LOGNAME say nothing about who runs govctl: the audit records the effective uid's name."""
    import pwd

    cfg = write_config(tmp_path / "govctl.yaml", make_test_config(var_dir=tmp_path / "var"))
    env = {**os.environ, "GOVCTL_CONFIG": str(cfg), "USER": "approver1", "LOGNAME": "approver1"}
    env.pop("GOVCTL_TOKEN", None)
    subprocess.run([sys.executable, "-m", "control_plane.cli", "audit", "checkpoint"], capture_output=True, text=True, env=env, timeout=120)
    from control_plane.config import load

    rt = context_for(load(cfg))
    actors = {r.actor for r in rt.ledger.query(limit=50)}
    me = pwd.getpwuid(os.geteuid()).pw_name
    assert f"local:{me}" in actors and not any("approver1" in a for a in actors)


def test_enrolment_codes_cannot_be_guessed(tmp_path: Path) -> None:
    """Five wrong codes for a user lock its enrolment (audited as refused logins); even the right code then waits."""
    from control_plane.config import load

    cfg = write_config(tmp_path / "govctl.yaml", make_test_config(var_dir=tmp_path / "var"))
    rt = context_for(load(cfg))
    _user, code = iam.create_user(rt, "frank", roles=["auditor"])
    for i in range(iam.FAIL_LIMIT):
        clikit.state.clear()
        res = CliRunner().invoke(cli.app, ["--config", str(cfg), "iam", "enrol", "frank"], input=f"enr_guess{i}\n000000\n", env={"GOVCTL_TOKEN": ""})
        assert isinstance(res.exception, Unauthenticated), res.output
    clikit.state.clear()
    res = CliRunner().invoke(cli.app, ["--config", str(cfg), "iam", "enrol", "frank"], input=f"{code}\n000000\n", env={"GOVCTL_TOKEN": ""})
    assert res.exit_code != 0 and "too many failed enrolment attempts" in str(res.exception)
    assert len([r for r in rt.ledger.query(operation="gate.authenticate", limit=50) if r.outcome == "refused"]) >= iam.FAIL_LIMIT + 1
    assert iam.get_user(rt, "frank")["enrolled"] is None


@pytest.mark.parametrize("include", ["a/../../etc", "..", "./x", "/etc", "a//b"])
def test_restore_include_paths_stay_inside(people: People, include: str) -> None:
    """A restore's include filter cannot name anything outside the snapshot: refused at submission."""
    with pytest.raises(GateError, match="params.include"):
        people.rt.gate.submit(people["sysadmin"], OperationRequest("dr.restore", "abc", {"kind": "files", "target": "/srv/restore-x", "include": [include]}))
