"""The local services really run; start-up failures are clear one-liners; nothing hangs."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from control_plane.config import load
from control_plane.services import ServiceError, Supervisor
from tests.conftest import make_test_config, write_config


def test_all_services_healthy(services: Supervisor) -> None:
    """Elasticsearch, Prometheus, node_exporter, Alertmanager and PostgreSQL report healthy with pids."""
    rows = {s.name: s for s in services.status()}
    assert set(rows) == {"elasticsearch", "prometheus", "node_exporter", "postgres", "alertmanager"}
    for s in rows.values():
        assert s.health == "healthy", s
        assert s.pid and Path(f"/proc/{s.pid}").exists()


def test_services_are_the_real_thing(services: Supervisor) -> None:
    """Each answers like the genuine server: ES product header, Prometheus query API, node metrics, SQL."""
    cfg = services.settings.services
    from control_plane.services.es_security import CONTROL_PLANE_USER, load_credentials

    ca, creds = str(services.settings.es_ca_path()), load_credentials(services.settings.es_credentials_path())
    import ssl

    r = httpx.get(f"{cfg.elasticsearch.url}/_cluster/health", verify=ssl.create_default_context(cafile=ca), auth=(CONTROL_PLANE_USER, creds[CONTROL_PLANE_USER]))
    assert r.headers["x-elastic-product"] == "Elasticsearch" and r.json()["status"] in ("green", "yellow")
    q = httpx.get(f"{cfg.prometheus.url}/api/v1/query", params={"query": "up"}).json()
    assert q["status"] == "success"
    assert "node_cpu_seconds_total" in httpx.get(f"http://127.0.0.1:{cfg.node_exporter.port}/metrics").text
    am = httpx.get(f"http://127.0.0.1:{cfg.alertmanager.port}/api/v2/status").json()
    assert am["config"]["original"] and am["cluster"]["status"] == "disabled"  # one instance, no gossip port
    targets = httpx.get(f"{cfg.prometheus.url}/api/v1/alertmanagers").json()["data"]["activeAlertmanagers"]
    assert [t["url"] for t in targets] == [f"http://127.0.0.1:{cfg.alertmanager.port}/api/v2/alerts"]
    pg = cfg.postgres
    with psycopg.connect(host=pg.host, port=services.port("postgres"), user=pg.user,
                         password=services.settings.pg_password("app"), dbname=pg.database) as conn:  # fmt: skip
        assert conn.execute("SHOW wal_level").fetchone()[0] == "replica"


def test_prometheus_scrapes_node_exporter(services: Supervisor) -> None:
    """Prometheus's generated config scrapes node_exporter: the target turns up within a few scrapes."""
    url = services.settings.services.prometheus.url
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        targets = httpx.get(f"{url}/api/v1/targets").json()["data"]["activeTargets"]
        node = [t for t in targets if t["labels"]["job"] == "node"]
        if node and node[0]["health"] == "up":
            return
        time.sleep(1)
    pytest.fail(f"node target not up: {node}")


def test_up_is_idempotent(services: Supervisor) -> None:
    """A second `up` starts nothing and keeps the same pids."""
    before = {s.name: s.pid for s in services.status()}
    events: list[str] = []
    services.up(on_event=lambda n, m: events.append(m))
    assert all(m.startswith("already running") or m == "ready" for m in events), events
    assert {s.name: s.pid for s in services.status()} == before


def test_postgres_never_uses_system_cluster(services: Supervisor) -> None:
    """Our cluster's data directory is under var/, not the system's."""
    pg_pid = next(s.pid for s in services.status() if s.name == "postgres")
    cmd = Path(f"/proc/{pg_pid}/cmdline").read_bytes().decode(errors="replace")
    assert str(services.root.resolve()) in os.path.realpath(cmd.split("\0")[2]) or "/svc/postgres/data" in cmd


_MADE: list[Supervisor] = []


@pytest.fixture(autouse=True)
def _remove_fallback_roots() -> Iterator[None]:
    """Isolated supervisors in pytest's 0700 tmp dirs get a root under /var/lib/govctl: remove it afterwards."""
    yield
    while _MADE:
        sup = _MADE.pop()
        sup.down()
        if str(sup.root).startswith("/var/lib/govctl/"):
            shutil.rmtree(sup.root, ignore_errors=True)


def _supervisor(tmp_path: Path, data: dict) -> Supervisor:
    sup = Supervisor(load(write_config(tmp_path / "govctl.yaml", data)))
    _MADE.append(sup)
    return sup


def _isolated(tmp_path: Path, **node: object) -> Supervisor:
    data = make_test_config(var_dir=tmp_path / "var")
    data["services"]["node_exporter"].update(node)
    for other in ("elasticsearch", "prometheus", "postgres", "alertmanager"):
        data["services"][other]["enabled"] = False
    return _supervisor(tmp_path, data)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_port_taken_is_a_clear_error(tmp_path: Path) -> None:
    """A port held by a stranger: the error names the service, the port and what to do."""
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    try:
        with pytest.raises(ServiceError) as ei:
            _isolated(tmp_path, port=port).up(["node_exporter"])
        msg = ei.value.one_line()
        assert "node_exporter" in msg and str(port) in msg and "in use" in msg and "services.node_exporter.port" in msg
    finally:
        holder.close()


