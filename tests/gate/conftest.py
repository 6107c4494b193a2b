"""Gate fixtures: users of every role with tokens, principals built through real authentication."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from control_plane.gate import iam
from control_plane.gate.models import Principal
from control_plane.context import Context

ROLES = ("sysadmin", "secadmin", "auditor", "ops_engineer", "approver")


@dataclass
class People:
    """Authenticated principals by name, and their tokens."""

    rt: Context
    tokens: dict[str, str]

    def __getitem__(self, name: str) -> Principal:
        return self.rt.gate.authenticate(self.tokens[name], source="127.0.0.1")


def make_people(rt: Context) -> People:
    """One user per role plus a second approver and a second security administrator."""
    toks = {}
    for name, roles in [(r, [r]) for r in ROLES] + [("approver2", ["approver"]), ("secadmin2", ["secadmin"])]:
        iam.change_user(rt, name, roles=roles)
        toks[name] = iam.create_token(rt, name)[1]
    return People(rt, toks)


@pytest.fixture()
def people(sqlite_runtime: Context) -> People:
    """Users on a fresh SQLite state DB."""
    return make_people(sqlite_runtime)
