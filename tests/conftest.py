"""Shared fixtures: the real local services (started once per session), state DBs, runtimes."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import yaml

from control_plane.config import Settings, load
from control_plane.context import Context
from control_plane.wiring import context_for
from control_plane.services import Supervisor

PROJECT = Path(__file__).resolve().parents[1]
TEST_VAR = PROJECT / "var" / "test"
# Ports of their own, so `make test` never collides with a `make run` on the defaults.
TEST_PORTS = {"elasticsearch": 19200, "prometheus": 19090, "node_exporter": 19100, "postgres": 15432, "api": 18700, "alertmanager": 19093}


def make_test_config(var_dir: Path = TEST_VAR, **extra: object) -> dict:
    """The configuration the test session runs its services with."""
    data = {
        "var_dir": str(var_dir),
        "services": {
            # the session's services have one set of generated credentials, whichever var dir a test runtime uses
            "elasticsearch": {"port": TEST_PORTS["elasticsearch"], "credentials": str(TEST_VAR / "keys" / "elasticsearch.json"),
                              "ca_cert": str(TEST_VAR / "keys" / "elasticsearch-ca.pem")},
            "prometheus": {"port": TEST_PORTS["prometheus"], "scrape_interval_s": 5},
            "node_exporter": {"port": TEST_PORTS["node_exporter"]},
            "alertmanager": {"port": TEST_PORTS["alertmanager"]},
            "postgres": {"port": TEST_PORTS["postgres"], "credentials": str(TEST_VAR / "keys" / "postgres.json")},
        },
        "api": {"port": TEST_PORTS["api"]},
        # the key passphrase lives outside var/ (here beside it, in a folder of the test's own)
        "crypto": {"kdf_iterations": 100_000, "passphrase_file": str(Path(var_dir).parent / "secrets" / f"{Path(var_dir).name}-key-passphrase")},
        # the streaming detector is exercised by its own tests; elsewhere it would race the counts scheduled detection reports
        "soc": {"stream_poll_s": 0},
        # backups are exercised by tests/dr with sources of their own; nothing streams WAL behind other tests' backs
        "dr": {"sources": {"state-db": {"type": "postgres", "every_s": 86400, "rpo_s": 300}}, "wal_streaming": False, "kdf_iterations": 100_000},
    }
    for k, v in extra.items():
        data[k] = v
    return data


def write_config(path: Path, data: dict) -> Path:
    """Write a govctl.yaml."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="session")
def config_file() -> Path:
    """The session's govctl.yaml (real services on test ports under var/test)."""
    return write_config(TEST_VAR / "govctl.yaml", make_test_config())


@pytest.fixture(scope="session")
def settings(config_file: Path) -> Settings:
    """Validated settings of the test session."""
    return load(config_file)


@pytest.fixture(scope="session")
def services(settings: Settings) -> Iterator[Supervisor]:
    """Elasticsearch, Prometheus, node_exporter and PostgreSQL, really running, once per session."""
    import shutil

    sup = Supervisor(settings)
    sup.down()  # leftovers of an interrupted session
    # Every session starts from empty Elasticsearch and Prometheus data: tests must not depend on (or trip over)
    # indices and mappings an earlier run left behind. PostgreSQL stays: each test makes its own database.
    for d in ("elasticsearch/data", "prometheus/data"):
        shutil.rmtree(sup.root / d, ignore_errors=True)
    started: list[str] = []
    sup.up(on_event=lambda n, m: started.append(n) if m.startswith("starting") else None)
    yield sup
    if os.environ.get("GOVCTL_KEEP_SERVICES") != "1":
        sup.down()


def pg_admin(services: Supervisor, dbname: str = "postgres") -> dict:
    """Connection arguments of our cluster's superuser (tests only: the control plane never uses it)."""
    pg = services.settings.services.postgres
    return dict(host=pg.host, port=services.port("postgres"), user=pg.superuser, password=services.settings.pg_password("superuser"),
                dbname=dbname, autocommit=True)  # fmt: skip


@pytest.fixture()
def pg_url(services: Supervisor) -> Iterator[str]:
    """A fresh, empty PostgreSQL database in our own cluster, dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    pg = services.settings.services.postgres
    admin = pg_admin(services)
    with psycopg.connect(**admin) as conn:
        conn.execute(f'CREATE DATABASE "{name}" OWNER "{pg.user}"')
    yield services.postgres_url(name)
    from control_plane import db

    for url, eng in list(db._engines.items()):
        if name in url:
            eng.dispose()
            del db._engines[url]
    with psycopg.connect(**admin) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture()
def shared_tmp(settings: Settings) -> Iterator[Path]:
    """A scratch directory the unprivileged service user can read (pytest's tmp dirs are 0700)."""
    import shutil

    d = Supervisor(settings).root / "scratch" / uuid.uuid4().hex[:10]
    d.mkdir(parents=True, mode=0o755)
    for p in (d, d.parent):
        p.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture()
def sqlite_url(tmp_path: Path) -> str:
    """A fresh SQLite state DB in a temporary directory."""
    return f"sqlite:///{tmp_path / 'state.db'}"


@pytest.fixture(params=["sqlite", "postgres"])
def state_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each state-DB backend in turn: SQLite, then our real PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.db'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture()
def runtime(tmp_path: Path, settings: Settings, state_url: str) -> Context:
    """A runtime with its own state DB, keys and anchor file, on the session's services."""
    data = make_test_config(var_dir=tmp_path / "var")
    data["state"] = {"url": state_url}
    rt = context_for(load(write_config(tmp_path / "govctl.yaml", data)))
    return rt


@pytest.fixture()
def sqlite_runtime(tmp_path: Path, settings: Settings) -> Context:
    """A runtime on a fresh SQLite state DB (for tests that do not need both backends)."""
    rt = context_for(load(write_config(tmp_path / "govctl.yaml", make_test_config(var_dir=tmp_path / "var"))))
    return rt


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict) -> dict:
    """pytest-playwright drives Debian's Chromium (Playwright's own download cannot work here), headless, as root without its sandbox.

    No background networking: the machine's closed network refuses Chromium's own connections.
    """
    return {**browser_type_launch_args, "executable_path": "/usr/bin/chromium", "headless": True,
            "args": ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]}  # fmt: skip


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args: dict) -> dict:
    """Pages in Chinese at a desktop size, in Beijing time; CSP bypassed only so axe-core can be injected (tests/console/kit.py)."""
    return {**browser_context_args, "locale": "zh-CN", "timezone_id": "Asia/Shanghai", "viewport": {"width": 1366, "height": 900}, "bypass_csp": True}
