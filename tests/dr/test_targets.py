"""Drill verdicts against a system's targets, and the registry's systems (no services needed)."""

from __future__ import annotations

import pytest

from control_plane.report.registry import Registry, RegistryError
from dr.drill import judge


def test_judge_met_missed_and_without_target() -> None:
    """At or under the target is met; over it, or not measured, is missed and said in words; no target is no verdict."""
    assert judge(0.4, 12.0, {"rpo_s": 60, "rto_s": 12}) == ({"rpo_s": True, "rto_s": True}, [])
    assert judge(0.4, 12.5, {"rpo_s": 60, "rto_s": 12}) == ({"rpo_s": True, "rto_s": False}, ["RTO 12.5 s > target 12 s"])
    assert judge(None, 3.0, {"rpo_s": 60, "rto_s": None}) == ({"rpo_s": False, "rto_s": None}, ["RPO not measured (target 60 s)"])


def _registry(systems: list[dict]) -> dict:
    return {"network_zones": {"egov": "政务外网"}, "pools": {}, "departments": [{"code": "bureau", "name": "局", "systems": systems}]}


def test_systems_found_by_code_or_name_and_refused_when_ambiguous() -> None:
    """人口库 or population-db finds the same system; two systems sharing a name are refused; an unknown one lists what exists."""
    reg = Registry.model_validate(_registry([{"code": "population-db", "name": "人口库", "level": 3, "rpo_s": 60, "rto_s": 1800}]))
    assert reg.system("人口库")[1] is reg.system("population-db")[1]
    with pytest.raises(RegistryError) as e:
        reg.system("法人库")
    assert "population-db (人口库)" in (e.value.hint or "")
    with pytest.raises(ValueError, match="unique"):
        Registry.model_validate(_registry([{"code": "a", "name": "人口库"}, {"code": "b", "name": "人口库"}]))
    with pytest.raises(ValueError, match="level"):
        Registry.model_validate(_registry([{"code": "a", "name": "x", "level": 6}]))
