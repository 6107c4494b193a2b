"""PostgreSQL into the repository: base backups (``pg_basebackup``), WAL streamed by ``pg_receivewal``
and shipped continuously, and point-in-time restores that bring up a cluster at the asked time.

* A base backup is a files snapshot of ``pg_basebackup -Fp -X stream`` output, tagged ``base``,
  with the backup's start LSN and end time; FastCDC makes successive base backups share chunks.
* ``pg_receivewal --synchronous`` keeps a replication slot and writes WAL as it is produced; the
  shipper snapshots the WAL directory (completed segments and the growing ``.partial``) every
  few seconds when it changed, tagged ``wal``, with ``restore_point`` = the newest WAL's time.
* ``restore_pg`` restores the newest base backup before the target time, then every WAL
  snapshot after it, writes ``recovery.signal`` with ``recovery_target_time`` (or none for
  ``latest``), starts PostgreSQL on a free port and waits until recovery has promoted it.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dr.files import backup, restore
from dr.repo import RepoError, Repository

if TYPE_CHECKING:
    from control_plane.context import Context


@dataclass
class PgTarget:
    """A PostgreSQL cluster to back up or to run a restore as: where it listens and how to run its binaries."""

    bindir: Path
    host: str
    port: int
    user: str
    password: str
    netns: str | None = None  # run the restored server inside this network namespace (a pool host)
    as_user: dict[str, Any] = field(default_factory=dict)  # subprocess kwargs to drop root (PostgreSQL refuses it)
    sslrootcert: Path | None = None  # a department's cluster: TLS, its certificate checked against this CA and its address (verify-full)

    def env(self) -> dict[str, str]:
        """The client's environment: the password (never on a command line) and, for a pool host, TLS that checks the server."""
        env = {**os.environ, "PGPASSWORD": self.password, "PGCONNECT_TIMEOUT": "10"}
        if self.sslrootcert is not None:
            env.update({"PGSSLMODE": "verify-full", "PGSSLROOTCERT": str(self.sslrootcert)})
        return env

    def command(self, argv: list[str]) -> tuple[list[str], dict[str, Any]]:
        """(argv, subprocess kwargs) to run a server binary as the service user, inside the target's namespace if it has one.

        Entering a namespace needs root, so there root enters it and ``setpriv`` drops to the service user.
        """
        if not self.netns:
            return argv, dict(self.as_user)
        drop = ["setpriv", f"--reuid={self.as_user['user']}", f"--regid={self.as_user['group']}", "--clear-groups"] if self.as_user else []
        return ["ip", "netns", "exec", self.netns, *drop, *argv], {}


def control_plane_pg(rt: Context) -> PgTarget:
    """services.postgres, our own cluster."""
    sup = rt.supervisor
    c = rt.settings.services.postgres
    from control_plane.credentials import REPLICATION_ROLE

    # base backups and WAL need nothing but REPLICATION: never the superuser, never the application role
    return PgTarget(sup._pg_bin(), c.host, sup.port("postgres"), REPLICATION_ROLE, rt.settings.pg_password("replication"), None, sup._as_user())


def target_for(rt: Context, name: str, src: Any) -> PgTarget | None:
    """A postgres source on a pool host as a client target (its address from the deployed stack, the role's password from its
    0600 credential file); None for services.postgres."""
    if src.host is None:
        return None
    from control_plane.bastion import store
    from dr.access import read_credential

    a = store.asset(rt, src.host)
    if src.tls_ca is None or not Path(src.tls_ca).is_file():
        raise RepoError(f"source {name}: CA certificate {src.tls_ca} not found", hint="tls_ca: the certificate of the CA that signed the cluster's server certificate")
    pw = read_credential(rt, name, src.credential)
    return PgTarget(rt.supervisor._pg_bin(), a.address, src.port, src.role, pw, sslrootcert=Path(src.tls_ca))


