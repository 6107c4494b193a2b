"""Event retention: only daily indices past the configured age go; the legal minimum is enforced."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from control_plane.config import load
from control_plane.errors import ConfigError
from control_plane.soc.retention import apply, expired_indices


def test_which_indices_expire() -> None:
    """Day arithmetic on the index names; anything not a daily event index is ignored."""
    names = ["soc-events-2026.05.28", "soc-events-2026.05.29", "soc-events-2026.11.25", "soc-events-ruletest-x", "soc-alerts"]
    assert expired_indices(names, 180, today=date(2026, 11, 25)) == ["soc-events-2026.05.28"]


def test_below_six_months_refused_unless_forced(tmp_path: Path) -> None:
    """retention_days < 180 is a config error naming the law, unless forced."""
    (tmp_path / "a.yaml").write_text("soc: {retention_days: 30}\n")
    with pytest.raises(ConfigError, match="180 days"):
        load(tmp_path / "a.yaml")
    (tmp_path / "b.yaml").write_text("soc: {retention_days: 30, force_short_retention: true}\n")
    assert load(tmp_path / "b.yaml").soc.retention_days == 30


def test_retention_on_elasticsearch(services) -> None:  # noqa: ANN001
    """Old daily indices are deleted from the real node; recent ones stay."""
    from control_plane.es import client_for

    es = client_for(services.settings)
    for n in ("soc-events-2001.02.03", "soc-events-2099.01.01"):
        es.indices.create(index=n) if not es.indices.exists(index=n) else None
    gone = apply(es, 180)
    assert "soc-events-2001.02.03" in gone and "soc-events-2099.01.01" not in gone
    assert not es.indices.exists(index="soc-events-2001.02.03") and es.indices.exists(index="soc-events-2099.01.01")
    es.indices.delete(index="soc-events-2099.01.01")
