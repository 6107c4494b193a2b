"""Playbooks against the local pools' hosts over SSH: responses really take effect, and re-runs change nothing."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from control_plane.config import load
from control_plane.gate import OperationRequest
from control_plane.playbook import service as pb
from control_plane.context import Context
from control_plane.wiring import context_for
from tests.conftest import make_test_config, write_config
from tests.deploy.test_local_stack import TEST_STACK, _ssh
from tests.gate.conftest import make_people

CLIENT_NS, CLIENT_IP = "gt-client", "10.78.3.50"


def _sh(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=30)


def can_connect(ip: str, port: int = 22) -> bool:
    """True if the test's client host can open a TCP connection to ip:port (one attempt, 2 s)."""
    code = f"import socket; socket.create_connection(('{ip}', {port}), timeout=2).close()"
    return _sh("ip", "netns", "exec", CLIENT_NS, "python3", "-c", code).returncode == 0


def connects_soon(ip: str, port: int = 22, within_s: float = 10) -> bool:
    """True once the client can connect; for checks that access is (back): a fresh link or rule may take a moment under load."""
    import time

    deadline = time.monotonic() + within_s
    while True:
        if can_connect(ip, port):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)


@pytest.fixture(scope="module")
def pools(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Context, dict[str, str]]]:
    """The test stack, deployed once for this module, plus a client host on the same bridge."""
    from control_plane.deploy import service as deploy

    tmp = tmp_path_factory.mktemp("pb")
    data = make_test_config(var_dir=tmp / "var")
    # SSH is open to the control plane only by default (the bastion); this module's client stands for an outside
    # address whose access the response playbooks block and restore, so the stack admits its network too
    data["deploy"] = {"stacks": {"local": {**TEST_STACK, "ssh_sources": [f"{TEST_STACK['local_gateway'].split('/')[0]}/32", f"{CLIENT_IP}/32"]}}}
    rt = context_for(load(write_config(tmp / "govctl.yaml", data)))
    outs = deploy.up(rt, "local")["outputs"]
    hosts = {**outs["primary_hosts"], **outs["backup_hosts"]}
    _sh("ip", "netns", "add", CLIENT_NS)
    _sh("ip", "link", "add", "vgtclient", "type", "veth", "peer", "name", "eth0", "netns", CLIENT_NS)
    _sh("ip", "link", "set", "vgtclient", "master", TEST_STACK["local_bridge"], "up")
    _sh("ip", "netns", "exec", CLIENT_NS, "ip", "addr", "add", f"{CLIENT_IP}/16", "dev", "eth0")
    _sh("ip", "netns", "exec", CLIENT_NS, "ip", "link", "set", "eth0", "up")
    _sh("ip", "netns", "exec", CLIENT_NS, "ip", "link", "set", "lo", "up")
    try:
        yield rt, hosts
    finally:
        _sh("ip", "netns", "del", CLIENT_NS)
        _sh("ip", "link", "del", "vgtclient")
        deploy.destroy(rt, "local")


def _twice(rt: Context, name: str, host: str, **extravars: str) -> tuple[pb.PlaybookRun, pb.PlaybookRun]:
    first = pb.run(rt, name, [host], extravars=extravars)
    second = pb.run(rt, name, [host], extravars=extravars)
    assert first.status == second.status == "successful", (first.as_dict(), second.as_dict())
    return first, second


