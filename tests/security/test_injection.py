"""Code execution through parameters: playbook variables, typed operation parameters, shell text in responses."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from control_plane import cli, clikit
from control_plane.api.app import create_app
from control_plane.config import load
from control_plane.errors import GovctlError
from control_plane.gate import GateError, OperationRequest
from control_plane.playbook.params import SCHEMA_FILE, PlaybookParamError, write_extravars
from control_plane.context import Context
from control_plane.wiring import context_for
from tests.conftest import make_test_config, write_config
from tests.gate.conftest import People
from tests.security.conftest import refusals, runs_dir

CANARY = Path("/tmp/govctl-pwned")
SCHEMA = yaml.safe_load(SCHEMA_FILE.read_text())
PAYLOADS = {
    "template": "{{ lookup('pipe','id > /tmp/govctl-pwned') }}",
    "template_block": "{% for x in range(1) %}{{ lookup('pipe','touch /tmp/govctl-pwned') }}{% endfor %}",
    "shell": "10.0.0.1; touch /tmp/govctl-pwned",
    "subst": "$(touch /tmp/govctl-pwned)",
    "newline": "10.0.0.1\nrm -rf /",
    "unicode": "１０.０.０.１",
    "overlong": "1" * 5000,
    "not_a_string": ["10.0.0.1", "{{ 7*7 }}"],
}
CASES = [(pb, var, kind) for pb, params in SCHEMA.items() for var in (params or {"unexpected": None}) for kind in PAYLOADS]


@pytest.fixture(autouse=True)
def _no_canary() -> None:
    CANARY.unlink(missing_ok=True)
    yield
    assert not CANARY.exists(), "an injected command ran"


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, settings) -> tuple[Context, TestClient, People]:  # noqa: ANN001
    """One runtime and API for the whole payload matrix."""
    from tests.gate.conftest import make_people

    tmp = tmp_path_factory.mktemp("inject")
    rt = context_for(load(write_config(tmp / "govctl.yaml", make_test_config(var_dir=tmp / "var"))))
    return rt, TestClient(create_app(rt), client=("127.0.0.1", 50000)), make_people(rt)


@pytest.mark.parametrize("playbook, var, kind", CASES)
def test_every_playbook_variable_refuses_payloads_before_ansible_starts(api: tuple, playbook: str, var: str, kind: str) -> None:
    """Template, shell, newline, unicode, over-long and wrongly typed values: refused at submission, audited, nothing started."""
    rt, client, people = api
    before = len(refusals(rt, "playbook.run"))
    r = client.post("/api/v1/ops", headers={"Authorization": f"Bearer {people.tokens['secadmin']}"},
                    json={"operation": "playbook.run", "target": "prim-app-1",
                          "params": {"playbook": playbook, "check": True, "extravars": {var: PAYLOADS[kind]}}})  # fmt: skip
    assert r.status_code in (400, 422), r.text
    assert "refused" in r.json()["error"] or "takes no variable" in r.json()["error"] or "params" in r.json()["error"]
    assert len(refusals(rt, "playbook.run")) == before + 1, "the refusal was not audited"
    assert not runs_dir(rt).exists() or not any(runs_dir(rt).iterdir()), "ansible-runner was started"


def test_the_reported_cli_attack_is_refused(tmp_path: Path) -> None:
    """`playbook run block_ip --check -e "ip={{ lookup('pipe','id > /tmp/x') }}"` as root: refused with the reason, audited."""
    cfg = write_config(tmp_path / "govctl.yaml", make_test_config(var_dir=tmp_path / "var"))
    clikit.state.clear()
    res = CliRunner().invoke(cli.app, ["--config", str(cfg), "playbook", "run", "block_ip", "--limit", "prim-app-1", "--check",
                                       "-e", "ip={{ lookup('pipe','id > /tmp/govctl-pwned') }}"], env={"GOVCTL_TOKEN": ""})  # fmt: skip
    assert res.exit_code != 0 and isinstance(res.exception, GovctlError), res.output
    assert "not an IPv4 address" in res.exception.message
    rt = context_for(clikit.state["ctx"].settings)
    assert refusals(rt, "playbook.run")


def test_extravars_reach_ansible_unsafe_and_private(tmp_path: Path) -> None:
    """Even a value that got through would not be templated: every string is written !unsafe, in a 0600 file."""
    f = tmp_path / "env" / "extravars"
    write_extravars(f, {"ip": "{{ 7*7 }}", "hosts": ["a", "{{ b }}"], "n": 3})
    text = f.read_text()
    assert oct(f.stat().st_mode & 0o777) == "0o600"
    assert text.count("!unsafe") == 3 and "n: 3" in text
    from ansible.parsing.dataloader import DataLoader
    from ansible.utils.unsafe_proxy import AnsibleUnsafeText

    loaded = DataLoader().load_from_file(str(f))
    assert isinstance(loaded["ip"], AnsibleUnsafeText) and isinstance(loaded["hosts"][1], AnsibleUnsafeText)


@pytest.mark.parametrize("operation, target, params, needle", [
    ("report.build", "2026-10", {"correction": "yes"}, "params.correction"),  # a string where a boolean belongs is not "true"
    ("report.build", "2026-10\n", {}, "target"),  # a month with a newline would make a second revision 1
    ("report.build", "2026-13", {}, "target"),
    ("dr.restore", "abc", {"kind": "files", "target": "relative/path"}, "params.target"),
    ("backup.delete", "*", {"dry_run": 1}, "params.dry_run"),
    ("playbook.run", "prim-app-1", {"playbook": "block_ip", "become": True}, "become"),  # unknown keys are refused
    ("iam.token.create", "secadmin", {"ttl_days": 10_000}, "params.ttl_days"),
    ("soc.alert.update", "a1", {"action": "delete"}, "params.action"),
])  # fmt: skip
def test_parameters_are_typed_before_risk(people: People, operation: str, target: str, params: dict, needle: str) -> None:
    """Strict models: loose values, stray keys and bad targets are refused before risk is computed; nothing is stored."""
    from control_plane.gate.models import operations

    role = {"report.build": "sysadmin", "dr.restore": "sysadmin", "backup.delete": "sysadmin", "playbook.run": "secadmin",
            "iam.token.create": "secadmin", "soc.alert.update": "secadmin"}[operation]  # fmt: skip
    with pytest.raises(GateError) as ei:
        people.rt.gate.submit(people[role], OperationRequest(operation, target, params))
    assert needle in ei.value.message
    with people.rt.engine.connect() as conn:
        assert conn.execute(operations.select()).first() is None
    assert refusals(people.rt, operation)


def test_an_event_field_cannot_carry_code_into_a_response(people: People) -> None:
    """A response requested by the SOC engine with a template in the event's address is refused by the playbook's types."""
    from control_plane.soc.respond import ENGINE

    req = OperationRequest("playbook.run", "prim-app-1", {"playbook": "block_ip", "extravars": {"ip": "{{ lookup('pipe','id') }}"}},
                           reason="response to alert x: test")  # fmt: skip
    with pytest.raises(PlaybookParamError, match="not an IPv4 address"):
        people.rt.gate.submit(ENGINE, req)
    assert refusals(people.rt, "playbook.run")[0].actor == "system:soc-engine"


def test_an_injection_attempt_raises_an_alert(people: People, services, tmp_path: Path) -> None:  # noqa: ANN001
    """The refused attempt reaches the SOC through the audit mirror and raises the injection alert for that person."""
    import uuid
    from datetime import datetime, timedelta, timezone

    from control_plane.audit.mirror import mirror
    from control_plane.soc.audit_feed import FEED
    from control_plane.soc import alerts, detect
    from control_plane.soc.rules import load_rules

    rt = people.rt
    with pytest.raises(GovctlError):
        rt.gate.submit(people["secadmin"], OperationRequest("playbook.run", "prim-app-1",
                                                            {"playbook": "block_ip", "extravars": {"ip": PAYLOADS["template"]}}))  # fmt: skip
    assert mirror(rt.ledger, rt.es, f"govctl-test-audit-{uuid.uuid4().hex[:8]}", feeds=(FEED,)).error is None
    rt.es.indices.refresh(index="soc-events-*")
    rules = tmp_path / "rules"
    rules.mkdir()
    src = Path(__file__).parents[2] / "soc_rules" / "gate_injection_attempt.yml"
    (rules / src.name).write_text(src.read_text())
    detect.run(rt, load_rules(rules), now=datetime.now(timezone.utc) + timedelta(seconds=5), lookback_s=600)
    raised = [a for a in alerts.search(rt.es, limit=500) if a["rule"]["name"] == "gate_injection_attempt"
              and any((e.get("user") or {}).get("name") == "secadmin" and e["event"].get("reason", "").count("lookup") for e in a["events"])]
    assert raised and raised[0]["severity"] == "high"


def test_dry_runs_are_low_risk_and_real_runs_are_not(people: People) -> None:
    """A typed dry run of forget/prune changes nothing and runs at once; a string "true" is no dry run, and the real one waits."""
    gate = people.rt.gate
    assert gate.policy.risk_of("backup.prune", "repository", {"dry_run": True}) == "low"
    assert gate.policy.risk_of("backup.prune", "repository", {"dry_run": False}) == "critical"
    with pytest.raises(GateError, match="params.dry_run"):
        gate.submit(people["sysadmin"], OperationRequest("backup.prune", "repository", {"dry_run": "true"}))
    v = gate.submit(people["sysadmin"], OperationRequest("backup.prune", "repository", {}))
    assert v.status == "pending_approval" and v.approvals_needed == 2
