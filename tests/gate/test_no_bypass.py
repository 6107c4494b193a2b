"""No route or command changes anything without passing the gate: enumerate them all and prove it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import typer.main
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from control_plane import cli, clikit
from control_plane.api.app import api_routes, create_app
from control_plane.apikit import Access
from control_plane.config import load
from control_plane.gate import Unauthenticated
from control_plane.context import Context
from control_plane.wiring import context_for
from tests.conftest import make_test_config, write_config
from tests.gate.conftest import make_people

# Commands that only read. Everything else must be refused without credentials.
READ_ONLY = {
    "version", "services status", "config show", "jobs list", "jobs runs", "audit verify", "audit show", "keys show",
    "ops list", "ops show", "ops reviews", "iam user list", "iam token list", "deploy outputs", "deploy cli-env", "playbook list", "soc rules validate", "soc rules list", "soc rules test", "soc alerts list", "soc alerts show", "soc exceptions list", "soc health",
    "report show", "report verify", "report list", "soc decide", "dr snapshots", "dr check", "dr status", "dr drills", "dr destructions", "resource list", "resource quota", "resource reclaims", "resource hosts", "resource usage", "resource backups", "resource alerts", "resource audit",
    "bastion keys list", "bastion grants", "bastion sessions", "bastion verify", "bastion replay", "bastion watch", "bastion hosts",
}  # fmt: skip
# Valid arguments, so each command gets as far as the gate rather than failing on its input.
ARGS = {
    "jobs run": ["audit.checkpoint"], "jobs pause": ["audit.verify"], "jobs resume": ["audit.verify"],
    "ops approve": ["op-x"], "ops reject": ["op-x"], "ops cancel": ["op-x"], "ops run": ["op-x"],
    "ops review-close": ["op-x", "--verdict", "ok"], "iam user add": ["bob", "--role", "auditor"],
    "iam user disable": ["bob"], "iam role set": ["bob", "--role", "auditor"], "iam enrol": ["bob"], "keys rotate": ["--reason", "test"], "iam token revoke": ["abc"], "playbook run": ["block_ip", "--limit", "all"], "soc ingest": ["pyproject.toml", "--format", "json"],
    "soc alerts ack": ["a1"], "soc alerts assign": ["a1", "bob"], "soc alerts note": ["a1", "text"], "soc alerts close": ["a1", "--verdict", "benign"],
    "soc exceptions add": ["*", "--match", "source.ip=10.0.0.1", "--reason", "x"], "soc exceptions revoke": ["e1"],
    "report build": ["--month", "2026-10"], "report submit": ["--month", "2026-10"],
    "ops show": ["op-x"], "soc alerts show": ["a1"], "report show": ["--month", "2026-10"], "report verify": ["--month", "2026-10"],
    "soc decide": ["--", "ls"], "dr backup": ["reports"], "dr restore": ["abc", "--target", "/tmp/x"], "dr restore-pg": ["--target", "/tmp/x"],
    "dr destroy": ["--system", "人口库"],
    "resource request": ["--department", "water-bureau", "--vcpu", "1", "--memory", "1", "--storage", "1"], "resource resize": ["al-0123456789ab", "--vcpu", "2"],
    "resource extend": ["al-0123456789ab", "--expires", "2030-01-01"], "resource return": ["al-0123456789ab"],
    "resource answer": ["op-20261204-0123abcd", "--confirm"], "dr credential": ["population-db.main"],
    "bastion keys add": ["pyproject.toml"], "bastion keys remove": ["SHA256:x"], "bastion grant": ["bob", "--hosts", "*"],
    "bastion revoke": ["g1"], "bastion verify": ["s1"], "bastion replay": ["s1"], "bastion watch": ["s1"], "bastion kill": ["s1"],
    "bastion lock": ["bob"], "bastion unlock": ["bob"], "bastion rotate": ["prim-app-1"],
}  # fmt: skip


def _commands(group: Any, prefix: str = "") -> list[str]:
    out = []
    for name, cmd in group.commands.items():
        full = f"{prefix}{name}"
        out.extend(_commands(cmd, full + " ") if hasattr(cmd, "commands") else [full])
    return out


ALL_COMMANDS = sorted(_commands(typer.main.get_command(cli.app)))


def test_read_only_list_is_current() -> None:
    """Every read-only command named above exists (a renamed one must be re-classified)."""
    assert READ_ONLY <= set(ALL_COMMANDS)


@pytest.fixture()
def tokenless_config(tmp_path: Path) -> Path:
    """A configuration in which no OS user has roles: only tokens authenticate."""
    data = make_test_config(var_dir=tmp_path / "var")
    data["gate"] = {"local_peer_roles": {}}
    return write_config(tmp_path / "govctl.yaml", data)


# Commands that touch no state at all (the access map marks them public with a reason).
NO_STATE = {"version", "soc rules validate", "soc rules test"}


@pytest.mark.parametrize("command", [c for c in ALL_COMMANDS if c not in NO_STATE])
def test_every_command_needs_the_gate(command: str, tokenless_config: Path) -> None:
    """Without a token each command that changes or reads anything is refused by the gate's authentication, and the refusal is audited."""
    clikit.state.clear()
    runner = CliRunner()
    res = runner.invoke(cli.app, ["--config", str(tokenless_config), *command.split(), *ARGS.get(command, [])], env={"GOVCTL_TOKEN": ""},
                        input="enr_not-a-code\n123456\n")  # enrolment authenticates by its one-time code, read from stdin
    assert isinstance(res.exception, Unauthenticated), (command, res.exception, res.output)
    rt = context_for(load(tokenless_config))
    refusals = rt.ledger.query(operation="gate.authenticate")
    assert len(refusals) == 1 and refusals[0].outcome == "refused"