def test_block_then_unblock_through_the_gate(pools: tuple[Context, dict[str, str]]) -> None:
    """block_ip (approved via the gate, check-mode preview) stops the client; unblock_ip lets it back; re-runs change nothing."""
    rt, hosts = pools
    ip = hosts["prim-app-1"]
    assert connects_soon(ip)
    people = make_people(rt)
    view = rt.gate.submit(people["secadmin"], OperationRequest("playbook.run", "prim-app-1",
                                                               {"playbook": "block_ip", "extravars": {"ip": CLIENT_IP}}, reason="brute force"))  # fmt: skip
    assert view.status == "pending_approval" and view.preview["check_mode"] == "successful"
    assert view.preview["changed"] == {"prim-app-1": 1}
    assert connects_soon(ip), "the check-mode preview must not change anything"
    rt.gate.approve(people["approver"], view.id, "seen the diff")
    done = rt.gate.run(people["secadmin"], view.id)
    assert done.result["changed"] == {"prim-app-1": 1}
    assert not can_connect(ip), "the blocked address still connects"
    assert _ssh(rt, ip, "true").returncode == 0, "the control plane lost access"
    again = pb.run(rt, "block_ip", ["prim-app-1"], extravars={"ip": CLIENT_IP})
    assert again.status == "successful" and again.changed == {}
    assert connects_soon(hosts["prim-data-1"]), "only the limited host was changed"

    first, second = _twice(rt, "unblock_ip", "prim-app-1", ip=CLIENT_IP)
    assert first.changed == {"prim-app-1": 1} and second.changed == {}
    assert connects_soon(ip)
    tasks = rt.ledger.query(operation="playbook.task", target="prim-app-1", limit=200)
    assert [t.outcome for t in tasks].count("changed") >= 2  # the block and the unblock, recorded as they happened


def test_isolate_and_release(pools: tuple[Context, dict[str, str]]) -> None:
    """isolate_host cuts the client off but keeps the control plane's access; release_host restores it."""
    rt, hosts = pools
    ip = hosts["back-data-1"]
    first, second = _twice(rt, "isolate_host", "back-data-1")
    assert first.changed == {"back-data-1": 1} and second.changed == {}
    assert not can_connect(ip)
    assert _ssh(rt, ip, "true").returncode == 0
    first, second = _twice(rt, "release_host", "back-data-1")
    assert first.changed == {"back-data-1": 1} and second.changed == {}
    assert connects_soon(ip)


def test_lock_account_stays_on_the_host(pools: tuple[Context, dict[str, str]]) -> None:
    """lock_account locks the host's account; the machine's own /etc/passwd never sees it."""
    rt, hosts = pools
    ip = hosts["prim-data-1"]
    assert _ssh(rt, ip, "id citizen-svc >/dev/null 2>&1 || useradd -M citizen-svc").returncode == 0
    first, second = _twice(rt, "lock_account", "prim-data-1", account="citizen-svc")
    assert first.changed == {"prim-data-1": 1} and second.changed == {}
    assert _ssh(rt, ip, "passwd -S citizen-svc").stdout.split()[1] == "L"
    assert "citizen-svc" not in Path("/etc/passwd").read_text()


def test_baseline_check_then_apply(pools: tuple[Context, dict[str, str]]) -> None:
    """Check mode shows the diff and changes nothing; applying writes the host's files; a re-run changes nothing."""
    rt, hosts = pools
    ip = hosts["prim-app-1"]
    dropin = "/etc/ssh/sshd_config.d/90-govctl-baseline.conf"
    preview = pb.run(rt, "baseline", ["prim-app-1"], check=True)
    assert preview.status == "successful" and preview.changed.get("prim-app-1", 0) >= 4
    assert any("MaxAuthTries 3" in str(d["diff"]) for d in preview.diffs)
    assert _ssh(rt, ip, f"test -e {dropin}").returncode == 1
    first, second = _twice(rt, "baseline", "prim-app-1")
    assert first.changed["prim-app-1"] >= 4 and second.changed == {}
    assert "MaxAuthTries 3" in _ssh(rt, ip, f"cat {dropin}").stdout
    assert not Path(dropin).exists(), "the playbook changed this machine instead of the host"


