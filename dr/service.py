"""DR for the control plane: the repositories, the configured sources, retention, copies and RPO status."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from control_plane import metrics
from dr.access import open_repo, passphrase, repo_path  # noqa: F401 - the repository's entry points, re-exported
from dr.sources import deployed, source, sources  # noqa: F401 - re-exported
from dr.repo import RepoError, Repository

if TYPE_CHECKING:
    from control_plane.context import Context


def source_path(rt: Context, src: Any) -> Path:
    """A files source's directory (created if it is our own data directory that nothing has written yet)."""
    path = rt.settings.path(src.path)
    if not path.exists() and rt.settings.var in path.parents:
        path.mkdir(parents=True)
    return path


_RUNNING: dict[str, threading.Lock] = {}
_RUNNING_GUARD = threading.Lock()


def backup_source(rt: Context, name: str, *, progress: Any = None) -> dict[str, Any]:
    """Back up one configured source now; a backup of the same source already running here is skipped with a note, not failed."""
    with _RUNNING_GUARD:
        running = _RUNNING.setdefault(name, threading.Lock())
    if not running.acquire(blocking=False):
        return {"source": name, "skipped": f"a backup of {name} is already running in this process"}
    try:
        return _backup_source(rt, name, progress=progress)
    finally:
        running.release()


def _backup_source(rt: Context, name: str, *, progress: Any = None) -> dict[str, Any]:
    src = source(rt, name)
    repo = open_repo(rt)
    t0 = time.monotonic()
    kind = "base" if src.type == "postgres" else "periodic"
    try:
        if src.type == "files" and src.host is not None:
            from dr.remote import backup_remote

            sid, stats = backup_remote(rt, repo, name, src, progress=progress)
        elif src.type == "files":
            from dr.files import backup

            sid, st = backup(repo, source_path(rt, src), name=name, progress=progress)
            stats = st.as_dict()
        elif src.type == "control-plane":
            from dr.state import backup_state

            sid, stats = backup_state(rt, repo, name)
        else:
            from dr.pg import base_backup, target_for

            sid, stats = base_backup(rt, repo, name, target_for(rt, name, src))
    except Exception:
        metrics.BACKUP_RUNS.labels(source=name, kind=kind, outcome="failed").inc()
        raise
    dt = time.monotonic() - t0
    metrics.BACKUP_RUNS.labels(source=name, kind=kind, outcome="succeeded").inc()
    metrics.BACKUP_SECONDS.labels(source=name, kind=kind).observe(dt)
    metrics.BACKUP_BYTES.labels(source=name, kind=kind, what="read").inc(stats.get("bytes", 0))
    metrics.BACKUP_BYTES.labels(source=name, kind=kind, what="stored").inc(stats.get("stored_bytes", 0))
    copied = copy_to_all(rt, repo, [sid])
    return {"source": name, "snapshot": sid, "seconds": round(dt, 3), "stats": stats, "copies": copied}


def copy_to_all(rt: Context, repo: Repository, sids: list[str]) -> list[dict[str, Any]]:
    """Copy snapshots to every configured further repository (多副本)."""
    from dr.copy import copy_snapshots

    out = []
    from dr.copy import init_copy

    for dest in rt.settings.dr.copies:
        path = rt.settings.path(dest)
        target = open_repo(rt, path, create=False) if (path / "config").exists() else init_copy(repo, path, passphrase(rt), iterations=rt.settings.dr.kdf_iterations)
        res = copy_snapshots(repo, target, sids, bandwidth_mib_s=rt.settings.dr.copy_bandwidth_mib_s)
        out.append({"repository": str(path), **res})
    for bucket in rt.settings.dr.copy_buckets:  # the same object store, another bucket (the backup pool's, in production)
        from dr.access import s3_backend

        backend = s3_backend(rt, bucket)
        path = repo_path(rt).parent / f"copy-{bucket}"  # this host's bookkeeping for that copy
        target = (open_repo(rt, path, create=False, backend=backend) if backend.exists("config")
                  else init_copy(repo, path, passphrase(rt), iterations=rt.settings.dr.kdf_iterations, backend=backend))  # fmt: skip
        res = copy_snapshots(repo, target, sids, bandwidth_mib_s=rt.settings.dr.copy_bandwidth_mib_s)
        out.append({"repository": f"s3://{bucket}", **res})
    return out


def rpo_status(rt: Context, repo: Repository | None = None) -> list[dict[str, Any]]:
    """Per source: the newest restore point, its age against the RPO target (and the metrics that alert on it)."""
    repo = repo or open_repo(rt)
    newest: dict[str, datetime] = {}
    for s in repo.snapshots():
        t = datetime.fromisoformat(s.get("restore_point") or s["time"])
        if s["source"] not in newest or t > newest[s["source"]]:
            newest[s["source"]] = t
    now = datetime.now(timezone.utc)
    out = []
    for name, src in sources(rt).items():
        if not deployed(rt, src):  # its stack is not deployed: nothing to lose yet, nothing to alert on
            out.append({"source": name, "type": src.type, "newest": newest[name].isoformat() if name in newest else None, "age_s": None,
                        "rpo_s": src.rpo_s, "ok": True, "host": src.host, "note": f"host {src.host} is not deployed"})  # fmt: skip
            continue
        t = newest.get(name)
        age = (now - t).total_seconds() if t else None
        live = LIVE.lag_s(name) if LIVE is not None and t is not None else None
        if live is None and t is not None:
            live = heartbeat_lag(rt, name)  # streamed by the scheduler leader in another process
        if live is not None:  # streamed continuously: what is at risk is only what is not shipped yet
            age = live
        metrics.DR_RPO_TARGET.labels(source=name).set(src.rpo_s)
        metrics.DR_RPO.labels(source=name).set(age if age is not None else float("inf"))
        out.append({"source": name, "type": src.type, "newest": t.isoformat() if t else None, "age_s": round(age, 1) if age is not None else None,
                    "rpo_s": src.rpo_s, "ok": age is not None and age <= src.rpo_s, "host": src.host})  # fmt: skip
    return out


