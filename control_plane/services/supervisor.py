"""Start, stop and watch the local services as child processes with pid files and readiness checks.

Each service has a state file ``<svc>/run/<name>.json`` (pid, address, command, log) and a
plain ``<name>.pid``. ``up`` is idempotent: a live, healthy service we started is left alone.
``down`` stops only processes whose command line proves they are ours. Errors name the service,
the cause and the log file, and nothing waits past the service's start timeout.

Elasticsearch and PostgreSQL refuse to run as root; when govctl runs as root, every service
runs as the unprivileged ``services.run_as`` user (created by ``make setup``).
"""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from control_plane.services import es_security
from control_plane.config import Settings, cache_dir
from control_plane.errors import GovctlError
from control_plane.resources import project_root

PROJECT_DIR = project_root()


class ServiceError(GovctlError):
    """A local service could not be started, stopped or reached."""

    http_status = 503
    exit_code = 6


@dataclass
class ServiceStatus:
    """One row of ``govctl services status``."""

    name: str
    address: str
    pid: int | None
    health: str  # healthy | starting | unhealthy | stopped | disabled
    log: str
    detail: str = ""
    role: str = ""  # in a cluster: master / data (Elasticsearch), leader / replica (PostgreSQL)

    def as_dict(self) -> dict[str, Any]:
        """Plain data for ``--json``."""
        return dict(self.__dict__)


@dataclass
class Spec:
    """How to run one service."""

    name: str
    host: str
    port: int
    argv: list[str]
    env: dict[str, str]
    marker: str  # a string that must appear in the process's command line for it to be ours
    ready: Callable[[int], tuple[bool, str]]
    timeout: float
    stop_signal: int = signal.SIGTERM
    prepare: Callable[[], None] | None = None
    port_search: int = 0  # >0: try this many following ports when the first is taken
    data_dirs: list[Path] = field(default_factory=list)


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (exited child not yet reaped) is not alive
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _http_ok(url: str, *, header: tuple[str, str] | None = None, verify: str | bool = True,
             auth: tuple[str, str] | None = None) -> tuple[bool, str]:  # fmt: skip
    if isinstance(verify, str):
        import ssl

        verify = ssl.create_default_context(cafile=verify)
    try:
        r = httpx.get(url, timeout=2.0, verify=verify, auth=auth)
    except httpx.HTTPError as exc:
        return False, type(exc).__name__
    if r.status_code != 200:
        return False, f"HTTP {r.status_code}"
    if header and r.headers.get(header[0]) != header[1]:
        return False, f"missing {header[0]} header: not the expected server"
    return True, ""


def _tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(line.strip()[:240] for line in text[-lines:])


