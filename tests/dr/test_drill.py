"""A drill end to end on the local pools: primary lost, restored and promoted on the backup pool, RPO and RTO measured, report signed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from control_plane.config import load
from control_plane.crypto import SM2PublicKey
from control_plane.report.seal import verify
from control_plane.context import Context
from control_plane.wiring import context_for
from dr import drill
from tests.conftest import make_test_config, write_config
from tests.deploy.test_local_stack import TEST_STACK, _ssh


REGISTRY = """
network_zones: {egov: 政务外网}
pools:
  primary: {name: 主资源池, network_zone: egov, capacity: {vcpu: 8, memory_gib: 32, storage_gib: 500, physical_cores: 4}}
  backup: {name: 备资源池, network_zone: egov, capacity: {vcpu: 8, memory_gib: 32, storage_gib: 500, physical_cores: 4}}
departments:
  - code: city-big-data-bureau
    name: 市政务服务和数据管理局
    systems:
      - {code: population-db, name: 人口库, pools: [primary, backup], stacks: [local], level: 3, rpo_s: 60, rto_s: 1800}
      - {code: one-stop-portal, name: 一网通办, pools: [primary, backup], stacks: [local], level: 3, rpo_s: 60, rto_s: 1}
drill_plans:
  - code: monthly-core
    name: 核心系统月度容灾演练
    systems: [人口库, one-stop-portal]
    cron: "0 10 1 * *"
    participants: [ops_engineer, approver]
    sign_off: approver
