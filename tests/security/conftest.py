"""Fixtures of the attack tests: a runtime on the real services, people with tokens, and a tally of what changed."""

from __future__ import annotations

from pathlib import Path

import pytest

from control_plane.context import Context
from tests.gate.conftest import People, make_people


@pytest.fixture()
def people(sqlite_runtime: Context) -> People:
    """One user per role (and a second approver and security administrator) with tokens."""
    return make_people(sqlite_runtime)


def refusals(rt: Context, operation: str) -> list:
    """Audit records of refused requests for an operation."""
    return [r for r in rt.ledger.query(operation=operation, limit=1000) if r.outcome == "refused"]


def runs_dir(rt: Context) -> Path:
    """Where ansible-runner's private data directories go (one per run that started)."""
    return rt.settings.var / "ansible" / "runs"