def refuse_superuser(t: PgTarget) -> None:
    """Backups of a department's cluster run as a replication-only role: if that role can log in to a database and is a
    superuser (or may create roles or databases), refuse rather than hold more power than a backup needs."""
    import psycopg

    try:
        with psycopg.connect(host=t.host, port=t.port, user=t.user, password=t.password, dbname="postgres", connect_timeout=10,
                             sslmode="verify-full" if t.sslrootcert else "prefer", sslrootcert=str(t.sslrootcert) if t.sslrootcert else None) as c:  # fmt: skip
            row = c.execute("SELECT rolsuper, rolcreaterole, rolcreatedb, rolreplication FROM pg_roles WHERE rolname = current_user").fetchone()
    except psycopg.OperationalError:
        return  # pg_hba lets the role in for replication only: what it should be
    if row and (row[0] or row[1] or row[2]):
        raise RepoError(f"role {t.user} on {t.host}:{t.port} is a superuser or may create roles or databases; backups refuse to run as it",
                        hint=f"ask the department for a role with REPLICATION only: CREATE ROLE {t.user} LOGIN REPLICATION PASSWORD '…'")  # fmt: skip


SHIP_EVERY_S = 1.0
KEEP_WAL_SHIPMENTS = 3


def _pg(rt: Context, t: PgTarget | None = None) -> tuple[Path, str, int, str, dict[str, str]]:
    t = t or control_plane_pg(rt)
    return t.bindir, t.host, t.port, t.user, t.env()


def base_backup(rt: Context, repo: Repository, name: str, target: PgTarget | None = None) -> tuple[str, dict[str, Any]]:
    """One base backup of services.postgres (or ``target``) into the repository."""
    bindir, host, port, user, env = _pg(rt, target)
    if target is not None and target.sslrootcert is not None:
        refuse_superuser(target)
    work = Path(tempfile.mkdtemp(prefix=f"pgbase-{name}-", dir=_tmp(rt)))
    try:
        out = work / "base"
        p = subprocess.run([str(bindir / "pg_basebackup"), "-h", host, "-p", str(port), "-U", user, "-D", str(out), "-Fp", "-X", "stream",
                            "--checkpoint=fast", "--no-sync", "-l", f"govctl {name}"], capture_output=True, text=True, env=env, timeout=3600)  # fmt: skip
        if p.returncode != 0:
            msg = (p.stderr or p.stdout).strip()[-300:]
            hint = ("the server's certificate did not check out against the source's tls_ca (wrong CA, or issued for another address): "
                    "ask the department for its CA certificate" if "SSL" in msg or "certificate" in msg else
                    "is the cluster up and does its pg_hba.conf let the role replicate from here?" if target is not None else
                    "is services.postgres up? govctl services status")  # fmt: skip
            raise RepoError(f"pg_basebackup of {host}:{port} failed: {msg}", hint=hint)
        label = (out / "backup_label").read_text() if (out / "backup_label").exists() else ""
        end = datetime.now(timezone.utc).isoformat()
        sid, st = backup(repo, out, name=name, parent=True, tags=["base"], restore_point=end, extra={"pg": {"backup_label": label}})
        _cleanup_wal(rt, name, bindir, label)
        return sid, st.as_dict()
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _cleanup_wal(rt: Context, name: str, bindir: Path, label: str) -> None:
    """Segments older than the new base backup's start are not needed any more: remove them from the streaming directory."""
    import re

    m = re.search(r"START WAL LOCATION: .*\(file ([0-9A-F]{24})\)", label)
    wal_dir = rt.settings.var / "dr" / "wal" / name
    if m and wal_dir.is_dir():
        subprocess.run([str(bindir / "pg_archivecleanup"), str(wal_dir), m.group(1)], capture_output=True, timeout=60, check=False)


def _tmp(rt: Context) -> Path:
    d = rt.settings.var / "dr" / "tmp"
    d.mkdir(parents=True, exist_ok=True)
    return d


