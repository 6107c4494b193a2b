"""`make run PROFILE=cluster` is `govctl --profile cluster up`: every node, two control planes (one leads the scheduler), Ctrl-C stops both."""

from __future__ import annotations

import json
import os
import signal
import subprocess

import httpx
import pytest

from tests.cluster.conftest import CLUSTER_VAR, Cluster, cluster_config, wait_for
from tests.conftest import write_config
from tests.console.kit import free_port, read_until_up
from tests.test_cli import GOVCTL

pytestmark = [pytest.mark.cluster, pytest.mark.services]


def _scheduler(port: int) -> str | None:
    try:
        return str(httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=3).json()["checks"]["scheduler"])
    except (httpx.HTTPError, ValueError, KeyError):
        return None


def test_govctl_up_on_the_cluster_profile_starts_a_standby_control_plane(cluster: Cluster) -> None:
    """Both control planes answer, one leads and one stands by; `services status` shows every node's role and both planes; Ctrl-C stops both."""
    api, standby, ssh = free_port(), free_port(), free_port()
    data = cluster_config()
    data["api"] = {"port": api, "standby_ports": [standby]}
    data["bastion"] = {**data.get("bastion", {}), "port": ssh}
    cfg = write_config(CLUSTER_VAR / "govctl-up.yaml", data)
    env = {**os.environ, "COLUMNS": "200"}
    env.pop("GOVCTL_CONFIG", None)
    proc = subprocess.Popen([*GOVCTL, "--config", str(cfg), "--profile", "cluster", "up"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=env, start_new_session=True)  # fmt: skip
    try:
        lines = read_until_up(proc, 300)
        printed = "".join(lines)
        assert f"http://127.0.0.1:{standby}/" in next(ln for ln in lines if ln.startswith("standby")), printed
        wait_for(lambda: sorted(filter(None, (_scheduler(p) for p in (api, standby)))) == ["leader", "standby"],
                 "one control plane leading the scheduler, the other standing by", within=60)  # fmt: skip
        st = subprocess.run([*GOVCTL, "--config", str(cfg), "services", "status", "--json"], capture_output=True, text=True, env=env, timeout=120)
        rows = {r["name"]: r for r in json.loads(st.stdout)}
        assert st.returncode == 0, st.stderr + st.stdout
        assert sorted(r["role"] for n, r in rows.items() if n.startswith("elasticsearch")) == ["data", "data", "master"], rows
        assert sorted(r["role"] for n, r in rows.items() if n.startswith("postgres")) in (["leader", "replica"], ["leader", "sync_standby"]), rows
        assert all(rows[n]["health"] == "healthy" for n in rows if n.startswith(("seaweed", "etcd"))), rows
        planes = {n: r for n, r in rows.items() if n.startswith("control-plane")}
        assert set(planes) == {"control-plane", "control-plane-2"}, rows
        assert sorted(r["role"] for r in planes.values()) == ["scheduler leader", "scheduler standby"], planes
        assert all(r["health"] == "healthy" and r["pid"] for r in planes.values()), planes
        standby_pid = planes["control-plane-2"]["pid"]
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
    wait_for(lambda: not os.path.exists(f"/proc/{standby_pid}"), "the standby control plane to stop with the first", within=60)
    assert _scheduler(standby) is None and _scheduler(api) is None