"""


@pytest.fixture(scope="module")
def pools(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Context]:
    """The test stack, deployed for this module; a registry with two systems on it, one whose RTO target no drill here can meet."""
    from control_plane.deploy import service as deploy

    tmp = tmp_path_factory.mktemp("drill")
    (tmp / "registry.yaml").write_text(REGISTRY, encoding="utf-8")
    data = make_test_config(var_dir=tmp / "var")
    data["deploy"] = {"stacks": {"local": TEST_STACK}}
    data["report"] = {"registry_file": str(tmp / "registry.yaml")}
    rt = context_for(load(write_config(tmp / "govctl.yaml", data)))
    deploy.up(rt, "local")
    try:
        yield rt
    finally:
        deploy.destroy(rt, "local")


def test_drill_measures_rpo_and_rto_and_fails_back(pools: Context, services) -> None:  # noqa: ANN001
    """Through the gate as the README shows it: dr.drill is high risk, so an approver approves it first."""
    from control_plane.gate import OperationRequest
    from tests.gate.conftest import make_people

    rt = pools
    people = make_people(rt)
    view = rt.gate.submit(people["ops_engineer"], OperationRequest("dr.drill", "local", {"canary_s": 4.0, "system": "人口库"}))
    assert (view.status, view.risk) == ("pending_approval", "high")
    rt.gate.approve(people["approver"], view.id, "drill window agreed")
    rep = rt.gate.run(people["ops_engineer"], view.id).result
    print(f"drill: RPO {rep['rpo_s']} s, RTO {rep['rto_s']} s, canaries {rep['canaries']}")
    assert rep["status"] == "passed", json.dumps(rep, indent=1, ensure_ascii=False)
    assert rep["system"]["code"] == "population-db" and rep["system"]["targets"] == {"rpo_s": 60, "rto_s": 1800}
    assert rep["targets_met"] == {"rpo_s": True, "rto_s": True} and rep["targets_missed"] == []
    c = rep["canaries"]
    assert c["written"] >= 20 and 0 < c["recovered"] <= c["written"] and c["checksum_sm3_match"]
    # synchronous WAL streaming shipped every second: little is lost, and what is lost is measured, not assumed
    assert 0 <= rep["rpo_s"] < 5 and 0 < rep["rto_s"] < 120
    fc = rep["file_canaries"]
    assert fc["written"] >= 8 and 0 < fc["recovered"] <= fc["written"] and fc["checksum_sm3_match"]
    assert 0 <= rep["rpo_files_s"] < 5  # shipped every second; what was not shipped at the loss is lost, and measured
    assert rep["rpo_s"] == pytest.approx(
        (__import__("datetime").datetime.fromisoformat(c["last_written"]) - __import__("datetime").datetime.fromisoformat(c["last_recovered"])).total_seconds(), abs=0.01)
    # the report is signed by the platform key and readable in Chinese
    files = rep["files"]
    data = Path(files["json"]).read_bytes()
    verify(data, json.loads(Path(files["signature"]).read_text()), SM2PublicKey.from_pem(rt.signer.public_key.to_pem()))
    page = Path(files["html"]).read_text(encoding="utf-8")
    assert "容灾切换演练报告" in page and "演练系统：<b>人口库</b>" in page and "RTO目标 ≤ 1800 秒：达标" in page
    listed = drill.list_drills(rt)
    assert listed[0]["id"] == rep["drill"] and listed[0]["rpo_s"] == rep["rpo_s"]
    # the backup host now says it serves; failback undoes it and brings the primary back
    bip = rep["backup"]["address"]
    assert "active-primary" in _ssh(rt, bip, "cat /etc/govctl/pool-role").stdout
    out = drill.cleanup(rt, rep["drill"], by="ops_engineer")
    assert out["failback"] == "successful"
    assert _ssh(rt, bip, "cat /etc/govctl/pool-role").stdout.strip() == "standby"
    assert _ssh(rt, rep["primary"]["address"], "true").returncode == 0


def test_a_drill_that_misses_its_systems_rto_target_fails(pools: Context, services) -> None:  # noqa: ANN001
    """Everything recovered, but 一网通办 must be back within 1 s: the drill fails and says which target it missed, in the signed report too."""
    rt = pools
    rep = drill.run(rt, stack="local", canary_s=2.0, by="ops_engineer", system="一网通办")
    try:
        assert rep["canaries"]["checksum_sm3_match"] and rep["file_canaries"]["checksum_sm3_match"]  # the recovery itself worked
        assert rep["status"] == "failed", json.dumps(rep, indent=1, ensure_ascii=False)
        assert rep["targets_met"] == {"rpo_s": True, "rto_s": False}
        assert rep["targets_missed"] == [f"RTO {rep['rto_s']} s > target 1 s"]
        signed = json.loads(Path(rep["files"]["json"]).read_bytes())
        assert signed["status"] == "failed" and signed["targets_missed"] == rep["targets_missed"]
        assert "RTO目标 ≤ 1 秒：未达标" in Path(rep["files"]["html"]).read_text(encoding="utf-8")
    finally:
        drill.cleanup(rt, rep["drill"], by="ops_engineer")


def test_an_unknown_system_or_one_on_another_stack_is_refused_before_anything_starts(pools: Context) -> None:
    """The gate validates the name against the registry and says what is registered."""
    from control_plane.gate import OperationRequest
    from control_plane.report.registry import RegistryError
    from tests.gate.conftest import make_people

    people = make_people(pools)
    with pytest.raises(RegistryError, match="no system '户籍库'.*") as e:
        pools.gate.submit(people["ops_engineer"], OperationRequest("dr.drill", "local", {"system": "户籍库"}))
    assert "人口库" in (e.value.hint or "")
    with pytest.raises(RegistryError, match="runs on local, not on stack 'other'"):
        drill.system_for(pools, "population-db", "other")


def test_the_monthly_report_lists_drills_planned_against_done(pools: Context, services) -> None:  # noqa: ANN001
    """The plan is due once this month for each of its systems: 人口库's drill passed and its sign-off person approved it;
    一网通办's drill ran without approval (directly) and failed its RTO, so it is not done as planned."""
    from datetime import datetime, timezone

    from control_plane.report.build import Builder, month_window
    from control_plane.report.prom import Prom
    from control_plane.report.registry import load_registry

    rt = pools
    now = datetime.now(timezone.utc)
    month = now.astimezone(__import__("zoneinfo").ZoneInfo("Asia/Shanghai")).strftime("%Y-%m")
    start, _ = month_window(month)
    b = Builder(rt, load_registry(rt.settings.path(rt.settings.report.registry_file)), Prom(rt.settings.services.prometheus.url), month, now=now)
    drills = b._drills()
    assert {d["system"] for d in drills} >= {"population-db", "one-stop-portal"}
    plans = {p["system"]: p for p in b._plans(drills)}
    due_this_month = 1 if start.replace(hour=10) < now else 0  # 10:00 on the 1st, Shanghai time
    pop, portal = plans["population-db"], plans["one-stop-portal"]
    assert (pop["plan"], pop["planned"], pop["sign_off"]) == ("monthly-core", due_this_month, "approver")
    assert pop["done"] >= 1 and pop["passed"] >= 1 and pop["signed_off"] >= 1 and pop["met"]
    assert portal["done"] >= 1 and portal["passed"] == 0 and portal["signed_off"] == 0 and portal["met"] is (due_this_month == 0)
    if due_this_month:
        assert any("一网通办 本月应演练 1 次，已完成并通过 0 次" in n for n in b.notes)
