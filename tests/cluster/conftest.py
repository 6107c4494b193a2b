"""The cluster profile for real: three Elasticsearch nodes, etcd and two Patroni members, started once for these tests on ports of their own.

Nodes are killed with SIGKILL (a machine losing power, not a polite stop) and started again by
the supervisor, as an operator would after the failure.
"""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from control_plane.config import load
from control_plane.context import Context
from control_plane.services import Supervisor
from control_plane.wiring import context_for
from tests.bastion.conftest import wait_until as wait_for  # noqa: F401 - the fault tests import it from here
from tests.conftest import PROJECT, make_test_config, write_config

CLUSTER_VAR = PROJECT / "var" / "test-cluster"
ES_PORT, PG_PORT, REST_PORT, ETCD_PORT = 29200, 25432, 28008, 22379
S3_PORT, WEED_MASTER, FILER_PORT, VOLUME_PORTS = 28333, 29333, 28888, [28080, 28081]
SOURCE = CLUSTER_VAR / "source"  # the files the object-store test backs up


def cluster_config(var_dir: Path = CLUSTER_VAR) -> dict[str, Any]:
    """The cluster profile on this test package's ports; Prometheus, node_exporter and Alertmanager are the session's business."""
    data = make_test_config(var_dir=var_dir)
    data["profile"] = "cluster"
    data["services"] = {
        "elasticsearch": {"port": ES_PORT, "credentials": str(CLUSTER_VAR / "keys" / "elasticsearch.json"), "ca_cert": str(CLUSTER_VAR / "keys" / "elasticsearch-ca.pem")},
        "postgres": {"port": PG_PORT, "credentials": str(CLUSTER_VAR / "keys" / "postgres.json"),
                     "ha": {"members": 2, "rest_port": REST_PORT, "etcd_port": ETCD_PORT}},
        "objectstore": {"port": S3_PORT, "master_port": WEED_MASTER, "filer_port": FILER_PORT, "volume_ports": VOLUME_PORTS},
        "prometheus": {"enabled": False}, "node_exporter": {"enabled": False}, "alertmanager": {"enabled": False},
    }  # fmt: skip
    data["dr"] = {**data["dr"], "sources": {"docs": {"type": "files", "path": str(SOURCE), "every_s": 86400, "rpo_s": 86400}}}
    return data


class Cluster:
    """The running cluster and what the tests do to it."""

    def __init__(self, sup: Supervisor) -> None:
        self.sup = sup
        self.settings = sup.settings

    def kill(self, name: str) -> None:
        """SIGKILL a node's whole process group (for a Patroni member, its PostgreSQL too: the machine is gone)."""
        pid, _ = self.sup._owned_pid(name)
        assert pid is not None, f"{name} is not running"
        postmaster = None
        if name.startswith("postgres"):
            i = 1 if name == "postgres" else int(name.rsplit("-", 1)[1])
            pm = self.sup.root / "postgres-ha" / f"member-{i}" / "data" / "postmaster.pid"
            postmaster = int(pm.read_text().split()[0]) if pm.exists() else None
        os.killpg(pid, signal.SIGKILL)
        if postmaster:
            try:
                os.kill(postmaster, signal.SIGKILL)
            except ProcessLookupError:
                pass

        def gone() -> bool:
            try:
                os.waitpid(pid, os.WNOHANG)  # our child: reap it
            except ChildProcessError:
                pass
            return not Path(f"/proc/{pid}").exists()

        wait_for(gone, f"{name} (pid {pid}) to be gone", within=30)

    def start(self, name: str) -> None:
        from control_plane.services.supervisor import _port_free

        port = self.sup._default_port(name)
        wait_for(lambda: _port_free("127.0.0.1", port), f"port {port} of {name} to be free again", within=60)
        self.sup.up([name])

    def es_master(self) -> str:
        m = self.sup._es_master()
        assert m, "no elected master"
        return "elasticsearch" if m == "govctl-1" else f"elasticsearch-{m.rsplit('-', 1)[1]}"

    def es_health(self) -> str:
        from control_plane.es import client_for

        return str(client_for(self.settings, timeout=5).cluster.health()["status"])

    def pg_members(self) -> list[dict[str, Any]]:
        for i in range(2):
            try:
                return list(json.load(urllib.request.urlopen(f"http://127.0.0.1:{REST_PORT + i}/cluster", timeout=2))["members"])
            except OSError:
                continue
        return []

    def pg_leader(self) -> str | None:
        m = next((m for m in self.pg_members() if m["role"] == "leader" and m["state"] == "running"), None)
        return None if m is None else ("postgres" if m["name"] == "pg-1" else f"postgres-{m['name'].rsplit('-', 1)[1]}")

    def pg_settled(self) -> bool:
        ms = self.pg_members()
        return len(ms) == 2 and any(m["role"] == "leader" for m in ms) and all(m["state"] in ("running", "streaming") for m in ms)


@pytest.fixture(scope="package")
def cluster() -> Iterator[Cluster]:
    """Three Elasticsearch nodes, etcd, two Patroni members: started fresh (data of an earlier run removed), stopped at the end."""
    import shutil

    settings = load(write_config(CLUSTER_VAR / "govctl.yaml", cluster_config()))
    sup = Supervisor(settings)
    sup.down()
    # a fresh cluster each session: its data, and everything of the last session's runtime (keys, the ledger's anchors)
    for d in ("elasticsearch-cluster", "postgres-ha", "etcd", "seaweedfs"):
        shutil.rmtree(sup.root / d, ignore_errors=True)
    for p in CLUSTER_VAR.iterdir():
        if p.name not in ("govctl.yaml", "svc", "source"):
            shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
    settings = load(write_config(CLUSTER_VAR / "govctl.yaml", cluster_config()))
    sup = Supervisor(settings)
    sup.up()
    c = Cluster(sup)
    wait_for(lambda: c.es_health() == "green" and c.pg_settled(), "the cluster to settle (Elasticsearch green, a Patroni leader and a streaming replica)")
    try:
        yield c
    finally:
        if os.environ.get("GOVCTL_KEEP_SERVICES") != "1":
            sup.down()


@pytest.fixture(scope="package")
def cluster_rt(cluster: Cluster) -> Context:
    """The control plane's runtime on the cluster: its state DB is the Patroni cluster (libpq tries each member for the writable one).

    One per package: every runtime on one ledger must sign with the one platform key.
    """
    return context_for(cluster.settings)
