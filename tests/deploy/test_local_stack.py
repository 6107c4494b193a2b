"""A real `pulumi up` and `destroy` of the local pools, through the gate with approvals, checked over SSH."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from control_plane.config import load
from control_plane.gate import ApprovalError, OperationRequest
from control_plane.context import Context
from control_plane.wiring import context_for
from tests.conftest import make_test_config, write_config
from tests.gate.conftest import make_people

TEST_STACK = {
    "target": "local", "department": "city-big-data-bureau", "classification": "sensitive",
    "local_bridge": "govtbr0", "local_gateway": "10.78.0.1/16", "local_prefix": "gt",
    "pools": {"primary": {"role": "primary", "zone": "local-a", "cidr": "10.78.1.0/24",
                          "tiers": {"app": {"count": 1}, "data": {"count": 1, "data_tier": True}}},
              "backup": {"role": "backup", "zone": "local-b", "cidr": "10.78.2.0/24", "tiers": {"data": {"count": 1, "data_tier": True}}}},
}  # fmt: skip


def _netns() -> set[str]:
    return {line.split()[0] for line in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.splitlines() if line}


def _ssh(rt: Context, ip: str, cmd: str) -> subprocess.CompletedProcess[str]:
    from control_plane.deploy.service import ssh_keypair

    key, _ = ssh_keypair(rt)
    return subprocess.run(["ssh", "-i", str(key), "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
                           "-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR", f"root@{ip}", cmd], capture_output=True, text=True, timeout=30)  # fmt: skip


@pytest.fixture()
def deploy_rt(tmp_path: Path) -> Context:
    """A runtime whose 'local' stack uses its own bridge, subnets and namespace prefix."""
    data = make_test_config(var_dir=tmp_path / "var")
    data["deploy"] = {"stacks": {"local": TEST_STACK}}
    return context_for(load(write_config(tmp_path / "govctl.yaml", data)))


def test_local_pools_up_and_destroy_through_the_gate(deploy_rt: Context) -> None:
    """Preview shown to the approver, up after one approval, hosts answer SSH, destroy needs two approvals and removes all."""
    rt = deploy_rt
    people = make_people(rt)
    gate = rt.gate
    before = {n for n in _netns() if n.startswith("gt-")}
    pending = gate.submit(people["ops_engineer"], OperationRequest("deploy.up", "local", reason="initial provisioning"))
    assert pending.status == "pending_approval" and pending.risk == "high"
    planned = {(s["op"], s["name"]) for s in pending.preview["steps"]}
    assert ("create", "primary-pool-data-1") in planned and ("create", "backup-pool-bucket") in planned
    assert {n for n in _netns() if n.startswith("gt-")} == before, "preview must not create anything"
    gate.approve(people["approver"], pending.id, "preview checked")
    try:
        done = gate.run(people["ops_engineer"], pending.id)
        outs = done.result["outputs"]
        assert set(outs["primary_hosts"]) == {"prim-app-1", "prim-data-1"} and set(outs["backup_hosts"]) == {"back-data-1"}
        assert outs["primary_zone"] != outs["backup_zone"]
        assert {"gt-prim-app-1", "gt-prim-data-1", "gt-back-data-1"} <= _netns()
        ip = outs["backup_hosts"]["back-data-1"]
        res = _ssh(rt, ip, "ip -br addr show eth0; nft list table inet govctl_sg")
        assert res.returncode == 0, res.stderr
        assert ip in res.stdout and "policy drop" in res.stdout
        steps = rt.ledger.query(operation="deploy.step", limit=100)
        assert len(steps) >= 10 and all(s.outcome == "succeeded" for s in steps)
        cp = rt.ledger.checkpoint()  # checkpoints are now copied to the backup pool as well
        copy = Path(outs["backup_bucket"]) / "audit" / "checkpoints.jsonl"
        assert cp is not None and f'"seq":{cp["seq"]},' in copy.read_text()

        destroy = gate.submit(people["ops_engineer"], OperationRequest("deploy.destroy", "local", reason="test teardown"))
        assert destroy.risk == "critical" and destroy.approvals_needed == 2
        assert {s["op"] for s in destroy.preview["steps"]} == {"delete"}
        gate.approve(people["approver"], destroy.id)
        with pytest.raises(ApprovalError):
            gate.run(people["ops_engineer"], destroy.id)
        gate.approve(people["approver2"], destroy.id)
        assert gate.run(people["ops_engineer"], destroy.id).status == "succeeded"
        assert not {n for n in _netns() if n.startswith("gt-")}
    finally:
        from control_plane.deploy.service import destroy as force_destroy

        if {n for n in _netns() if n.startswith("gt-")}:
            force_destroy(rt, "local")


def test_unknown_stack_and_bad_stack_config(deploy_rt: Context, tmp_path: Path) -> None:
    """An unknown stack lists the configured ones; a bad stack config names the key."""
    from control_plane.deploy.service import DeployError, stack_spec

    with pytest.raises(DeployError, match="unknown stack 'prod'") as ei:
        stack_spec(deploy_rt, "prod")
    assert "local" in ei.value.hint
    data = make_test_config(var_dir=tmp_path / "var2")
    bad = {**TEST_STACK, "pools": {**TEST_STACK["pools"], "backup": {**TEST_STACK["pools"]["backup"], "zone": "local-a"}}}
    data["deploy"] = {"stacks": {"local": bad}}
    rt = context_for(load(write_config(tmp_path / "bad.yaml", data)))
    with pytest.raises(DeployError, match="pools.backup.zone"):
        stack_spec(rt, "local")
