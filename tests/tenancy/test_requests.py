"""Departments request, resize and return hosts on the local pools through the gate, within quotas; one cannot see another's."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from control_plane.config import load
from control_plane.context import Context
from control_plane.errors import GovctlError
from control_plane.gate import OperationRequest, iam
from control_plane.wiring import context_for
from tests.conftest import make_test_config, write_config
from tests.deploy.test_local_stack import TEST_STACK, _netns, _ssh
from tests.gate.conftest import make_people

REGISTRY = """
network_zones: {egov: 政务外网}
pools:
  primary: {name: 主资源池, network_zone: egov, capacity: {vcpu: 64, memory_gib: 256, storage_gib: 4096, physical_cores: 32}}
  backup: {name: 备资源池, network_zone: egov, capacity: {vcpu: 32, memory_gib: 128, storage_gib: 8192, physical_cores: 16}}
departments:
  - code: city-public-security
    name: 市公安局
    quotas: {primary: {vcpu: 8, memory_gib: 16, storage_gib: 200, hosts: 3}}
  - code: water-bureau
    name: 市水务局
    quotas: {primary: {vcpu: 4, memory_gib: 8, storage_gib: 100, hosts: 2}}
"""
A, B = "city-public-security", "water-bureau"
STACK = {**TEST_STACK, "local_bridge": "govqbr0", "local_gateway": "10.80.0.1/16", "local_prefix": "gq",
         "pools": {"primary": {**TEST_STACK["pools"]["primary"], "cidr": "10.80.1.0/24"},
                   "backup": {**TEST_STACK["pools"]["backup"], "cidr": "10.80.2.0/24"}}}  # fmt: skip


@pytest.fixture(scope="module")
def rt(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Context]:
    from control_plane.deploy import service as deploy

    tmp = tmp_path_factory.mktemp("tenancy")
    (tmp / "registry.yaml").write_text(REGISTRY, encoding="utf-8")
    data = make_test_config(var_dir=tmp / "var")
    data["deploy"] = {"stacks": {"local": STACK}}
    data["report"] = {"registry_file": str(tmp / "registry.yaml")}
    ctx = context_for(load(write_config(tmp / "govctl.yaml", data)))
    try:
        yield ctx
    finally:
        deploy.destroy(ctx, "local")


@pytest.fixture(scope="module")
def people(rt: Context):  # noqa: ANN201
    p = make_people(rt)
    for name, dept in (("alice", A), ("bob", B)):
        iam.change_user(rt, name, roles=["dept_admin"], department=dept)
        p.tokens[name] = iam.create_token(rt, name)[1]
    return p


def _approved(rt: Context, people, who: str, op: OperationRequest):  # noqa: ANN001, ANN202
    view = rt.gate.submit(people[who], op)
    assert (view.status, view.risk) == ("pending_approval", "high")
    rt.gate.approve(people["approver"], view.id, "checked against the department's plan")
    return rt.gate.run(people[who], view.id).result


def _answers(rt: Context, ip: str, name: str) -> bool:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if _ssh(rt, ip, "hostname").stdout.strip() == name:
            return True
        time.sleep(0.5)
    return False


def test_request_within_quota_is_approved_and_deployed_over_quota_refused_with_numbers(rt: Context, people) -> None:  # noqa: ANN001
    from control_plane.tenancy import service as ten

    res = _approved(rt, people, "alice", OperationRequest("resource.request", A, {"hosts": 2, "vcpu": 2, "memory_gib": 4, "storage_gib": 40},
                                                          reason="人口库 扩容"))  # fmt: skip
    hosts = {a["host"]: a for a in res["allocations"]}
    assert set(hosts) == {"prim-r1", "prim-r2"} and {"gq-prim-r1", "gq-prim-r2"} <= _netns()
    assert _answers(rt, hosts["prim-r1"]["address"], "prim-r1")
    assert ten.usage(rt, A, "primary") == {"hosts": 2, "vcpu": 4, "memory_gib": 8, "storage_gib": 80}
    with pytest.raises(GovctlError, match=r"over 市公安局's quota in the primary pool: hosts 2 \+ 2 > 3; vCPU 4 \+ 8 > 8; memory GiB 8 \+ 16 > 16") as e:
        rt.gate.submit(people["alice"], OperationRequest("resource.request", A, {"hosts": 2, "vcpu": 4, "memory_gib": 8, "storage_gib": 40}))
    assert "return something first" in (e.value.hint or "")
    with pytest.raises(GovctlError, match="bob administers water-bureau"):
        rt.gate.submit(people["bob"], OperationRequest("resource.request", A, {"hosts": 1, "vcpu": 1, "memory_gib": 1, "storage_gib": 1}))


def test_another_department_sees_none_of_it(rt: Context, people) -> None:  # noqa: ANN001
    from control_plane.tenancy import service as ten

    assert {r["department"] for r in ten.listing(rt, ten.scope(rt, "alice", None))} == {A}
    assert ten.listing(rt, ten.scope(rt, "bob", None)) == []
    with pytest.raises(GovctlError, match="bob administers water-bureau, not city-public-security") as e:
        ten.scope(rt, "bob", A)
    assert "sees only their own department" in (e.value.hint or "")
    assert [q["department"] for q in ten.quotas(rt, ten.scope(rt, "bob", None))] == [B]
    assert {r["department"] for r in ten.listing(rt, ten.scope(rt, "ops_engineer", None))} == {A}  # the bureau sees every department
    mine = ten.listing(rt, A)[0]["id"]
    with pytest.raises(GovctlError, match="bob administers water-bureau"):
        rt.gate.submit(people["bob"], OperationRequest("resource.return", mine, {}))
    # hosts: the stack belongs to the big-data bureau (TEST_STACK's department); alice's two are hers alone
    assert {h["host"] for h in ten.department_hosts(rt, A)} == {"prim-r1", "prim-r2"}
    assert ten.department_hosts(rt, B) == []
    bureau = {h["host"] for h in ten.department_hosts(rt, TEST_STACK["department"])}
    assert {"prim-app-1", "prim-data-1", "back-data-1"} <= bureau and not bureau & {"prim-r1", "prim-r2"}
    # audit: A's records are its requests and its people's acts; B's hold bob's own refused attempt, none of alice's
    a_audit, b_audit = ten.department_audit(rt, A), ten.department_audit(rt, B)
    assert any(r["operation"] == "resource.request" and r["actor"] == "alice" and r["outcome"] == "succeeded" for r in a_audit)
    assert b_audit and all(r["actor"] == "bob" for r in b_audit) and not any(r["actor"] == "alice" for r in b_audit)
    # alerts: one about prim-r1 concerns A, one about another host does not (alert documents as the SOC stores them)
    about = {"group_key": "host.name=prim-r1|user.name=root|source.ip=|govctl.target=", "events": [{"host": {"name": "prim-r1"}}]}
    other = {"group_key": "host.name=prim-app-1|user.name=|source.ip=10.0.0.9|govctl.target=", "events": [{"host": {"name": "prim-app-1"}}]}
    hosts_a = {h["host"] for h in ten.department_hosts(rt, A)}
    assert ten.alert_concerns(about, hosts_a) and not ten.alert_concerns(other, hosts_a)
    assert not ten.alert_concerns({"group_key": "host.name=prim-r10|", "events": []}, hosts_a)  # prim-r1 is not a prefix match


def test_resize_then_return_frees_the_quota(rt: Context, people) -> None:  # noqa: ANN001
    from control_plane.deploy import service as deploy
    from control_plane.tenancy import service as ten

    r1, r2 = sorted(ten.listing(rt, A), key=lambda r: r["slot"])
    with pytest.raises(GovctlError, match=r"vCPU 2 \+ 8 > 8"):  # the other host's 2 vCPU count, this one's do not
        rt.gate.submit(people["alice"], OperationRequest("resource.resize", r1["id"], {"vcpu": 8}))
    out = _approved(rt, people, "alice", OperationRequest("resource.resize", r1["id"], {"vcpu": 4, "memory_gib": 8}))
    assert out["before"]["vcpu"] == 2 and out["after"] == {"vcpu": 4, "memory_gib": 8, "storage_gib": 40}
    state = deploy.stack(rt, "local").export_stack().deployment["resources"]
    host = next(r for r in state if r["urn"].endswith("::primary-pool-r1"))
    assert host["outputs"]["tags"]["vcpu"] == "4" and host["outputs"]["tags"]["department"] == A
    gone = _approved(rt, people, "alice", OperationRequest("resource.return", r2["id"], {}))
    assert gone["freed"] == {"hosts": 1, "vcpu": 2, "memory_gib": 4, "storage_gib": 40}
    assert "gq-prim-r2" not in _netns() and "gq-prim-r1" in _netns()
    assert ten.usage(rt, A, "primary") == {"hosts": 1, "vcpu": 4, "memory_gib": 8, "storage_gib": 40}
    assert ten.get(rt, r2["id"])["status"] == "returned"
    assert set(deploy.preview(rt, "local")["change_summary"]) <= {"same"}, "the records and the stack agree"


def test_an_expired_host_is_reminded_then_reclaimed_after_the_department_answers(rt: Context, people) -> None:  # noqa: ANN001
    """Extended to a date a few days off: the reminder is announced; past it, the scheduler files a reclamation request; the
    department answers it (another cannot); the approver approves and the job returns the host."""
    from datetime import date, timedelta

    from control_plane.notify.service import _found
    from control_plane.tenancy import scheduled
    from control_plane.tenancy import service as ten

    (r1,) = ten.listing(rt, A)
    soon = (date.today() + timedelta(days=3)).isoformat()
    _approved(rt, people, "alice", OperationRequest("resource.extend", r1["id"], {"expires": soon}))
    assert ten.get(rt, r1["id"])["expires"] == soon
    reminders = [m for m in _found(rt) if m.kind == "expiry"]
    assert [m.id for m in reminders] == [f"expiry:{r1['id']}:{soon}"] and "自动提交回收申请" in reminders[0].body
    assert scheduled.reclaim_requests(rt, today=date.today()) == []  # not expired yet
    made = scheduled.reclaim_requests(rt, today=date.today() + timedelta(days=4))
    assert [(m["allocation"], m["kind"]) for m in made] == [(r1["id"], "expired")]
    assert scheduled.reclaim_requests(rt, today=date.today() + timedelta(days=4)) == [], "one request per host, not one per run"
    op = made[0]["op"]
    assert [r["op"] for r in ten.reclaims(rt, ten.scope(rt, "alice", None))] == [op]
    assert ten.reclaims(rt, ten.scope(rt, "bob", None)) == []
    with pytest.raises(GovctlError, match="bob administers water-bureau"):
        rt.gate.submit(people["bob"], OperationRequest("resource.answer", op, {"answer": "confirm", "note": ""}))
    with pytest.raises(GovctlError, match="says why"):
        rt.gate.submit(people["alice"], OperationRequest("resource.answer", op, {"answer": "justify", "note": ""}))
    rt.gate.submit(people["alice"], OperationRequest("resource.answer", op, {"answer": "confirm", "note": ""}))
    assert ten.reclaims(rt, A)[0]["answer"]["answer"] == "confirm"
    assert scheduled.run_approved(rt) == []  # nothing approved yet: nothing happens
    assert "gq-prim-r1" in _netns()
    rt.gate.approve(people["approver"], op, "the department confirmed")
    ran = scheduled.run_approved(rt)
    assert ran == [{"allocation": r1["id"], "op": op, "status": "succeeded"}]
    assert "gq-prim-r1" not in _netns() and ten.get(rt, r1["id"])["status"] == "returned"
    assert ten.usage(rt, A, "primary") == {"hosts": 0, "vcpu": 0, "memory_gib": 0, "storage_gib": 0}


def test_the_monthly_report_counts_requests_refusals_quota_use_and_reclaimed_capacity(rt: Context) -> None:
    """What this module did, counted by hand: one request approved, two refused (over quota; from another department),
    one reclamation request, two hosts reclaimed (one returned, one expired), nothing held now."""
    from datetime import datetime, timezone
    from zoneinfo import ZoneInfo

    from control_plane.report.build import Builder
    from control_plane.report.prom import Prom
    from control_plane.report.registry import load_registry

    now = datetime.now(timezone.utc)
    month = now.astimezone(ZoneInfo("Asia/Shanghai")).strftime("%Y-%m")
    b = Builder(rt, load_registry(rt.settings.path(rt.settings.report.registry_file)), Prom(rt.settings.services.prometheus.url), month, now=now)
    rows = {r["department"]: r for r in b.resources()}
    a = rows[A]
    assert (a["requests"], a["approved"], a["rejected"], a["pending"], a["refused"], a["reclaim_requests"]) == (1, 1, 0, 0, 2, 1)
    assert a["reclaimed"] == {"hosts": 2, "vcpu": 2 + 4, "memory_gib": 4 + 8, "storage_gib": 40 + 40}
    assert a["quotas"] == [{"pool": "primary", "quota": {"vcpu": 8, "memory_gib": 16, "storage_gib": 200, "hosts": 3},
                            "used": {"hosts": 0, "vcpu": 0, "memory_gib": 0, "storage_gib": 0}}]  # fmt: skip
    assert rows[B]["requests"] == 0 and rows[B]["reclaimed"]["hosts"] == 0


def test_the_bureau_changes_a_quota_through_the_gate(rt: Context, people) -> None:  # noqa: ANN001
    """resource.quota: a sysadmin asks, an approver approves; the new numbers are what requests are checked against and what
    the report shows; a department administrator cannot change its own quota."""
    from control_plane.tenancy import service as ten

    with pytest.raises(GovctlError, match="may not"):
        rt.gate.submit(people["bob"], OperationRequest("resource.quota", B, {"pool": "primary", "vcpu": 64, "memory_gib": 64, "storage_gib": 64, "hosts": 9}))
    out = _approved_by(rt, people, "sysadmin", OperationRequest("resource.quota", B, {"pool": "primary", "vcpu": 1, "memory_gib": 8, "storage_gib": 100,
                                                                                      "hosts": 2}, reason="水务局 本年度压减"))  # fmt: skip
    assert out["before"] == {"vcpu": 4, "memory_gib": 8, "storage_gib": 100, "hosts": 2} and out["after"]["vcpu"] == 1
    assert ten.quotas(rt, B)[0]["quota"]["vcpu"] == 1
    with pytest.raises(GovctlError, match=r"vCPU 0 \+ 2 > 1"):
        rt.gate.submit(people["bob"], OperationRequest("resource.request", B, {"vcpu": 2, "memory_gib": 1, "storage_gib": 1}))


def test_a_host_under_used_all_month_gets_a_reclamation_request_the_department_can_justify(rt: Context, people) -> None:  # noqa: ANN001
    """The previous month's report listed the host as under-used: one request per host and month; the department justifies
    keeping it, the approver rejects the request and the host stays; a request in the wrong network zone is refused."""
    from control_plane.tenancy import scheduled
    from control_plane.tenancy import service as ten

    with pytest.raises(GovctlError, match="in network zone egov, not internet"):
        rt.gate.submit(people["bob"], OperationRequest("resource.request", B, {"vcpu": 1, "memory_gib": 1, "storage_gib": 1, "network_zone": "internet"}))
    res = _approved(rt, people, "bob", OperationRequest("resource.request", B, {"vcpu": 1, "memory_gib": 1, "storage_gib": 1, "network_zone": "egov"}))
    (mine,) = res["allocations"]
    idle = {mine["host"]: {"host": mine["host"], "pool": "primary", "department": B, "vcpu": 1, "cpu_mean": 0.004, "cpu_p95": 0.011}}
    made = scheduled.reclaim_requests(rt, underused=("2026-11", idle))
    assert [(m["allocation"], m["kind"]) for m in made] == [(mine["id"], "underused")]
    (req,) = ten.reclaims(rt, B)
    assert "低利用率回收申请" in req["reason"] and "2026-11" in req["reason"] and req["kind"] == "underused"
    rt.gate.submit(people["bob"], OperationRequest("resource.answer", req["op"], {"answer": "justify", "note": "汛期应急备用，6 月启用"}))
    assert ten.reclaims(rt, B)[0]["answer"]["note"] == "汛期应急备用，6 月启用"
    rt.gate.approve(people["approver"], req["op"], "the department's reason holds", decision="reject")
    assert ten.reclaims(rt, B) == [] and scheduled.run_approved(rt) == []
    assert ten.get(rt, mine["id"])["status"] == "active" and f"gq-{mine['host']}" in _netns()
    assert scheduled.reclaim_requests(rt, underused=("2026-11", idle)) == [], "the same month is not asked twice"
    assert [m["kind"] for m in scheduled.reclaim_requests(rt, underused=("2026-12", idle))] == ["underused"]

def _approved_by(rt: Context, people, who: str, op: OperationRequest):  # noqa: ANN001, ANN202
    view = rt.gate.submit(people[who], op)
    assert view.status == "pending_approval"
    rt.gate.approve(people["approver"], view.id, "agreed")
    return rt.gate.run(people[who], view.id).result