def _mutating_routes(app) -> list[APIRoute]:  # noqa: ANN001
    return [r for r in api_routes(app) if isinstance(r, APIRoute) and r.methods - {"GET", "HEAD"}]


def test_every_changing_route_needs_a_token(sqlite_runtime: Context) -> None:
    """Each POST/PUT/PATCH/DELETE route depends on gate authentication and answers 401 without a token (API) or a session (console).

    The console's only form anyone may post is the sign-in form.
    """
    app = create_app(sqlite_runtime)
    every = _mutating_routes(app)
    routes = [r for r in every if r.path.startswith("/api/")]
    assert {r.path for r in routes} == {"/api/v1/ops", "/api/v1/ops/{op_id}/approve", "/api/v1/ops/{op_id}/reject",
                                        "/api/v1/ops/{op_id}/cancel", "/api/v1/ops/{op_id}/run", "/api/v1/soc/events"}  # fmt: skip
    client = TestClient(app)
    pages = [r for r in every if not r.path.startswith("/api/") and r.path != "/login"]
    assert len(pages) >= 15
    for r in pages:
        path = r.path.replace("{op_id}", "op-x").replace("{alert_id}", "a").replace("{session_id}", "s").replace("{month}", "2026-10")
        resp = client.post(path.replace("{job_id}", "gate.alerts").replace("{action}", "run"), data={"csrf": "x"}, follow_redirects=False)
        assert resp.status_code == 401, (r.path, resp.status_code)
    for r in routes:
        assert any(isinstance(d.call, Access) for d in r.dependant.dependencies), r.path
        method = next(iter(r.methods - {"HEAD"}))
        body = {"events": []} if r.path.endswith("/events") else {"operation": "jobs.run", "target": "audit.checkpoint"}
        resp = client.request(method, r.path.replace("{op_id}", "op-x"), json=body)
        assert resp.status_code == 401, (r.path, resp.text)
    reads = [r for r in api_routes(app) if isinstance(r, APIRoute) and r.path.startswith("/api/v1/") and not r.methods - {"GET", "HEAD"}]
    for r in reads:
        assert client.get(r.path.replace("{op_id}", "op-x")).status_code == 401, r.path


def test_api_approval_flow_over_http(sqlite_runtime: Context) -> None:
    """Submit, approve by another person, run by the requester, all over HTTP with bearer tokens."""
    people = make_people(sqlite_runtime)
    client = TestClient(create_app(sqlite_runtime), client=("127.0.0.1", 50000))

    def h(name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {people.tokens[name]}"}

    r = client.post("/api/v1/ops", json={"operation": "jobs.pause", "target": "audit.verify", "reason": "window"}, headers=h("sysadmin"))
    assert r.status_code == 201 and r.json()["status"] == "pending_approval"
    op_id = r.json()["id"]
    assert client.post(f"/api/v1/ops/{op_id}/approve", json={"comment": "me"}, headers=h("sysadmin")).status_code == 403
    assert client.post(f"/api/v1/ops/{op_id}/approve", json={"comment": "ok"}, headers=h("approver")).json()["status"] == "approved"
    assert client.post(f"/api/v1/ops/{op_id}/run", headers=h("sysadmin")).json()["status"] == "succeeded"
    assert client.post(f"/api/v1/ops/{op_id}/run", headers=h("sysadmin")).status_code == 409
    audit = client.get("/api/v1/audit", params={"operation": "jobs.pause"}, headers=h("auditor")).json()
    assert [a["outcome"] for a in audit] == ["succeeded", "started", "accepted"]
    assert client.get("/api/v1/audit", headers=h("ops_engineer")).status_code == 403