def test_missing_binary_is_a_clear_error(tmp_path: Path) -> None:
    """A binary that is not installed: the error says which and how to install it."""
    with pytest.raises(ServiceError) as ei:
        _isolated(tmp_path, port=_free_port(), binary="/nonexistent/prometheus-node-exporter").up(["node_exporter"])
    assert "node_exporter" in ei.value.message and "not found" in ei.value.message and "make setup" in ei.value.hint


def test_crash_on_start_names_log(tmp_path: Path, shared_tmp: Path) -> None:
    """A process that dies at start-up: exit code, the last log lines and the log file, promptly."""
    script = shared_tmp / "crashy"
    script.write_text("#!/bin/sh\necho 'fatal: cannot open config' >&2\nexit 3\n")
    script.chmod(0o755)
    sup = _isolated(tmp_path, port=_free_port(), binary=str(script))
    t0 = time.monotonic()
    with pytest.raises(ServiceError) as ei:
        sup.up(["node_exporter"])
    assert time.monotonic() - t0 < 10
    assert "exited with code 3" in ei.value.message and "cannot open config" in ei.value.message
    assert str(sup.log_path("node_exporter")) in ei.value.hint


def test_never_ready_times_out_and_is_stopped(tmp_path: Path, shared_tmp: Path) -> None:
    """A process that never becomes ready is stopped after its timeout; nothing hangs or lingers."""
    script = shared_tmp / "sleepy"
    script.write_text("#!/bin/sh\nexec sleep 600\n")
    script.chmod(0o755)
    sup = _isolated(tmp_path, port=_free_port(), binary=str(script), start_timeout_s=2)
    with pytest.raises(ServiceError, match="not ready after 2s"):
        sup.up(["node_exporter"])
    assert sup.status(["node_exporter"])[0].health == "stopped"
    left = subprocess.run(["pgrep", "-f", "^sleep 600$"], capture_output=True, text=True).stdout.split()
    assert all("Z" in Path(f"/proc/{p}/stat").read_text().split(")")[1][:3] for p in left if Path(f"/proc/{p}").exists())


def test_down_stops_only_our_processes(tmp_path: Path) -> None:
    """A pid file pointing at a stranger's process is not obeyed: `down` leaves it alive."""
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        sup = _isolated(tmp_path, port=_free_port())
        sup._write_state("node_exporter", {"pid": stranger.pid, "port": 1, "host": "127.0.0.1",
                                          "marker": "--web.listen-address=127.0.0.1:", "argv": [], "log": "", "started": 0})  # fmt: skip
        assert sup.down() == []
        assert stranger.poll() is None
    finally:
        stranger.kill()
        stranger.wait()


def test_own_start_and_stop(tmp_path: Path) -> None:
    """A separate node_exporter starts, is healthy, and `down` stops exactly it."""
    sup = _isolated(tmp_path, port=_free_port())
    rows = sup.up(["node_exporter"])
    pid = rows[0].pid
    assert rows[0].health == "healthy"
    assert sup.down() == ["node_exporter"]
    time.sleep(0.2)
    assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split(")")[1][:3]


def test_fresh_postgres_cluster_from_nothing(tmp_path: Path) -> None:
    """initdb on an empty var/, start, create the database, accept our login, stop: the first-run path."""
    data = make_test_config(var_dir=tmp_path / "var")
    for other in ("elasticsearch", "prometheus", "node_exporter"):
        data["services"][other]["enabled"] = False
    creds = tmp_path / "secrets" / "postgres.json"
    data["services"]["postgres"].update(port=_free_port(), database="fresh_db", credentials=str(creds))
    sup = _supervisor(tmp_path, data)
    try:
        rows = sup.up(["postgres"])
        assert rows[0].health == "healthy"
        assert creds.stat().st_mode & 0o777 == 0o600  # generated at first start, never world-readable
        pg = sup.settings.services.postgres
        app_pw, super_pw = sup.settings.pg_password("app"), sup.settings.pg_password("superuser")
        assert app_pw != super_pw and len(app_pw) >= 24
        with psycopg.connect(host=pg.host, port=sup.port("postgres"), user=pg.user, password=app_pw, dbname="fresh_db") as conn:
            assert conn.execute("SELECT current_database()").fetchone()[0] == "fresh_db"
            # the application role owns its database but is no superuser: COPY ... TO PROGRAM is refused
            assert conn.execute("SELECT rolsuper, rolcreaterole, rolreplication FROM pg_roles WHERE rolname = current_user").fetchone() == (False, False, False)
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("COPY (SELECT 1) TO PROGRAM 'id > /tmp/govctl-pwned'")
        with pytest.raises(psycopg.OperationalError):  # no default password works
            psycopg.connect(host=pg.host, port=sup.port("postgres"), user=pg.user, password="govctl-local", dbname="fresh_db", connect_timeout=3)
        assert not (sup.root / "postgres" / ".pwfile").exists()
    finally:
        assert sup.down() == ["postgres"]