def due_sources(rt: Context, repo: Repository) -> list[str]:
    """Sources whose newest periodic snapshot is older than their interval."""
    last: dict[str, datetime] = {}
    for s in repo.snapshots():
        if "wal" in s.get("tags", []):
            continue
        t = datetime.fromisoformat(s["time"])
        last[s["source"]] = max(last.get(s["source"], t), t)
    now = datetime.now(timezone.utc)
    return [n for n, src in sources(rt).items() if (n not in last or (now - last[n]).total_seconds() >= src.every_s) and deployed(rt, src)]


LIVE: Live | None = None  # the running instance in this process (the scheduler leader's)
HEARTBEAT_STALE_S = 15.0


def heartbeat_lag(rt: Context, name: str) -> float | None:
    """A streamed source's lag as its streamer last reported it (plus the time since), or None if nothing streams it."""
    import json

    f = rt.settings.var / "dr" / "live" / f"{name}.json"
    try:
        hb = json.loads(f.read_text())
    except (OSError, ValueError):
        return None
    since = time.time() - float(hb["at"])
    return None if since > HEARTBEAT_STALE_S else float(hb["lag_s"]) + since


def write_heartbeats(rt: Context, live: Live) -> None:
    """Each streamed source's current lag, for ``dr status`` and dr.rpo in other processes."""
    import json

    d = rt.settings.var / "dr" / "live"
    d.mkdir(parents=True, exist_ok=True)
    names = [w.name for w in list(live.watchers)] + list(dict(live.wal.streamers))
    for n in names:
        lag = live.lag_s(n)
        if lag is not None:
            tmp = d / f".{n}.json.tmp"
            tmp.write_text(json.dumps({"at": time.time(), "lag_s": lag}))
            tmp.replace(d / f"{n}.json")


class Live:
    """What the scheduler leader keeps running for DR: WAL streaming of postgres sources and watchers of real-time file sources."""

    def __init__(self, rt: Context) -> None:
        import threading

        from dr.pg import Streaming

        self.rt = rt
        self.wal = Streaming(rt)
        self.watchers: list[Any] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()

    def lag_s(self, name: str) -> float | None:
        """For a source streamed here: seconds its oldest unshipped change has waited (0 if none); None if it is not streamed."""
        for w in list(self.watchers):
            if w.name == name and w._thread.is_alive():
                first = w.journal.first_at
                return 0.0 if first is None else time.monotonic() - first
        st = self.wal.streamers.get(name)
        if st is not None and st.alive() and self.wal.last_ship_at is not None:
            return 0.0 if not st.pending() else time.monotonic() - self.wal.last_ship_at
        return None

    def start(self) -> Live:
        """Start everything configured (a source that cannot start is logged and tried again at the next reconcile)."""
        import threading

        global LIVE
        self.wal.start()
        self.reconcile()
        LIVE = self

        def beat() -> None:
            n = 0
            while not self._stop.wait(2.0):
                n += 1
                try:
                    write_heartbeats(self.rt, self)
                except OSError:
                    pass
                if n % 15 == 0:  # every 30 s: systems deployed, retired or given a credential since
                    self.reconcile()

        threading.Thread(target=beat, name="govctl-dr-heartbeat", daemon=True).start()
        return self

    def reconcile(self) -> None:
        """Real-time watchers for the files sources that want one (a remote one only while its host is deployed); stop the others."""
        import logging

        from dr.realtime import Watcher

        log = logging.getLogger("govctl.dr")
        with self._lock:
            try:
                wanted = {n: s for n, s in sources(self.rt).items() if s.type == "files" and s.realtime and deployed(self.rt, s)}
            except Exception as exc:  # noqa: BLE001 - a broken registry must not stop what already runs
                log.warning("real-time watchers: cannot read the sources: %s", getattr(exc, "message", exc))
                return
            for w in [w for w in self.watchers if w.name not in wanted]:
                self.watchers.remove(w)
                w.stop()
            running = {w.name for w in self.watchers}
            for name, src in wanted.items():
                if name in running:
                    continue

                def shipped(sid: str, changed: set[str], first: float | None, name: str = name) -> None:
                    metrics.BACKUP_RUNS.labels(source=name, kind="realtime", outcome="succeeded").inc()
                    if first is not None:
                        metrics.DR_RPO.labels(source=name).set(max(0.0, time.monotonic() - first))

                try:
                    if src.host is not None:
                        from dr.remote import RemoteWatcher

                        self.watchers.append(RemoteWatcher(self.rt, open_repo(self.rt), name, src, on_ship=shipped).start())
                    else:
                        self.watchers.append(Watcher(open_repo(self.rt), source_path(self.rt, src), name, on_ship=shipped).start())
                except Exception as exc:  # noqa: BLE001
                    log.warning("real-time watcher for %s did not start: %s", name, getattr(exc, "message", exc))

    def stop(self) -> None:
        """Stop watchers (shipping what is left) and WAL streaming."""
        global LIVE
        LIVE = None
        self._stop.set()
        with self._lock:
            for w in self.watchers:
                w.stop()
        self.wal.stop()