def test_log_shipping_config(pools: tuple[Context, dict[str, str]]) -> None:
    """The rsyslog output points at the SOC's daily indices."""
    rt, hosts = pools
    first, second = _twice(rt, "log_shipping", "back-data-1", es_host="10.78.0.1")
    assert first.changed["back-data-1"] >= 1 and second.changed == {}
    conf = _ssh(rt, hosts["back-data-1"], "cat /etc/rsyslog.d/60-govctl-es.conf").stdout
    assert "soc-events-%timereported:1:4%" in conf and 'server="10.78.0.1"' in conf
    # the shipper's own create-only credentials, over TLS with our CA; the file holding them is root's alone
    from control_plane.services.es_security import SHIPPER_USER, load_credentials

    assert 'usehttps="on"' in conf and f'uid="{SHIPPER_USER}"' in conf and 'writeoperation="create"' in conf
    assert f'pwd="{load_credentials(rt.settings.es_credentials_path())[SHIPPER_USER]}"' in conf
    assert _ssh(rt, hosts["back-data-1"], "stat -c %a /etc/rsyslog.d/60-govctl-es.conf").stdout.strip() == "600"
    assert "BEGIN CERTIFICATE" in _ssh(rt, hosts["back-data-1"], "cat /etc/rsyslog.d/govctl-es-ca.pem").stdout


def test_bad_input_refused_before_anything_runs(pools: tuple[Context, dict[str, str]]) -> None:
    """An unknown playbook or a host outside the inventory: refused at submission, audited, nothing run."""
    rt, _ = pools
    people = make_people(rt)
    with pytest.raises(pb.PlaybookError, match="no playbook 'wipe_disks'") as ei:
        rt.gate.submit(people["ops_engineer"], OperationRequest("playbook.run", "prim-app-1", {"playbook": "wipe_disks"}))
    assert "block_ip" in ei.value.hint
    with pytest.raises(pb.PlaybookError, match="outside the inventory"):
        rt.gate.submit(people["ops_engineer"], OperationRequest("playbook.run", "db-9", {"playbook": "block_ip", "extravars": {"ip": "1.2.3.4"}}))
    refused = [r for r in rt.ledger.query(operation="playbook.run", limit=50) if r.outcome == "refused"]
    assert len(refused) >= 2


def test_cancel_and_timeout_kill_the_run(pools: tuple[Context, dict[str, str]]) -> None:
    """A cancelled or timed-out run ends as such, leaves no ansible-playbook or ssh behind, and a re-run succeeds."""
    import threading

    rt, _ = pools
    cancel = threading.Event()
    cancel.set()
    res = pb.run(rt, "baseline", ["prim-data-1"], cancel=cancel)
    assert res.status == "canceled" and res.rc == 254
    res = pb.run(rt, "baseline", ["prim-data-1"], timeout=1)
    assert res.status in ("timeout", "successful")  # a very fast machine may finish within the second
    left = subprocess.run(["pgrep", "-f", f"{rt.settings.var}/ansible/runs"], capture_output=True, text=True).stdout.split()
    assert left == [], f"processes of cancelled runs still alive: {left}"
    assert pb.run(rt, "baseline", ["prim-data-1"]).status == "successful"


def test_node_exporter_on_the_host_address(pools: tuple[Context, dict[str, str]]) -> None:
    """node_exporter answers on the host's own address after one run; the second run starts nothing."""
    import httpx

    rt, hosts = pools
    first, second = _twice(rt, "node_exporter", "prim-data-1")
    assert first.changed == {"prim-data-1": 2} and second.changed == {}  # pid directory, then the daemon
    ip = hosts["prim-data-1"]
    import time

    for _ in range(30):
        try:
            if "node_cpu_seconds_total" in httpx.get(f"http://{ip}:9100/metrics", timeout=2).text:
                return
        except httpx.HTTPError:
            time.sleep(0.3)
    pytest.fail("node_exporter did not answer on the host's address")


