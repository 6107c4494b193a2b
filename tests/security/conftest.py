"""Fixtures of the attack tests: a runtime on the real services, people with tokens, and a tally of what changed."""

from __future__ import annotations

from pathlib import Path

import pytest

from control_plane.runtime import Runtime
from tests.gate.conftest import People, make_people


@pytest.fixture()
def people(sqlite_runtime: Runtime) -> People:
    """One user per role (and a second approver and security administrator) with tokens."""
    return make_people(sqlite_runtime)


def refusals(rt: Runtime, operation: str) -> list:
    """Audit records of refused requests for an operation."""
    return [r for r in rt.ledger.query(operation=operation, limit=1000) if r.outcome == "refused"]


def runs_dir(rt: Runtime) -> Path:
    """Where ansible-runner's private data directories go (one per run that started)."""
    return rt.settings.var / "ansible" / "runs"
