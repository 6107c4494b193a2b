"""One schema: every table is declared on one MetaData and created by an Alembic migration, nothing else."""

from __future__ import annotations

from typing import Any

from sqlalchemy import inspect

from control_plane.config import load
from control_plane.db import metadata
from control_plane.wiring import context_for


def test_migrated_tables_are_exactly_the_declared_ones(tmp_path: Any) -> None:
    """A fresh state DB after migrations holds exactly the tables of control_plane.db.metadata (plus Alembic's own)."""
    from tests.conftest import make_test_config, write_config

    ctx = context_for(load(write_config(tmp_path / "govctl.yaml", make_test_config(var_dir=tmp_path / "var"))))
    import control_plane.wiring as w

    w.wiring()  # every domain imported, so every table is declared
    have = set(inspect(ctx.engine).get_table_names()) - {"alembic_version"}
    declared = set(metadata.tables)
    assert have == declared, f"migrated only: {sorted(have - declared)}; declared only: {sorted(declared - have)}"
    assert {"apscheduler_jobs", "dr_drills", "gate_operations", "audit_records"} <= declared
