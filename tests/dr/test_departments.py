"""A department's system on the local pools: its PostgreSQL on prim-data-1 (TLS, a replication-only role) under pgbench load,
restored to a point in time on the backup pool; its file tree on prim-app-1 shipped in real time over SSH."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from control_plane.config import load
from control_plane.context import Context
from control_plane.crypto import sm3_hex
from control_plane.errors import GovctlError
from control_plane.gate import OperationRequest
from control_plane.wiring import context_for
from dr.repo import RepoError
from tests.conftest import make_test_config, write_config
from tests.deploy.test_local_stack import TEST_STACK
from tests.gate.conftest import make_people

REGISTRY = """
network_zones: {{egov: 政务外网}}
pools:
  primary: {{name: 主资源池, network_zone: egov, capacity: {{vcpu: 8, memory_gib: 32, storage_gib: 500, physical_cores: 4}}}}
  backup: {{name: 备资源池, network_zone: egov, capacity: {{vcpu: 8, memory_gib: 32, storage_gib: 500, physical_cores: 4}}}}
departments:
  - code: city-public-security
    name: 市公安局
    systems:
      - code: population-db
        name: 人口库
        pools: [primary, backup]
        stacks: [local]
        level: 3
        rpo_s: 60
        rto_s: 1800
        data:
          - {{name: main, type: postgres, host: prim-data-1, port: 5432, tls_ca: {ca}}}
          - {{name: uploads, type: files, host: prim-app-1, path: {files}, realtime: true}}