class Supervisor:
    """Runs the local services described by ``settings.services``."""

    ORDER = ("postgres", "elasticsearch", "node_exporter", "alertmanager", "prometheus")

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.cfg = settings.services
        self.var = settings.var
        self.root = self._service_root()
        self.run_dir = self.root / "run"
        self.log_dir = self.root / "logs"
        self.user = self._service_user()
        es_nodes = ["elasticsearch"] + [f"elasticsearch-{i}" for i in range(2, self.cfg.elasticsearch.nodes + 1)]
        ha = self.cfg.postgres.ha.members
        pg = ["etcd", "postgres", *(f"postgres-{i}" for i in range(2, ha + 1))] if ha > 1 else ["postgres"]
        ob = self.cfg.objectstore
        sw = ["seaweed-master", *(f"seaweed-volume-{i}" for i in range(1, len(ob.volume_ports) + 1)), "seaweed-filer"] if ob.enabled else []
        self.ORDER = (*pg, *es_nodes, *sw, "node_exporter", "alertmanager", "prometheus")

    def _svc_cfg(self, name: str) -> Any:
        """The configuration section of a service (every Elasticsearch node shares one; etcd and the Patroni members are PostgreSQL's)."""
        if name.startswith("elasticsearch"):
            return self.cfg.elasticsearch
        if name == "etcd" or name.startswith("postgres"):
            return self.cfg.postgres
        if name.startswith("seaweed"):
            return self.cfg.objectstore
        return getattr(self.cfg, name)

    def _default_port(self, name: str) -> int:
        if name == "etcd":
            return self.cfg.postgres.ha.etcd_port
        if name.startswith("seaweed"):
            ob = self.cfg.objectstore
            return {"seaweed-master": ob.master_port, "seaweed-filer": ob.port}.get(name) or ob.volume_ports[int(name.rsplit("-", 1)[1]) - 1]
        return int(self._svc_cfg(name).port) + (_es_index(name) - 1 if name.startswith(("elasticsearch", "postgres")) else 0)

    # -- layout --------------------------------------------------------------------------------

    def _service_user(self) -> pwd.struct_passwd | None:
        if os.geteuid() != 0:
            return None
        try:
            return pwd.getpwnam(self.cfg.run_as)
        except KeyError:
            raise ServiceError(
                f"services: user {self.cfg.run_as!r} does not exist; Elasticsearch and PostgreSQL refuse to run as root",
                hint=f"run `make setup` (creates it) or `useradd --system {self.cfg.run_as}`",
            ) from None

    def _service_root(self) -> Path:
        """``var/svc``; when root and var/ is not reachable by other users, a dir under /var/lib linked from var/svc.

        Services always get the resolved path: a path through the link would still cross the
        unreachable directory.
        """
        root = self.var / "svc"
        if root.is_symlink():
            return root.resolve()
        if os.geteuid() != 0 or self._world_traversable(self.var):
            root.parent.mkdir(parents=True, exist_ok=True)
            return root
        alt = Path("/var/lib/govctl") / hashlib.sha256(str(self.var).encode()).hexdigest()[:12]
        alt.mkdir(parents=True, exist_ok=True)
        os.chmod(alt.parent, 0o755)
        os.chmod(alt, 0o755)
        self.var.mkdir(parents=True, exist_ok=True)
        if root.exists():
            shutil.rmtree(root)
        root.symlink_to(alt)
        return alt

    @staticmethod
    def _world_traversable(path: Path) -> bool:
        for p in [path, *path.parents]:
            if p.exists() and not (p.stat().st_mode & stat.S_IXOTH):
                return False
        return True

    def _own(self, *paths: Path) -> None:
        """Give the service user its directories (recursing only when the top is not yet theirs)."""
        for p in paths:
            p.mkdir(parents=True, exist_ok=True)
            if self.user is None:
                continue
            st = p.stat()
            if (st.st_uid, st.st_gid) == (self.user.pw_uid, self.user.pw_gid):
                continue
            for sub in [p, *p.rglob("*")]:
                os.lchown(sub, self.user.pw_uid, self.user.pw_gid)

    def log_path(self, name: str) -> Path:
        """Where a service's stdout and stderr go."""
        return self.log_dir / f"{name}.log"

    def _state_path(self, name: str) -> Path:
        return self.run_dir / f"{name}.json"

    def _read_state(self, name: str) -> dict[str, Any] | None:
        try:
            return json.loads(self._state_path(name).read_text())
        except (OSError, ValueError):
            return None

    def _write_state(self, name: str, state: dict[str, Any]) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        tmp = self._state_path(name).with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        os.replace(tmp, self._state_path(name))
        (self.run_dir / f"{name}.pid").write_text(f"{state['pid']}\n")

    def _clear_state(self, name: str) -> None:
        for p in (self._state_path(name), self.run_dir / f"{name}.pid"):
            p.unlink(missing_ok=True)

    def _owned_pid(self, name: str) -> tuple[int | None, dict[str, Any] | None]:
        st = self._read_state(name)
        if not st:
            return None, None
        pid = int(st["pid"])
        if _pid_alive(pid) and st["marker"] in _cmdline(pid):
            return pid, st
        return None, st

    # -- specs ---------------------------------------------------------------------------------

    def enabled(self) -> list[str]:
        """Names of the services switched on in the configuration."""
        return [n for n in self.ORDER if self._svc_cfg(n).enabled]

    def spec(self, name: str) -> Spec:
        """The run specification of one service."""
        if name.startswith("elasticsearch"):
            return self._es_spec(_es_index(name))
        if name == "etcd":
            return self._etcd_spec()
        if name.startswith("seaweed"):
            return self._seaweed_spec(name)
        if name.startswith("postgres") and self.cfg.postgres.ha.members > 1:
            return self._patroni_spec(_es_index(name))
        return {"postgres": self._pg_spec, "node_exporter": self._node_spec, "prometheus": self._prom_spec, "alertmanager": self._am_spec}[name]()

    def _es_spec(self, i: int = 1) -> Spec:
        c = self.cfg.elasticsearch
        cluster = c.nodes > 1
        # a cluster's nodes keep their data apart from the single node's: one never starts on the other's cluster state
        base = self.root / "elasticsearch-cluster" / f"node-{i}" if cluster else self.root / "elasticsearch"
        http_port = c.port + i - 1
        node = f"govctl-{i}" if cluster else "govctl-local"
        if cluster:
            peers = ", ".join(f"{c.host}:{c.port + 100 + k}" for k in range(c.nodes))
            masters = ", ".join(f"govctl-{k + 1}" for k in range(c.nodes))
            topology = (f"transport.port: {c.port + 100 + i - 1}\n"
                        f"discovery.seed_hosts: [{peers}]\n"
                        f"cluster.initial_master_nodes: [{masters}]\n")  # fmt: skip
        else:
            topology = f"transport.port: {c.port + 100}-{c.port + 199}\ndiscovery.type: single-node\n"
        home = self.root / "opt" / f"elasticsearch-{c.version}"
        conf, data, logs, tmp = base / "config", base / "data", base / "logs", base / "tmp"
        java = self._java_home(c.java_home)

        def prepare() -> None:
            if not (home / "bin" / "elasticsearch").exists():
                dist = c.distribution_path()
                if not dist.is_file():
                    raise ServiceError(
                        f"elasticsearch: distribution {dist} not found",
                        hint="run `make setup` (fetches it with mvn dependency:copy) or set services.elasticsearch.distribution",
                    )
                _unzip(dist, home.parent)
            conf.mkdir(parents=True, exist_ok=True)
            for f in ("jvm.options", "log4j2.properties"):
                shutil.copy2(home / "config" / f, conf / f)
            (conf / "jvm.options.d").mkdir(exist_ok=True)
            # security: a CA of our own, TLS on HTTP and transport, one file-realm user per component
            ca_cert = self.settings.es_ca_path()
            ca_key = ca_cert.with_suffix(".key")  # beside its certificate, wherever that is configured
            es_security.ensure_ca(ca_cert, ca_key)
            certs = conf / "certs"
            if not (certs / "node.crt").exists():
                es_security.issue_node_cert(ca_cert, ca_key, certs / "node.crt", certs / "node.key", [c.host, "127.0.0.1", "localhost"])
            shutil.copyfile(ca_cert, certs / "ca.crt")
            es_security.write_realm(conf, es_security.load_credentials(self.settings.es_credentials_path()))
            (conf / "elasticsearch.yml").write_text(
                "# written by govctl services; edit govctl.yaml instead\n"
                "cluster.name: govctl\n"
                f"node.name: {node}\n"
                f"path.data: {data}\n"
                f"path.logs: {logs}\n"
                f"network.host: {c.host}\n"
                f"http.port: {http_port}\n"
                + topology
                + es_security.yml_settings("certs") +
                "action.destructive_requires_name: true\n"
                "# a local single node on a shared disk: do not flip indices read-only when the disk fills\n"
                "cluster.routing.allocation.disk.threshold_enabled: false\n"
            )
            self._own(conf, data, logs, tmp)
            if self.user is not None:  # files written by us just now (certificates, the realm) belong to the service user
                for sub in conf.rglob("*"):
                    os.lchown(sub, self.user.pw_uid, self.user.pw_gid)

        return Spec(
            name="elasticsearch" if i == 1 else f"elasticsearch-{i}",
            host=c.host,
            port=http_port,
            argv=[str(home / "bin" / "elasticsearch")],
            env={
                "ES_JAVA_HOME": str(java),
                "ES_PATH_CONF": str(conf),
                "ES_TMPDIR": str(tmp),
                "ES_JAVA_OPTS": f"-Xms{c.heap_min_mb}m -Xmx{c.heap_max_mb}m",
            },
            marker=f"-Des.path.conf={conf}" if cluster else "org.elasticsearch",
            ready=lambda port: _http_ok(
                f"https://{c.host}:{port}/_cluster/health?wait_for_status=yellow&timeout=1s",
                header=("x-elastic-product", "Elasticsearch"),
                verify=str(self.settings.es_ca_path()),
                auth=(es_security.CONTROL_PLANE_USER, es_security.load_credentials(self.settings.es_credentials_path())[es_security.CONTROL_PLANE_USER]),
            ),
            timeout=c.start_timeout_s,
            prepare=prepare,
            data_dirs=[data],
        )

    def _java_home(self, configured: Path | None) -> Path:
        candidates = [configured] if configured else []
        candidates += sorted(Path("/usr/lib/jvm").glob("java-17-openjdk*")) + sorted(Path("/usr/lib/jvm").glob("*17*"))
        java = shutil.which("java")
        if java:
            candidates.append(Path(os.path.realpath(java)).parent.parent)
        for c in candidates:
            if c and (Path(c) / "bin" / "java").exists():
                return Path(c)
        raise ServiceError("elasticsearch: no Java 17+ found", hint="install a JDK 17 or set services.elasticsearch.java_home")

    def _pg_bin(self) -> Path:
        c = self.cfg.postgres
        if c.bin_dir:
            return c.bin_dir
        found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=lambda p: int(p.parts[-3]))
        if not found:
            raise ServiceError("postgres: no PostgreSQL server found under /usr/lib/postgresql", hint="run `make setup` (installs the Debian package postgresql)")
        return found[-1].parent

    def _pg_roles(self, port: int) -> tuple[bool, str]:
        """Connect as the superuser; create the application and replication roles and the database where missing."""
        import psycopg
        from psycopg import sql

        from control_plane.credentials import REPLICATION_ROLE, pg_credentials

        c = self.cfg.postgres
        creds = pg_credentials(self.settings.pg_credentials_path())
        try:
            with psycopg.connect(host=c.host, port=port, user=c.superuser, password=creds["superuser"], dbname="postgres",
                                 connect_timeout=2, autocommit=True) as conn:  # fmt: skip
                # the application role owns its database and is no superuser; replication has nothing but REPLICATION
                for role, attrs, key in ((c.user, "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION", "app"),
                                         (REPLICATION_ROLE, "LOGIN REPLICATION NOSUPERUSER NOCREATEDB NOCREATEROLE", "replication")):  # fmt: skip
                    verifier = conn.pgconn.encrypt_password(creds[key].encode(), role.encode(), b"scram-sha-256").decode()
                    if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
                        conn.execute(sql.SQL(f"CREATE ROLE {{}} {attrs} PASSWORD {{}}").format(sql.Identifier(role), sql.Literal(verifier)))
                if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (c.database,)).fetchone():
                    conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(c.database), sql.Identifier(c.user)))
            return True, ""
        except psycopg.OperationalError as exc:
            return False, str(exc).strip().splitlines()[0] if str(exc).strip() else "not accepting connections"

    def _etcd_spec(self) -> Spec:
        """One etcd member (the DCS the Patroni members elect their leader in), loopback only."""
        ha, host = self.cfg.postgres.ha, self.cfg.postgres.host
        base = self.root / "etcd"
        data = base / "data"

        def prepare() -> None:
            self._own(base, data)
            data.chmod(0o700)

        peer = f"http://{host}:{ha.etcd_port + 1}"
        return Spec(
            name="etcd",
            host=host,
            port=ha.etcd_port,
            argv=["etcd", "--name=govctl-etcd", f"--data-dir={data}", f"--listen-client-urls=http://{host}:{{port}}",
                  f"--advertise-client-urls=http://{host}:{{port}}", f"--listen-peer-urls={peer}", f"--initial-advertise-peer-urls={peer}",
                  f"--initial-cluster=govctl-etcd={peer}", "--initial-cluster-state=new", "--logger=zap", "--log-level=warn"],  # fmt: skip
            env={},
            marker=f"--data-dir={data}",
            ready=lambda port: _http_ok(f"http://{host}:{port}/health"),
            timeout=30,
            prepare=prepare,
            data_dirs=[data],
        )

    def _weed(self) -> str:
        """The weed binary, copied once beside the services' data (the service user cannot reach a cache under /root)."""
        ob = self.cfg.objectstore
        built = Path(ob.binary or cache_dir() / f"seaweedfs-{SEAWEED_VERSION}" / "bin" / "weed")
        here = self.root / "opt" / f"seaweedfs-{SEAWEED_VERSION}" / "weed"
        if not here.exists():
            if not built.exists():
                raise ServiceError(f"objectstore: the weed binary {built} is missing", hint="run `make setup` (builds SeaweedFS once, into the cache)")
            here.parent.mkdir(parents=True, exist_ok=True)
            tmp = here.with_suffix(".tmp")
            shutil.copy2(built, tmp)
            tmp.chmod(0o755)
            os.replace(tmp, here)
        return str(here)

    def s3_credentials(self) -> dict[str, str]:
        """The S3 identity's keys (generated once, 0600)."""
        return self.settings.s3_credentials()

    def _seaweed_spec(self, name: str) -> Spec:
        """SeaweedFS: a master, volume servers, a filer serving S3 with one identity (without an identities file anyone could read and write)."""
        import json as _json

        ob, host = self.cfg.objectstore, self.cfg.objectstore.host
        base = self.root / "seaweedfs"
        master = f"{host}:{ob.master_port}"
        if name == "seaweed-master":
            d = base / "master"
            argv = [self._weed(), "master", f"-ip={host}", f"-ip.bind={host}", "-port={port}", f"-mdir={d}", f"-defaultReplication={ob.replication}",
                    "-volumeSizeLimitMB=64", "-telemetry=false"]  # fmt: skip
            ready = lambda port: _http_ok(f"http://{host}:{port}/cluster/status")  # noqa: E731
            prep_dirs = [d]
        elif name.startswith("seaweed-volume-"):
            d = base / name.removeprefix("seaweed-")
            argv = [self._weed(), "volume", f"-ip={host}", f"-ip.bind={host}", "-port={port}", f"-dir={d}", f"-master={master}", "-max=50",
                    "-dataCenter=dc1", "-rack=rack1"]  # fmt: skip
            ready = lambda port: _http_ok(f"http://{host}:{port}/status")  # noqa: E731
            prep_dirs = [d]
        else:
            d = base / "filer"
            ident = base / "s3.json"
            argv = [self._weed(), "filer", f"-ip={host}", f"-ip.bind={host}", f"-port={ob.filer_port}", f"-master={master}", "-s3", "-s3.port={port}",
                    f"-s3.config={ident}", f"-defaultReplicaPlacement={ob.replication}", f"-defaultStoreDir={d}"]  # fmt: skip
            prep_dirs = [d]

            def ready(port: int) -> tuple[bool, str]:  # a write, not an open port: after a restart writes stall while the master elects itself
                return self._s3_ready(port)

        def prepare() -> None:
            self._own(base, *prep_dirs)
            if name == "seaweed-filer":
                from control_plane.credentials import write_private

                creds = self.s3_credentials()
                body = {"identities": [{"name": "govctl", "credentials": [{"accessKey": creds["access_key"], "secretKey": creds["secret_key"]}],
                                        "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}  # fmt: skip
                ident.unlink(missing_ok=True)
                write_private(ident, _json.dumps(body).encode())
                if self.user is not None:
                    os.chown(ident, self.user.pw_uid, self.user.pw_gid)

        return Spec(name=name, host=host, port=self._default_port(name), argv=argv, env={"HOME": str(base)}, marker=f"{d}", ready=ready,
                    timeout=ob.start_timeout_s, prepare=prepare, data_dirs=[d])  # fmt: skip

    def _s3_ready(self, port: int) -> tuple[bool, str]:
        """The buckets exist and an object can be written and read back."""
        try:
            import boto3
            from botocore.config import Config

            creds = self.s3_credentials()
            s3 = boto3.client("s3", endpoint_url=f"http://{self.cfg.objectstore.host}:{port}", aws_access_key_id=creds["access_key"],
                              aws_secret_access_key=creds["secret_key"], region_name="us-east-1",
                              config=Config(s3={"addressing_style": "path"}, connect_timeout=2, read_timeout=5, retries={"max_attempts": 1}))  # fmt: skip
            have = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
            buckets = self.settings.buckets() or ["govctl-ready"]
            for b in buckets:
                if b not in have:
                    s3.create_bucket(Bucket=b)
            s3.put_object(Bucket=buckets[0], Key=".govctl-ready", Body=b"ok")
            return True, ""
        except Exception as exc:  # noqa: BLE001 - not ready yet, whatever the reason
            return False, f"{type(exc).__name__}: {str(exc)[:120]}"

    def _patroni_spec(self, i: int) -> Spec:
        """Patroni member ``i``: it bootstraps (or clones) its PostgreSQL, holds or follows the leader key in etcd, promotes on failover."""
        import yaml

        from control_plane.credentials import REPLICATION_ROLE, pg_credentials, write_private

        c, ha = self.cfg.postgres, self.cfg.postgres.ha
        base = self.root / "postgres-ha" / f"member-{i}"
        data, sock, cfgfile = base / "data", base / "socket", base / "patroni.yml"
        port, rest = c.port + i - 1, ha.rest_port + i - 1
        nets = ["127.0.0.1/32", "::1/128"] + ([] if c.host in ("127.0.0.1", "::1", "localhost") else [f"{c.host}/32"])
        hba = ["local all all scram-sha-256"] + [f"host {db} all {n} scram-sha-256" for n in nets for db in ("all", "replication")]

        def prepare() -> None:
            self._own(base, sock)
            creds = pg_credentials(self.settings.pg_credentials_path())
            conf = {
                "scope": "govctl", "name": f"pg-{i}",
                "restapi": {"listen": f"{c.host}:{rest}", "connect_address": f"{c.host}:{rest}",
                            "authentication": {"username": "patroni", "password": creds["superuser"]}},
                "etcd3": {"hosts": [f"{c.host}:{ha.etcd_port}"]},
                "bootstrap": {
                    # synchronous: a commit waits for the replica, so the replica that takes over has every committed record
                    # (with the replica down the leader goes on alone: synchronous_mode_strict stays off)
                    "dcs": {"ttl": ha.ttl_s, "loop_wait": ha.loop_wait_s, "retry_timeout": ha.retry_timeout_s, "maximum_lag_on_failover": 16 * 1024 * 1024,
                            "synchronous_mode": True,
                            "postgresql": {"use_pg_rewind": True, "use_slots": True,
                                           "parameters": {"wal_level": "replica", "max_wal_senders": 10, "max_replication_slots": 10,
                                                          "wal_log_hints": "on", "hot_standby": "on"}}},
                    "initdb": [{"encoding": "UTF8"}, {"locale": "C.UTF-8"}, {"auth": "scram-sha-256"}],
                    "pg_hba": hba,
                },
                "postgresql": {
                    "listen": f"{c.host}:{port}", "connect_address": f"{c.host}:{port}", "data_dir": str(data), "bin_dir": str(self._pg_bin()),
                    "pgpass": str(base / "pgpass"), "pg_hba": hba,
                    "authentication": {"superuser": {"username": c.superuser, "password": creds["superuser"]},
                                       "replication": {"username": REPLICATION_ROLE, "password": creds["replication"]},
                                       "rewind": {"username": c.superuser, "password": creds["superuser"]}},
                    "parameters": {"unix_socket_directories": str(sock), "logging_collector": "off", "password_encryption": "scram-sha-256"},
                },
                "tags": {"nofailover": False, "noloadbalance": False, "clonefrom": False, "nosync": False},
            }  # fmt: skip
            cfgfile.unlink(missing_ok=True)
            write_private(cfgfile, ("# written by govctl services (0600: it holds the cluster's passwords)\n" + yaml.safe_dump(conf)).encode())
            if self.user is not None:
                os.chown(cfgfile, self.user.pw_uid, self.user.pw_gid)

        def ready(_port: int) -> tuple[bool, str]:
            ok, why = _http_ok(f"http://{c.host}:{rest}/health")  # PostgreSQL up and running, as leader or streaming replica
            if not ok:
                return ok, why
            leader, _ = _http_ok(f"http://{c.host}:{rest}/leader")
            return self._pg_roles(port) if leader else (True, "")

        return Spec(
            name="postgres" if i == 1 else f"postgres-{i}",
            host=c.host,
            port=port,
            argv=["patroni", str(cfgfile)],
            env={"PATH": "/usr/bin:/bin", "HOME": str(base)},
            marker=str(cfgfile),
            ready=ready,
            timeout=max(c.start_timeout_s, 90),
            prepare=prepare,
            data_dirs=[data],
        )

    def _pg_spec(self) -> Spec:
        c = self.cfg.postgres
        base = self.root / "postgres"
        data, sock = base / "data", base / "socket"
        bindir = self._pg_bin()
        from control_plane.credentials import pg_credentials, write_private

        creds_path = self.settings.pg_credentials_path()

        def prepare() -> None:
            self._own(base, sock)
            fresh = not creds_path.exists()
            creds = pg_credentials(creds_path)  # generated at first start, 0600
            if (data / "PG_VERSION").exists():
                if fresh:
                    raise ServiceError(f"postgres: the cluster in {data} predates the generated credentials in {creds_path}",
                                       hint=f"restore {creds_path} from its backup, or move {data} aside to start a new cluster")  # fmt: skip
                return
            pwfile = base / ".pwfile"
            pwfile.unlink(missing_ok=True)
            write_private(pwfile, (creds["superuser"] + "\n").encode())
            if self.user is not None:
                os.chown(pwfile, self.user.pw_uid, self.user.pw_gid)
            proc = subprocess.run(
                [str(bindir / "initdb"), "-D", str(data), "-U", c.superuser, "--auth=scram-sha-256",
                 f"--pwfile={pwfile}", "-E", "UTF8", "--locale=C.UTF-8"],  # fmt: skip
                capture_output=True,
                text=True,
                timeout=120,
                cwd=str(base),
                **self._as_user(),
            )
            pwfile.unlink(missing_ok=True)
            if proc.returncode != 0:
                shutil.rmtree(data, ignore_errors=True)
                raise ServiceError(f"postgres: initdb failed: {(proc.stderr or proc.stdout).strip()[-300:]}")
            # password (scram) logins from this host only: the socket, loopback, and the configured address
            nets = ["127.0.0.1/32", "::1/128"] + ([] if c.host in ("127.0.0.1", "::1", "localhost") else [f"{c.host}/32"])
            hba = ["# written by govctl services: scram only, from this host only", "local all all scram-sha-256"]
            hba += [f"host {db} all {n} scram-sha-256" for n in nets for db in ("all", "replication")]
            (data / "pg_hba.conf").write_text("\n".join(hba) + "\n")

        def ready(port: int) -> tuple[bool, str]:
            return self._pg_roles(port)

        return Spec(
            name="postgres",
            host=c.host,
            port=c.port,
            argv=[str(bindir / "postgres"), "-D", str(data), "-c", f"listen_addresses={c.host}",
                  "-c", f"unix_socket_directories={sock}", "-c", "wal_level=replica", "-c", "max_wal_senders=10",
                  "-c", "logging_collector=off", "-p", "{port}"],  # fmt: skip
            env={},
            marker=str(data),
            ready=ready,
            timeout=c.start_timeout_s,
            stop_signal=signal.SIGINT,  # PostgreSQL's "fast" shutdown
            prepare=prepare,
            port_search=20,
            data_dirs=[data],
        )

    def _binary(self, service: str, binary: str) -> str:
        path = shutil.which(binary)
        if not path:
            raise ServiceError(f"{service}: binary {binary!r} not found on PATH", hint="run `make setup` (installs the Debian packages)")
        return path

    def _node_spec(self) -> Spec:
        c = self.cfg.node_exporter
        return Spec(
            name="node_exporter",
            host=c.host,
            port=c.port,
            argv=[self._binary("node_exporter", c.binary), f"--web.listen-address={c.host}:{{port}}"],
            env={},
            marker=f"--web.listen-address={c.host}:",
            ready=lambda port: _http_ok(f"http://{c.host}:{port}/metrics"),
            timeout=c.start_timeout_s,
        )

    def _am_spec(self) -> Spec:
        c = self.cfg.alertmanager
        base = self.root / "alertmanager"
        data, cfgfile = base / "data", base / "alertmanager.yml"

        def prepare() -> None:
            from control_plane.monitoring import write_alertmanager_config

            write_alertmanager_config(self.settings, cfgfile)
            self._own(base, data)

        return Spec(
            name="alertmanager",
            host=c.host,
            port=c.port,
            # no gossip cluster (it would listen on 9094 on every address); one instance, its data under var/
            argv=[self._binary("alertmanager", c.binary), f"--config.file={cfgfile}", f"--storage.path={data}",
                  f"--web.listen-address={c.host}:{{port}}", "--cluster.listen-address="],  # fmt: skip
            env={},
            marker=str(cfgfile),
            ready=lambda port: _http_ok(f"http://{c.host}:{port}/-/ready"),
            timeout=c.start_timeout_s,
            prepare=prepare,
            data_dirs=[data],
        )

    def _prom_spec(self) -> Spec:
        c = self.cfg.prometheus
        base = self.root / "prometheus"
        data, cfgfile = base / "data", base / "prometheus.yml"

        def prepare() -> None:
            from control_plane.monitoring import write_prometheus_config

            write_prometheus_config(self.settings, cfgfile, node_port=self.cfg.node_exporter.port)
            self._own(base, data)

        return Spec(
            name="prometheus",
            host=c.host,
            port=c.port,
            argv=[self._binary("prometheus", c.binary), f"--config.file={cfgfile}", f"--storage.tsdb.path={data}",
                  f"--storage.tsdb.retention.time={c.retention}", f"--web.listen-address={c.host}:{{port}}"],  # fmt: skip
            # no --web.enable-lifecycle: anyone who reaches the port could /-/quit it; we reload with SIGHUP
            env={},
            marker=str(cfgfile),
            ready=lambda port: _http_ok(f"http://{c.host}:{port}/-/ready"),
            timeout=c.start_timeout_s,
            prepare=prepare,
            data_dirs=[data],
        )

    # -- running -------------------------------------------------------------------------------

    def _as_user(self) -> dict[str, Any]:
        if self.user is None:
            return {}
        return {"user": self.user.pw_uid, "group": self.user.pw_gid, "extra_groups": []}

    def _launch(self, spec: Spec) -> tuple[subprocess.Popen[bytes], int]:
        port = spec.port
        for candidate in range(spec.port, spec.port + spec.port_search + 1):
            if _port_free(spec.host, candidate):
                port = candidate
                break
        else:
            raise ServiceError(
                f"{spec.name}: port {spec.port} on {spec.host} is already in use by another process"
                + (f" (and the next {spec.port_search})" if spec.port_search else ""),
                hint=f"stop that process or set services.{spec.name}.port in govctl.yaml",
            )
        if spec.prepare:
            spec.prepare()
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_path(spec.name)
        argv = [a.replace("{port}", str(port)) for a in spec.argv]
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "HOME": str(self.root),
            **spec.env,
        }
        with open(log, "ab") as out:
            out.write(f"\n=== govctl: starting {spec.name} on {spec.host}:{port} at {time.strftime('%Y-%m-%dT%H:%M:%S%z')}\n".encode())
            out.flush()
            try:
                proc = subprocess.Popen(  # noqa: S603 - argv is built from configuration, not a shell
                    argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env,
                    cwd=str(self.root), start_new_session=True, **self._as_user(),
                )  # fmt: skip
            except OSError as exc:
                raise ServiceError(f"{spec.name}: cannot execute {argv[0]}: {exc.strerror}", hint=f"see {log}") from None
        self._write_state(spec.name, {"pid": proc.pid, "port": port, "host": spec.host, "marker": spec.marker,
                                      "argv": argv, "log": str(log), "started": time.time()})  # fmt: skip
        return proc, port

    def up(self, names: list[str] | None = None, on_event: Callable[[str, str], None] | None = None) -> list[ServiceStatus]:
        """Start the named (default: all enabled) services and wait until each is ready."""
        names = self._select(names)
        say = on_event or (lambda _n, _m: None)
        waiting: dict[str, tuple[Spec, subprocess.Popen[bytes] | None, int, float]] = {}
        errors: list[ServiceError] = []
        for name in names:
            spec = self.spec(name)
            pid, st = self._owned_pid(name)
            if pid is not None and st is not None:
                say(name, f"already running (pid {pid})")
                waiting[name] = (spec, None, int(st["port"]), time.monotonic())
                continue
            if st is not None:
                self._clear_state(name)
            try:
                proc, port = self._launch(spec)
            except ServiceError as exc:
                errors.append(exc)
                continue
            say(name, f"starting on {spec.host}:{port} (pid {proc.pid})")
            waiting[name] = (spec, proc, port, time.monotonic())
        while waiting:
            for name, (spec, proc, port, t0) in list(waiting.items()):
                ok, why = spec.ready(port)
                if ok:
                    say(name, "ready")
                    del waiting[name]
                    continue
                rc = proc.poll() if proc else None
                if proc is not None and rc is not None:
                    self._clear_state(name)
                    errors.append(ServiceError(
                        f"{name}: exited with code {rc} during start-up: {_tail(self.log_path(name))}",
                        hint=f"full log: {self.log_path(name)}",
                    ))  # fmt: skip
                    del waiting[name]
                elif time.monotonic() - t0 > spec.timeout:
                    errors.append(ServiceError(
                        f"{name}: not ready after {spec.timeout:.0f}s ({why}); stopped it",
                        hint=f"see {self.log_path(name)}",
                    ))  # fmt: skip
                    if proc is not None:
                        _kill_group(proc)
                        self._clear_state(name)
                    else:
                        self._stop_one(name)
                    del waiting[name]
            if waiting:
                time.sleep(0.25)
        if errors:
            if len(errors) == 1:
                raise errors[0]
            raise ServiceError("; ".join(e.message for e in errors), hint=errors[0].hint)
        return self.status(names)

    def _select(self, names: list[str] | None) -> list[str]:
        enabled = self.enabled()
        if not names:
            return enabled
        unknown = [n for n in names if n not in self.ORDER]
        if unknown:
            raise ServiceError(f"unknown service {unknown[0]!r}", hint=f"choose from {', '.join(self.ORDER)}")
        return [n for n in self.ORDER if n in names]

    def _stop_one(self, name: str, timeout: float = 60.0) -> bool:
        pid, st = self._owned_pid(name)
        if pid is None:
            if st is not None:
                self._clear_state(name)
            return False
        sig = signal.SIGINT if name == "postgres" and self.cfg.postgres.ha.members == 1 else signal.SIGTERM  # Patroni stops its PostgreSQL on TERM
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _pid_alive(pid):
            _reap(pid)
            time.sleep(0.1)
        if _pid_alive(pid):
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            time.sleep(0.2)
            _reap(pid)
        self._clear_state(name)
        return True

    def down(self, names: list[str] | None = None) -> list[str]:
        """Stop the named (default: all) services that we started; return those stopped."""
        stopped = []
        for name in reversed(self._select(names) if names else list(self.ORDER)):
            if self._stop_one(name):
                stopped.append(name)
        return stopped

    def status(self, names: list[str] | None = None) -> list[ServiceStatus]:
        """Each service's address, pid and health."""
        out = []
        for name in self._select(names) if names else list(self.ORDER):
            enabled = self._svc_cfg(name).enabled
            spec_host = self._svc_cfg(name).host
            pid, st = self._owned_pid(name)
            port = int(st["port"]) if st else self._default_port(name)
            address = f"{spec_host}:{port}"
            log = str(self.log_path(name))
            if not enabled:
                out.append(ServiceStatus(name, address, None, "disabled", log))
            elif pid is None:
                out.append(ServiceStatus(name, address, None, "stopped", log))
            else:
                ok, why = self.spec(name).ready(port)
                out.append(ServiceStatus(name, address, pid, "healthy" if ok else "unhealthy", log, why))
        if self.cfg.postgres.ha.members > 1:
            roles = self._patroni_roles()
            for st in out:
                if st.name.startswith("postgres") and st.pid is not None:
                    st.role = roles.get(f"pg-{_es_index(st.name)}", "")
        if self.cfg.elasticsearch.nodes > 1:
            master = self._es_master()
            for st in out:
                if st.name.startswith("elasticsearch") and st.pid is not None:
                    st.role = "master" if master == f"govctl-{_es_index(st.name)}" else "data"
        return out

    def _patroni_roles(self) -> dict[str, str]:
        """Each Patroni member's role (leader, replica) as the members themselves report it."""
        ha, host = self.cfg.postgres.ha, self.cfg.postgres.host
        for i in range(ha.members):
            try:
                members = httpx.get(f"http://{host}:{ha.rest_port + i}/cluster", timeout=2).json()["members"]
                return {m["name"]: str(m["role"]) for m in members}
            except (httpx.HTTPError, ValueError, KeyError):
                continue
        return {}

    def _es_master(self) -> str | None:
        """The elected master's node name, from any node that answers."""
        from control_plane.es import client_for

        try:
            rows = client_for(self.settings, timeout=3).cat.master(format="json")
            return str(rows[0]["node"]) if rows else None
        except Exception:  # noqa: BLE001 - no quorum or nothing running: no master to report
            return None

    def signal(self, name: str, sig: int) -> bool:
        """Send a signal to a service we started (SIGHUP reloads Prometheus); False if it is not running."""
        pid, _ = self._owned_pid(name)
        if pid is None:
            return False
        os.kill(pid, sig)
        return True

    def port(self, name: str) -> int:
        """The port a service actually listens on (PostgreSQL may have moved to the next free one)."""
        st = self._read_state(name)
        return int(st["port"]) if st else self._default_port(name)

    def postgres_url(self, database: str | None = None) -> str:
        """SQLAlchemy URL of our PostgreSQL cluster, on the port it really uses."""
        return self.settings.postgres_url(self.port("postgres"), database)


SEAWEED_VERSION = "7506e5f91cd6"  # the commit of github.com/seaweedfs/seaweedfs that infra/objectstore pins


def _es_index(name: str) -> int:
    """1 for ``elasticsearch`` or ``postgres``, N for ``elasticsearch-N`` or ``postgres-N``."""
    return int(name.rsplit("-", 1)[1]) if "-" in name else 1


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """Kill a process we just spawned, with its whole process group."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def _unzip(archive: Path, dest: Path) -> None:
    """Extract a zip keeping the Unix modes (``zipfile`` alone drops the executable bits)."""
    dest.mkdir(parents=True, exist_ok=True)
    staging = dest / f".unpack-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            path = Path(zf.extract(info, staging))
            mode = (info.external_attr >> 16) & 0o7777
            if mode and not info.is_dir():
                os.chmod(path, mode)
    for child in staging.iterdir():
        target = dest / child.name
        if target.exists():
            shutil.rmtree(target)
        os.replace(child, target)
    staging.rmdir()