class WalStreamer:
    """pg_receivewal into a local directory, and a shipper that snapshots it into the repository."""

    def __init__(self, rt: Context, name: str, *, ship_every_s: float = 2.0, target: PgTarget | None = None) -> None:
        self.rt, self.name, self.ship_every_s, self.target = rt, name, ship_every_s, target
        self.dir = rt.settings.var / "dr" / "wal" / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen[bytes] | None = None
        self._last: tuple[Any, ...] | None = None
        self._shipped: list[tuple[str, set[str]]] = []
        self.slot = "govctl_" + "".join(ch if ch.isalnum() else "_" for ch in name.lower())[:50]  # slot names: [a-z0-9_]

    def start(self) -> WalStreamer:
        """Create the replication slot (once) and start pg_receivewal."""
        bindir, host, port, user, env = _pg(self.rt, self.target)
        base = [str(bindir / "pg_receivewal"), "-h", host, "-p", str(port), "-U", user, "-D", str(self.dir), "--slot", self.slot]
        made = subprocess.run([*base, "--create-slot", "--if-not-exists"], capture_output=True, text=True, env=env, timeout=30, check=False)
        if made.returncode != 0:
            raise RepoError(f"cannot create replication slot {self.slot} on {host}:{port}: {made.stderr.strip()[-300:]}")
        self.proc = subprocess.Popen([*base, "--synchronous", "--no-loop"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
                                     start_new_session=True)  # fmt: skip
        return self

    def alive(self) -> bool:
        """pg_receivewal is running."""
        return self.proc is not None and self.proc.poll() is None

    def error(self) -> str | None:
        """Why pg_receivewal stopped, if it did."""
        if self.proc is None or self.proc.poll() is None or self.proc.stderr is None:
            return None
        return self.proc.stderr.read().decode(errors="replace").strip()[-400:] or f"exit status {self.proc.returncode}"

    def _sig(self) -> tuple[Any, ...]:
        files = sorted(p for p in self.dir.iterdir() if p.is_file())
        return tuple((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files)

    def pending(self) -> bool:
        """WAL arrived since the last shipment."""
        return self._sig() != self._last

    def ship(self, repo: Repository | None = None) -> str | None:
        """Snapshot the WAL directory if it changed since the last shipment; returns the snapshot id."""
        sig = self._sig()
        if not sig or sig == self._last:
            return None
        from dr.access import open_repo

        repo = repo or open_repo(self.rt)
        rp = datetime.fromtimestamp(max(m for _, _, m in sig) / 1e9, timezone.utc).isoformat()
        # the previous shipment is the parent (unchanged segments are not read again), without listing the repository
        parent = self._shipped[-1][0] if self._shipped else True
        sid, _ = backup(repo, self.dir, name=self.name, parent=parent, tags=["wal"], restore_point=rp, lock_wait_s=30)
        self._last = sig
        # a shipment holds every segment in the directory, so it supersedes earlier ones whose segments it all has
        # (after a base backup cleaned old segments away, the last shipment holding them is kept for PITR)
        names = {n.removesuffix(".partial") for n, _, _ in sig}
        self._shipped.append((sid, names))
        older = self._shipped[:-KEEP_WAL_SHIPMENTS]
        superseded = [s for s, segs in older if segs <= names]
        if superseded:
            repo.drop_snapshots(superseded, command=f"wal shipping {self.name}")
            self._shipped = [(s, segs) for s, segs in self._shipped if s not in superseded]
        return sid

    def stop(self) -> None:
        """Stop pg_receivewal (the slot stays, so nothing is lost until it runs again)."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc = None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def restore_pg(rt: Context, repo: Repository, name: str, target: Path, *, to: str = "latest", start: bool = True, run_as: PgTarget | None = None) -> dict[str, Any]:
    """Restore source ``name`` into ``target`` at time ``to`` (ISO) or ``latest`` and bring it up on a free port."""
    target = Path(target)
    if target.exists() and any(target.iterdir()):
        raise RepoError(f"restore target {target} is not empty", hint="give an empty or new directory")
    snaps = [s for s in repo.snapshots() if s["source"] == name]
    when = None if to == "latest" else datetime.fromisoformat(to.replace("Z", "+00:00"))
    if when is not None and when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    bases = [s for s in snaps if "base" in s["tags"] and (when is None or datetime.fromisoformat(s["restore_point"]) <= when)]
    if not bases:
        raise RepoError(f"no base backup of {name} before {to}", hint="list them: govctl dr snapshots --source " + name)
    base = bases[-1]
    restore(repo, base["id"], target)
    wals = [s for s in snaps if "wal" in s["tags"] and s["time"] >= base["time"]]
    if when is not None:  # the first shipment that reaches the target time holds everything up to it
        reaching = [w for w in wals if datetime.fromisoformat(w["restore_point"]) >= when]
        wals = reaching[:1] or wals[-1:]
    else:
        wals = wals[-1:]
    archive = target / "govctl_wal_archive"
    archive.mkdir()
    for w in wals:  # a shipment holds every segment streamed so far
        restore(repo, w["id"], archive)
    for partial in archive.glob("*.partial"):
        full = partial.with_name(partial.name.removesuffix(".partial"))
        if not full.exists():
            partial.rename(full)
    for stale in ("postmaster.pid", "postmaster.opts", "standby.signal"):
        (target / stale).unlink(missing_ok=True)
    conf = [f"restore_command = 'cp {archive}/%f %p'", "recovery_target_action = 'promote'"]
    if when is not None:
        conf.append(f"recovery_target_time = '{when.isoformat()}'")
    else:
        conf.append("recovery_target_timeline = 'latest'")
    with open(target / "postgresql.auto.conf", "a") as f:
        f.write("\n# govctl dr restore-pg\n" + "\n".join(conf) + "\n")
    (target / "recovery.signal").write_text("")
    os.chmod(target, 0o700)
    res: dict[str, Any] = {"source": name, "base": base["id"], "wal_snapshots": len(wals), "target": str(target), "to": to}
    if start:
        res.update(start_restored(rt, target, run_as=run_as))
    return res


def start_restored(rt: Context, data: Path, *, timeout_s: float = 300, run_as: PgTarget | None = None) -> dict[str, Any]:
    """Start PostgreSQL on a restored data directory (as the service user, in ``run_as``'s namespace) and wait for it to finish recovery."""
    import psycopg

    t = run_as or control_plane_pg(rt)
    bindir, user, pw = t.bindir, t.user, t.password
    host = t.host
    port = t.port if run_as is not None else _free_port()
    sup = rt.supervisor
    sock = Path(tempfile.mkdtemp(prefix="pgsock-", dir="/tmp"))
    if sup.user is not None:
        for p in [data, *data.rglob("*"), sock]:
            os.lchown(p, sup.user.pw_uid, sup.user.pw_gid)
    log = data / "govctl-restore.log"
    argv, kw = t.command([str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", str(int(timeout_s)), "-o",
                          f"-p {port} -c listen_addresses={host} -c unix_socket_directories={sock} -c archive_mode=off", "start"])  # fmt: skip
    p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s + 30, **kw)
    if p.returncode != 0:
        tail = log.read_text()[-500:] if log.exists() else p.stderr
        raise RepoError(f"restored PostgreSQL did not start: {tail.strip()}")
    deadline = time.monotonic() + timeout_s
    while True:
        if t.sslrootcert is not None:  # a department's cluster: our role may replicate only, so ask the control file, not SQL
            if _promoted(bindir, data) and subprocess.run([*t.command([str(bindir / "pg_isready"), "-q", "-h", host, "-p", str(port)])[0]],
                                                          capture_output=True, timeout=30).returncode == 0:  # fmt: skip
                break
        else:
            try:
                with psycopg.connect(host=host, port=port, user=user, password=pw, dbname="postgres", connect_timeout=3, autocommit=True) as c:
                    if not c.execute("SELECT pg_is_in_recovery()").fetchone()[0]:
                        break
            except psycopg.OperationalError:
                pass
        if time.monotonic() > deadline:
            raise RepoError(f"restored PostgreSQL still recovering after {timeout_s:.0f} s; see {log}")
        time.sleep(0.3)
    return {"port": port, "host": host, "log": str(log)}


def _promoted(bindir: Path, data: Path) -> bool:
    """Recovery has ended and the cluster serves writes (its control file says 'in production')."""
    p = subprocess.run([str(bindir / "pg_controldata"), "-D", str(data)], capture_output=True, text=True, timeout=30, env={**os.environ, "LC_ALL": "C"})
    return p.returncode == 0 and any(line.startswith("Database cluster state:") and line.rstrip().endswith("in production") for line in p.stdout.splitlines())


def backup_pool_target(rt: Context, name: str, host: str) -> PgTarget:
    """Where a department's cluster is restored: a host of the backup pool, in its namespace, on the source's port."""
    from control_plane.bastion import store

    src = _source(rt, name)
    a = store.asset(rt, host)
    if a.pool != "backup":
        raise RepoError(f"host {host} is in the {a.pool} pool; point-in-time restores go onto a backup-pool host",
                        hint="pick one: govctl bastion hosts (pool backup)")  # fmt: skip
    spec = rt.settings.deploy.stacks.get(a.stack, {})
    if spec.get("target", "local") != "local":
        raise RepoError(f"restoring onto host {host} of stack {a.stack} ({spec.get('target')}) is not supported here", hint="restore into a directory and copy it")
    t = target_for(rt, name, src)
    assert t is not None
    sup = rt.supervisor
    return PgTarget(sup._pg_bin(), a.address, src.port, t.user, t.password, f"{spec.get('local_prefix', 'gc')}-{a.name}", sup._as_user(), t.sslrootcert)


def _source(rt: Context, name: str) -> Any:
    from dr.sources import source

    src = source(rt, name)
    if src.type != "postgres" or src.host is None:
        raise RepoError(f"source {name} is not PostgreSQL on a pool host", hint="restore it into a directory: govctl dr restore-pg --target DIR")
    return src


def stop_restored(rt: Context, data: Path, *, mode: str = "fast") -> None:
    """Stop a cluster started by ``start_restored`` (``mode=immediate`` is a crash)."""
    bindir = rt.supervisor._pg_bin()
    subprocess.run([str(bindir / "pg_ctl"), "-D", str(data), "-m", mode, "-w", "stop"], capture_output=True, timeout=120, **rt.supervisor._as_user())


class Streaming:
    """Keeps pg_receivewal running for every postgres source and ships its WAL every couple of seconds (the scheduler leader runs it).

    The sources are looked at again every ``RECONCILE_S``: a system whose stack is deployed (or whose credential is stored)
    later starts streaming without a restart, one whose hosts are gone stops; a source that cannot start does not hold
    the others back.
    """

    RECONCILE_S = 30.0

    def __init__(self, rt: Context, *, ship_every_s: float = SHIP_EVERY_S) -> None:
        import threading

        self.rt, self.ship_every_s = rt, ship_every_s
        self.streamers: dict[str, WalStreamer] = {}
        self.errors: dict[str, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="govctl-wal-shipping", daemon=True)
        self.last_error: str | None = None
        self.last_ship_at: float | None = None
        self.reconcile()

    def reconcile(self) -> None:
        """Start streamers for postgres sources that should stream and stop those that should not any more."""
        import logging

        from dr.sources import deployed, sources

        log = logging.getLogger("govctl.dr")
        try:
            wanted = {n: s for n, s in sources(self.rt).items() if s.type == "postgres" and deployed(self.rt, s)}
        except Exception as exc:  # noqa: BLE001 - a broken registry must not stop what already streams
            log.warning("WAL streaming: cannot read the sources: %s", getattr(exc, "message", exc))
            return
        for name in [n for n in self.streamers if n not in wanted]:
            self.streamers.pop(name).stop()
        for name, src in wanted.items():
            if name in self.streamers:
                continue
            try:
                self.streamers[name] = WalStreamer(self.rt, name, target=target_for(self.rt, name, src))
                self.errors.pop(name, None)
            except Exception as exc:  # noqa: BLE001 - tried again at the next reconcile; dr status shows the lag
                msg = str(getattr(exc, "message", exc))
                if self.errors.get(name) != msg:
                    log.warning("WAL streaming for %s cannot start: %s", name, msg)
                self.errors[name] = msg

    def start(self) -> Streaming:
        """Start the loop."""
        self._thread.start()
        return self

    def _loop(self) -> None:
        import logging

        log = logging.getLogger("govctl.dr")
        last_reconcile = time.monotonic()
        while not self._stop.is_set():
            if time.monotonic() - last_reconcile >= self.RECONCILE_S:
                self.reconcile()
                last_reconcile = time.monotonic()
            for name, w in list(self.streamers.items()):
                try:
                    if not w.alive():
                        w.start()
                    w.ship()
                    self.last_ship_at = time.monotonic()
                    self.last_error = None
                except Exception as exc:  # noqa: BLE001 - retried next round; the RPO metric shows the lag
                    self.last_error = f"{name}: {getattr(exc, 'message', exc)}"
                    log.warning("WAL shipping for %s: %s", name, self.last_error)
            self._stop.wait(self.ship_every_s)

    def stop(self) -> None:
        """Stop shipping and pg_receivewal."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)
        for w in list(self.streamers.values()):
            w.stop()