"""

DEPT_ADMIN = "dept_admin"


@dataclass
class Dept:
    rt: Context
    people: object
    base: Path
    ca: Path
    data: Path
    files: Path
    prim: str
    back: str
    admin_pw: str
    repl_pw: str


def _cert(base: Path, ip: str, ca_cn: str = "city-public-security CA") -> tuple[Path, Path, Path]:
    """A department CA and the cluster's server certificate for ``ip`` (what the department's own PKI would issue)."""
    now = dt.datetime.now(dt.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ca_cn)])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(ca_key, hashes.SHA256()))  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "prim-data-1")])).issuer_name(ca_name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1)).add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]), critical=False)
            .sign(ca_key, hashes.SHA256()))  # fmt: skip
    (base / "ca.crt").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (base / "server.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (base / "server.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return base / "ca.crt", base / "server.crt", base / "server.key"


def _as_service(rt: Context) -> dict:
    return rt.supervisor._as_user()


def _chown(top: Path, rt: Context) -> None:
    u = rt.supervisor.user
    if u is not None:
        for p in [top, *top.rglob("*")]:
            os.lchown(p, u.pw_uid, u.pw_gid)


def _department_cluster(rt: Context, base: Path, ip: str, netns: str, gateway: str, admin_pw: str, repl_pw: str) -> tuple[Path, Path]:
    """What the department runs: PostgreSQL on its data host, TLS only from the backup side, a replication-only role for us."""
    bindir = rt.supervisor._pg_bin()
    data = base / "pgdata"
    ca, crt, key = _cert(base, ip)
    pwfile = base / ".pw"
    pwfile.write_text(admin_pw + "\n")
    _chown(base, rt)
    subprocess.run([str(bindir / "initdb"), "-D", str(data), "-U", DEPT_ADMIN, "--auth=scram-sha-256", f"--pwfile={pwfile}", "-E", "UTF8",
                    "--locale=C.UTF-8"], check=True, capture_output=True, **_as_service(rt))  # fmt: skip
    pwfile.unlink()
    shutil.copy(crt, data / "server.crt")
    shutil.copy(key, data / "server.key")
    os.chmod(data / "server.key", 0o600)
    with open(data / "postgresql.conf", "a") as f:
        f.write("ssl = on\nwal_level = replica\nmax_wal_senders = 5\n")
    (data / "pg_hba.conf").write_text(
        "local all all scram-sha-256\n"
        f"hostssl replication govctl_replication {gateway}/32 scram-sha-256\n"  # the backup pool replicates, over TLS only
        f"hostssl all {DEPT_ADMIN} {gateway}/32 scram-sha-256\n"  # the department's own administration (this test's checks)
        "host all all 0.0.0.0/0 reject\n")  # fmt: skip
    sock = base / "sock"
    sock.mkdir()
    _chown(base, rt)
    subprocess.run(["ip", "netns", "exec", netns, "setpriv", f"--reuid={rt.supervisor.user.pw_uid}", f"--regid={rt.supervisor.user.pw_gid}", "--clear-groups",
                    str(bindir / "pg_ctl"), "-D", str(data), "-l", str(base / "pg.log"), "-w", "-o",
                    f"-p 5432 -c listen_addresses={ip} -c unix_socket_directories={sock}", "start"],
                   check=True, capture_output=True)  # fmt: skip
    with _admin(ip, admin_pw) as c:
        c.execute(f"CREATE ROLE govctl_replication LOGIN REPLICATION PASSWORD '{repl_pw}'")
        c.execute("CREATE TABLE canary (seq bigint PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp())")
    return data, ca


def _admin(ip: str, pw: str, **kw: object) -> psycopg.Connection:
    return psycopg.connect(host=ip, port=5432, user=DEPT_ADMIN, password=pw, dbname="postgres", sslmode="require", autocommit=True, connect_timeout=10, **kw)


@pytest.fixture(scope="module")
def dept(tmp_path_factory: pytest.TempPathFactory, services) -> Iterator[Dept]:  # noqa: ANN001
    """The test stack deployed; a department cluster on prim-data-1 and a file tree on prim-app-1, declared in the registry."""
    from control_plane.deploy import service as deploy
    from control_plane.deploy.service import outputs

    tmp = tmp_path_factory.mktemp("dept")
    data_cfg = make_test_config(var_dir=tmp / "var")
    data_cfg["deploy"] = {"stacks": {"local": TEST_STACK}}
    probe = context_for(load(write_config(tmp / "probe.yaml", data_cfg)))
    base = probe.supervisor.root / "departments" / uuid.uuid4().hex[:8]
    base.mkdir(parents=True)
    for p in (base, base.parent):
        p.chmod(0o755)
    files = base / "srv-uploads"
    files.mkdir()
    (base / "registry.yaml").write_text(REGISTRY.format(ca=base / "ca.crt", files=files), encoding="utf-8")
    data_cfg["report"] = {"registry_file": str(base / "registry.yaml")}
    data_cfg["dr"] = {"sources": {}}
    rt = context_for(load(write_config(tmp / "govctl.yaml", data_cfg)))
    deploy.up(rt, "local")
    outs = outputs(rt, "local")
    prim, back = outs["primary_hosts"]["prim-data-1"], outs["backup_hosts"]["back-data-1"]
    gateway = TEST_STACK["local_gateway"].split("/")[0]
    admin_pw, repl_pw = uuid.uuid4().hex, uuid.uuid4().hex
    pgdata, ca = _department_cluster(rt, base, prim, "gt-prim-data-1", gateway, admin_pw, repl_pw)
    try:
        yield Dept(rt, make_people(rt), base, ca, pgdata, files, prim, back, admin_pw, repl_pw)
    finally:
        subprocess.run([str(rt.supervisor._pg_bin() / "pg_ctl"), "-D", str(pgdata), "-m", "immediate", "stop"], capture_output=True, **_as_service(rt))
        deploy.destroy(rt, "local")


def _install_credential(d: Dept) -> None:
    """As the README shows: a sysadmin types the password (it is staged 0600, never a parameter), an approver approves."""
    from dr.access import stage_credential

    p = d.people
    view = d.rt.gate.submit(p["sysadmin"], OperationRequest("dr.credential", "population-db.main", {"staged": stage_credential(d.rt, d.repl_pw)}))
    assert view.status == "pending_approval"
    d.rt.gate.approve(p["approver"], view.id, "the department's DBA sent it")
    done = d.rt.gate.run(p["sysadmin"], view.id)
    f = Path(done.result["file"])
    assert f.stat().st_mode & 0o777 == 0o600 and f.read_text().strip() == d.repl_pw
    assert d.repl_pw not in str(done.as_dict())  # the audited operation holds a token, not the password


def _wait(what: str, pred, timeout: float = 90.0):  # noqa: ANN001, ANN202
    deadline = time.monotonic() + timeout
    while True:
        got = pred()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.25)


def test_department_postgres_point_in_time_onto_the_backup_pool(dept: Dept) -> None:
    """Base backup and WAL over TLS as the replication-only role while pgbench writes; a restore to T on back-data-1 has
    exactly the canaries committed before T, and pgbench's books balance there."""
    from dr.service import Live, open_repo, rpo_status, sources

    d, rt, p = dept, dept.rt, dept.people
    assert {"population-db.main", "population-db.uploads"} <= set(sources(rt))
    with pytest.raises(GovctlError, match="no credential file"):  # a clear error before anything is read
        rt.gate.submit(p["ops_engineer"], OperationRequest("backup.run", "population-db.main", {}))
    early = Live(rt).start()  # the scheduler leader's DR worker, running before the department's password is stored
    try:
        assert "population-db.main" not in early.wal.streamers and "no credential file" in early.wal.errors["population-db.main"]
        _install_credential(d)
        early.wal.reconcile()  # what its loop does every 30 s: the source streams now, without a restart
        assert "population-db.main" in early.wal.streamers and "population-db.main" not in early.wal.errors
    finally:
        early.stop()
    bindir = rt.supervisor._pg_bin()
    env = {**os.environ, "PGPASSWORD": d.admin_pw, "PGSSLMODE": "require"}
    subprocess.run([str(bindir / "pgbench"), "-i", "-q", "-s", "2", "-h", d.prim, "-U", DEPT_ADMIN, "postgres"], env=env, check=True, capture_output=True)
    first = rt.gate.submit(p["ops_engineer"], OperationRequest("backup.run", "population-db.main", {})).result
    assert first["stats"]["files"] > 100
    live = Live(rt).start()
    try:
        assert "population-db.main" in live.wal.streamers
        load = subprocess.Popen([str(bindir / "pgbench"), "-T", "8", "-c", "2", "-h", d.prim, "-U", DEPT_ADMIN, "postgres"], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
        written: list[tuple[int, dt.datetime]] = []
        with _admin(d.prim, d.admin_pw) as c:
            for seq in range(1, 41):
                at = c.execute("INSERT INTO canary (seq) VALUES (%s) RETURNING at", (seq,)).fetchone()[0]
                written.append((seq, at))
                time.sleep(0.15)
        assert load.wait(60) == 0, load.stderr.read() if load.stderr else ""
        with _admin(d.prim, d.admin_pw) as c:
            lsn = c.execute("SELECT pg_current_wal_lsn()").fetchone()[0]
            c.execute("SELECT pg_switch_wal()")
        _wait("the WAL up to the last canary shipped", lambda: live.lag_s("population-db.main") == 0.0 and not live.wal.streamers["population-db.main"].pending())
        assert lsn
        row = next(r for r in rpo_status(rt) if r["source"] == "population-db.main")
        assert row["ok"] and row["host"] == "prim-data-1"
    finally:
        live.stop()
    t = written[19][1] + (written[20][1] - written[19][1]) / 2  # between canary 20 and 21
    target = rt.supervisor.root / "departments" / f"restored-{uuid.uuid4().hex[:6]}"
    view = rt.gate.submit(p["ops_engineer"], OperationRequest("dr.restore", "population-db.main",
                                                              {"kind": "postgres", "target": str(target), "to": t.isoformat(), "host": "back-data-1"}))
    assert view.status == "pending_approval"
    rt.gate.approve(p["approver"], view.id, "restore drill")
    res = rt.gate.run(p["ops_engineer"], view.id).result
    assert res["host"] == d.back
    try:
        with _admin(d.back, d.admin_pw) as c:
            got = [r[0] for r in c.execute("SELECT seq FROM canary ORDER BY seq")]
            balance, history = c.execute("SELECT (SELECT sum(abalance) FROM pgbench_accounts), (SELECT coalesce(sum(delta), 0) FROM pgbench_history)").fetchone()
            assert not c.execute("SELECT pg_is_in_recovery()").fetchone()[0]
        assert got == list(range(1, 21)), got
        assert balance == history  # every pgbench transaction is all in or all out at T
        assert history != 0, "pgbench ran before T"
    finally:
        subprocess.run(["ip", "netns", "exec", "gt-back-data-1", "setpriv", f"--reuid={rt.supervisor.user.pw_uid}", f"--regid={rt.supervisor.user.pw_gid}",
                        "--clear-groups", str(bindir / "pg_ctl"), "-D", str(target), "-m", "fast", "-w", "stop"], capture_output=True)  # fmt: skip
    snaps = [s for s in open_repo(rt).snapshots() if s["source"] == "population-db.main"]
    assert any("base" in s["tags"] for s in snaps) and any("wal" in s["tags"] for s in snaps)


def test_department_postgres_refuses_a_wrong_ca_a_superuser_and_a_readable_credential(dept: Dept) -> None:
    """A server whose certificate another CA signed is not backed up (a man in the middle); nor as a superuser; nor with a credential others can read."""
    from dr.pg import PgTarget, base_backup, refuse_superuser
    from dr.service import open_repo

    d, rt = dept, dept.rt
    other = d.base / "other-ca"
    other.mkdir(exist_ok=True)
    wrong_ca, _, _ = _cert(other, d.prim, "someone else's CA")
    repo = open_repo(rt)
    bindir = rt.supervisor._pg_bin()
    with pytest.raises(RepoError, match="certificate verify failed"):
        base_backup(rt, repo, "population-db.main", PgTarget(bindir, d.prim, 5432, "govctl_replication", d.repl_pw, sslrootcert=wrong_ca))
    with pytest.raises(RepoError, match="superuser"):
        refuse_superuser(PgTarget(bindir, d.prim, 5432, DEPT_ADMIN, d.admin_pw, sslrootcert=d.ca))
    refuse_superuser(PgTarget(bindir, d.prim, 5432, "govctl_replication", d.repl_pw, sslrootcert=d.ca))  # pg_hba: replication only
    from dr.access import credential_path, read_credential

    cred = credential_path(rt, "population-db.main")
    if not cred.exists():
        _install_credential(d)
    cred.chmod(0o644)
    try:
        with pytest.raises(RepoError, match="0644"):
            read_credential(rt, "population-db.main")
    finally:
        cred.chmod(0o600)


def _snapshot_files(rt: Context, sid: str, into: Path) -> dict[str, str]:
    from dr.files import restore
    from dr.service import open_repo

    restore(open_repo(rt), sid, into)
    return {str(q.relative_to(into)): sm3_hex(q.read_bytes()) for q in sorted(into.rglob("*")) if q.is_file() and not q.is_symlink()}


def test_department_files_on_a_pool_host_in_real_time(dept: Dept, tmp_path: Path) -> None:
    """Files written on prim-app-1 are in a snapshot within seconds, read over SSH with the bastion's key for that host;
    deletions and renamed directories follow; the periodic backup of the same tree agrees."""
    from dr.service import Live, open_repo

    d, rt = dept, dept.rt
    (d.files / "old").mkdir(exist_ok=True)
    (d.files / "old" / "keep.txt").write_text("户籍档案 1\n", encoding="utf-8")
    live = Live(rt).start()
    try:
        w = next(x for x in live.watchers if x.name == "population-db.uploads")
        expect: dict[str, str] = {"old/keep.txt": sm3_hex("户籍档案 1\n".encode())}
        t0 = time.monotonic()
        for i in range(12):
            body = os.urandom(1000 + i * 5000)
            (d.files / f"scan-{i:02d}.bin").write_bytes(body)
            expect[f"scan-{i:02d}.bin"] = sm3_hex(body)
        (d.files / "old").rename(d.files / "archive")
        expect["archive/keep.txt"] = expect.pop("old/keep.txt")
        (d.files / "scan-00.bin").unlink()
        expect.pop("scan-00.bin")

        def shipped() -> str | None:
            snaps = [s for s in open_repo(rt).snapshots() if s["source"] == "population-db.uploads" and "realtime" in s["tags"]]
            if not snaps:
                return None
            out = tmp_path / f"r{len(snaps)}-{uuid.uuid4().hex[:4]}"
            return snaps[-1]["id"] if _snapshot_files(rt, snaps[-1]["id"], out) == expect else None

        sid = _wait("the changes shipped", shipped, timeout=60)
        lag = time.monotonic() - t0
        print(f"real-time over SSH: {len(expect)} files shipped {lag:.1f} s after the first write (RPO target 60 s)")
        assert lag < 60 and w.shipments >= 1 and sid
        # the journal on the host dies (a reboot, a killed session): what changes meanwhile still arrives, by a full walk
        journal = subprocess.run(["pgrep", "-f", r"python3[0-9.]* -u -$"], capture_output=True, text=True).stdout.split()
        assert journal, "the journal runs on the host as python3 reading its program from standard input"
        for pid in journal:
            os.kill(int(pid), 9)
        body = os.urandom(70_000)
        (d.files / "while-down.bin").write_bytes(body)
        expect["while-down.bin"] = sm3_hex(body)
        assert _wait("the change made while the journal was down shipped", shipped, timeout=60)
        assert w.reconnects >= 1
    finally:
        live.stop()
    res = rt.gate.submit(d.people["ops_engineer"], OperationRequest("backup.run", "population-db.uploads", {})).result
    snap = next(s for s in open_repo(rt).snapshots() if s["id"] == res["snapshot"])
    assert snap["remote"] == {"host": "prim-app-1", "path": str(d.files)}
    assert _snapshot_files(rt, res["snapshot"], tmp_path / "periodic") == expect
    again = rt.gate.submit(d.people["ops_engineer"], OperationRequest("backup.run", "population-db.uploads", {})).result
    assert again["stats"]["transfer"]["fetched"] == 0, "nothing changed on the host: nothing is fetched again (the mirror keeps the host's times)"
    assert again["stats"]["skipped_unchanged"] == len(expect)


def test_a_host_cannot_make_the_mirror_write_outside_itself(dept: Dept, tmp_path: Path) -> None:
    """A symbolic link in the host's tree is kept as a link; a journal line naming a path through it (or with '..') writes nothing outside the mirror."""
    from dr.remote import Mirror, _run, connect, mirror_dir

    d, rt = dept, dept.rt
    outside = d.base / "outside"
    outside.mkdir(exist_ok=True)
    (outside / "evil").write_text("x")
    src_dir = d.base / "linked"
    src_dir.mkdir(exist_ok=True)
    (src_dir / "link").symlink_to(outside)
    local_outside = tmp_path / "victim"
    local_outside.mkdir()

    async def go() -> None:
        async with await connect(rt, "prim-app-1", "root") as conn:
            async with conn.start_sftp_client() as sftp:
                m = Mirror(mirror_dir(rt, "attack-test"), str(src_dir), sftp)
                await m.sync()
                assert os.path.islink(m.local / "link")
                os.unlink(m.local / "link")
                os.symlink(local_outside, m.local / "link")  # as if the mirror's link pointed somewhere of ours
                await m.paths({b"link/evil", b"../../etc/passwd", b"/etc/passwd"})
                assert os.path.islink(m.local / "link"), "a path through a link is refused, not made into a directory"

    _run(go())
    assert list(local_outside.iterdir()) == []


def test_a_destroyed_stacks_backups_are_kept_then_destroyed_by_two_approvers(dept: Dept, tmp_path: Path) -> None:
    """Destroying the stack keeps its system's backups (nothing due, nothing alerted); 数据安全销毁 is refused while the system
    runs and within the retention period, needs two approvers, removes the system's data everywhere but nothing else's,
    and leaves an SM2-signed record. Runs last in this module: it destroys the stack."""
    from control_plane.crypto import SM2PublicKey
    from control_plane.deploy import service as deploy
    from control_plane.gate import ApprovalError
    from control_plane.report.seal import verify
    from dr.check import check
    from dr.destroy import records
    from dr.files import backup
    from dr.service import due_sources, open_repo, rpo_status

    d, rt, p = dept, dept.rt, dept.people
    mine = lambda: [s for s in open_repo(rt).snapshots() if s["source"].startswith("population-db.")]  # noqa: E731
    before = mine()
    assert {s["source"] for s in before} == {"population-db.main", "population-db.uploads"}
    other = tmp_path / "city-docs"
    other.mkdir()
    (other / "notice.txt").write_text("关于数据共享的通知\n" * 100, encoding="utf-8")
    other_sid, _ = backup(open_repo(rt), other, name="city-docs")
    with pytest.raises(GovctlError, match="still runs"):
        rt.gate.submit(p["sysadmin"], OperationRequest("dr.destroy", "人口库", {}))
    deploy.destroy(rt, "local")
    assert not [n for n in due_sources(rt, open_repo(rt)) if n.startswith("population-db.")]
    rows = [r for r in rpo_status(rt) if r["source"].startswith("population-db.")]
    assert len(rows) == 2 and all(r["ok"] and "not deployed" in r["note"] for r in rows)
    assert len(mine()) == len(before), "a destroyed stack's backups stay"
    with pytest.raises(GovctlError, match="kept at least 180 days"):
        rt.gate.submit(p["sysadmin"], OperationRequest("dr.destroy", "人口库", {}))
    object.__setattr__(rt.settings.dr.retention, "destroyed_min_days", 0)
    view = rt.gate.submit(p["sysadmin"], OperationRequest("dr.destroy", "人口库", {}, reason="system retired; archive period over"))
    assert (view.status, view.risk) == ("pending_approval", "critical")
    rt.gate.approve(p["approver"], view.id, "retirement notice 2026-12")
    with pytest.raises(ApprovalError):
        rt.gate.run(p["sysadmin"], view.id)  # one approver is not enough
    assert len(mine()) == len(before)
    rt.gate.approve(p["approver2"], view.id, "confirmed with the department")
    res = rt.gate.run(p["sysadmin"], view.id).result
    assert res["snapshots_destroyed"] == len(before) and mine() == []
    assert not (rt.settings.var / "dr" / "mirror" / "population-db.uploads").exists()
    assert not (rt.settings.var / "dr" / "wal" / "population-db.main").exists()
    repo = open_repo(rt)
    assert [s["id"] for s in repo.snapshots() if s["source"] == "city-docs"] == [other_sid]
    assert _snapshot_files(rt, other_sid, tmp_path / "docs-back") == {"notice.txt": sm3_hex(("关于数据共享的通知\n" * 100).encode())}
    assert check(repo, read_data=True).ok
    rec = Path(res["record"])
    data = rec.read_bytes()
    verify(data, __import__("json").loads((rec.parent / "record.sig.json").read_text()), SM2PublicKey.from_pem(rt.signer.public_key.to_pem()))
    doc = __import__("json").loads(data)
    assert doc["kind"] == "数据安全销毁" and doc["requested_by"] == "sysadmin" and sorted(doc["approvers"]) == ["approver", "approver2"]
    assert sm3_hex(data) == res["record_sm3"] and "数据安全销毁记录" in (rec.parent / "record.html").read_text(encoding="utf-8")
    assert records(rt)[0]["destruction"] == res["destruction"]