def test_failover_and_failback_markers(pools: tuple[Context, dict[str, str]]) -> None:
    """failover marks the backup host as serving; failback returns it to standby; both idempotent."""
    rt, hosts = pools
    first, second = _twice(rt, "failover", "backup")
    assert first.changed == {"back-data-1": 2} and second.changed == {}
    assert _ssh(rt, hosts["back-data-1"], "cat /etc/govctl/pool-role").stdout.startswith("active-primary")
    first, second = _twice(rt, "failback", "backup")
    assert first.changed == {"back-data-1": 1} and second.changed == {}
    assert _ssh(rt, hosts["back-data-1"], "cat /etc/govctl/pool-role").stdout == "standby\n"


def test_alert_response_runs_through_the_gate(pools: tuple[Context, dict[str, str]], services, tmp_path: Path) -> None:  # noqa: ANN001
    """An alert whose rule has response: block_ip asks the gate; once approved the job blocks the source and records it."""
    from datetime import datetime, timedelta, timezone

    from control_plane.soc import alerts, detect
    from control_plane.soc.ingest import Ingestor
    from control_plane.soc.respond import run_approved
    from control_plane.soc.rules import load_rules

    rt, hosts = pools
    rules_dir = tmp_path / "rules"
    rules_dir.mkdir()
    (rules_dir / "client_login.yml").write_text(
        "title: Login from the test client\nid: 5e0c2a8e-8a1b-4c51-9a0d-3b5f0f6c7d21\nstatus: test\n"
        "logsource: {product: linux, service: sshd}\n"
        f"detection:\n  sel:\n    event.action: ssh_login\n    source.ip: '{CLIENT_IP}'\n  condition: sel\n"
        "level: high\nseverity: high\naction: alert\nresponse: block_ip\ntags: [attack.initial_access]\n"
    )
    now = datetime.now(timezone.utc)
    Ingestor(rt.es, tmp_path / "spool").ingest([{
        "@timestamp": (now - timedelta(seconds=20)).isoformat().replace("+00:00", "Z"), "host": {"name": "prim-app-1"},
        "process": {"name": "sshd"}, "event": {"module": "syslog", "category": ["authentication"], "action": "ssh_login", "outcome": "success"},
        "user": {"name": "ops"}, "source": {"ip": CLIENT_IP}}])  # fmt: skip
    rt.es.indices.refresh(index="soc-events-*")
    assert connects_soon(hosts["prim-app-1"])
    detect.run(rt, load_rules(rules_dir), settle_s=0)
    alert = next(a for a in alerts.search(rt.es, rule="client_login", limit=50) if a.get("response"))
    resp = alert["response"]
    assert resp["status"] == "pending_approval" and resp["extravars"] == {"ip": CLIENT_IP} and resp["target"] == "prim-app-1"
    assert connects_soon(hosts["prim-app-1"]), "nothing runs before an approver says so"
    people = make_people(rt)
    rt.gate.approve(people["approver"], resp["op_id"], "block it")
    done = run_approved(rt)
    assert [d["status"] for d in done] == ["succeeded"]
    assert not can_connect(hosts["prim-app-1"])
    after = alerts.get(rt.es, alert["id"])
    assert after["response"]["status"] == "succeeded" and after["response"]["changed"] == {"prim-app-1": 1}
    pb.run(rt, "unblock_ip", ["prim-app-1"], extravars={"ip": CLIENT_IP})
    assert connects_soon(hosts["prim-app-1"])


def test_fifty_runs_after_a_deployment_all_succeed(pools: tuple[Context, dict[str, str]]) -> None:
    """This process ran a Pulumi deployment (gRPC threads); Ansible is spawned, never forked from it: 50 runs, 50 successes."""
    import sys

    rt, _ = pools
    assert any(m.startswith("grpc") for m in sys.modules), "the fixture's deployment should have loaded gRPC here"
    results = [pb.run(rt, "release_host", ["prim-app-1"]) for _ in range(50)]
    assert [r.status for r in results] == ["successful"] * 50, [(r.status, r.rc) for r in results if r.status != "successful"]
