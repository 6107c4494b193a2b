"""Inline decisions from the same Sigma rules: parsed commands, not raw strings; shadow mode; wired into the gate."""

from __future__ import annotations

import pytest

from control_plane.soc.inline import InlineEngine, OperationEvent
from control_plane.soc.rules import load_rules
from control_plane.soc.shell import command_lines

ENGINE = InlineEngine.from_rules(load_rules())


def decide(params: dict, operation: str = "host.exec", target: str = "prim-app-1", roles: tuple[str, ...] = ("ops_engineer",)):
    """The engine's decision for one operation."""
    return ENGINE.evaluate(OperationEvent(operation, target, params, "alice", roles, "10.1.2.3"))


@pytest.mark.parametrize("text, expected", [
    ("ls; rm -rf /", ["ls", "rm -rf /"]),
    ("echo $(mkfs.ext4 /dev/sda1)", ["mkfs.ext4 /dev/sda1", "echo $(mkfs.ext4 /dev/sda1)"]),  # substitutions run first
    ("cat x | sh -c 'dd if=/dev/zero of=/dev/sda'", ["cat x", "sh -c dd if=/dev/zero of=/dev/sda", "dd if=/dev/zero of=/dev/sda"]),
    ("true && (cd /; rm -fr /*)", ["true", "cd /", "rm -fr /*"]),
    ("sudo rm -rf /", ["sudo rm -rf /", "rm -rf /"]),
])  # fmt: skip
def test_shell_split(text: str, expected: list[str]) -> None:
    """Every command of a chain, pipe, subshell, substitution or sh -c comes out on its own."""
    assert command_lines(text) == expected


@pytest.mark.parametrize("command", [
    "ls; rm -rf /", "echo $(mkfs.ext4 /dev/sda1)", "cat x | sh -c 'dd if=/dev/zero of=/dev/sda bs=1M'",
    "true && (cd /tmp; rm -fr /*)", "bash -c \"eval 'rm -rf /'\"",
])  # fmt: skip
def test_destructive_commands_hidden_in_chains_are_blocked(command: str) -> None:
    """The dangerous command is found wherever it hides, and blocked."""
    d = decide({"command": command})
    assert d.action == "block", d
    assert d.matched_rules


def test_a_script_body_is_examined() -> None:
    """Multi-line scripts are parsed too."""
    d = decide({"script": "#!/bin/sh\nset -e\necho cleaning\nsystemctl stop auditd\n"})
    assert d.action == "block" and any("Audit" in r for r in d.reasons)


def test_harmless_commands_allowed() -> None:
    """Ordinary commands pass, and the decision says how many rules were consulted."""
    d = decide({"command": "ls -la /var/log; df -h | grep /dev/vda"})
    assert d.action == "allow" and d.reasons[0].startswith("no rule matched (")


def test_alert_rules_require_approval() -> None:
    """An alert-action rule matching an operation asks for approval instead of blocking."""
    d = decide({"records": 250000}, operation="data.export", target="population_registry")
    assert d.action == "require_approval" and "Mass export of personal data" in d.reasons[0]


def test_shadow_mode_records_would_block(tmp_path) -> None:  # noqa: ANN001
    """A rule in shadow mode allows, says what it would have done, and counts it."""
    from control_plane import metrics
    from control_plane.soc.rules import RULES_DIR

    text = (RULES_DIR / "dd_to_disk.yml").read_text().replace("action: block", "action: block\nmode: shadow")
    (tmp_path / "dd.yml").write_text(text)
    engine = InlineEngine.from_rules(load_rules(tmp_path))
    rid = engine.rules[0][0]
    before = metrics.SOC_SHADOW_MATCHES.labels(rule=rid, would="block")._value.get()
    d = engine.evaluate(OperationEvent("host.exec", "h", {"command": "dd if=/dev/zero of=/dev/vdb"}, "a", (), "local"))
    assert d.action == "allow" and d.reasons[0].startswith("shadow: ") and "would block" in d.reasons[0]
    assert metrics.SOC_SHADOW_MATCHES.labels(rule=rid, would="block")._value.get() == before + 1


def test_gate_uses_the_rules(sqlite_runtime) -> None:  # noqa: ANN001
    """The runtime's gate consults the loaded rules: destroying a stack is flagged by the SOC engine."""
    from control_plane.gate import OperationRequest
    from tests.gate.conftest import make_people

    people = make_people(sqlite_runtime)
    gate = sqlite_runtime.gate
    event = OperationEvent("deploy.destroy", "local", {}, "ops_engineer", ("ops_engineer",), "127.0.0.1")
    d = gate.soc.evaluate(event)
    assert d.action == "require_approval" and d.matched_rules
    from control_plane.deploy.service import DeployError

    with pytest.raises(DeployError, match="unknown stack"):  # refused before any approval is asked for
        gate.submit(people["ops_engineer"], OperationRequest("deploy.destroy", "no-such-stack"))
