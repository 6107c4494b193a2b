"""Real-time file backup: inotify (through watchdog) keeps a journal of changed paths, and every
second that the journal is not empty a snapshot is made from the parent snapshot plus only the
changed paths — no tree walk. The parent's trees are kept in memory between shipments.

If the kernel's event queue overflowed, or the watcher was not running since the parent
snapshot, the next shipment falls back to a full (metadata-skipping) walk, so a lost event can
delay a change but never lose it.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from dr.files import Stats, _Backup, backup
from dr.repo import Repository


KEEP_REALTIME = 60  # the last minute or so of second-by-second shipments


class _Journal(FileSystemEventHandler):
    def __init__(self, root: Path) -> None:
        self.root = root
        self.paths: set[str] = set()
        self.lock = threading.Lock()
        self.overflow = False
        self.first_at: float | None = None

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed_no_write"):
            return
        with self.lock:
            for p in (event.src_path, getattr(event, "dest_path", "") or ""):
                if p:
                    rel = os.path.relpath(os.fsdecode(p), self.root)
                    if not rel.startswith(".."):
                        self.paths.add("" if rel == "." else rel)
            if self.first_at is None:
                self.first_at = time.monotonic()

    def take(self) -> tuple[set[str], bool, float | None]:
        with self.lock:
            out, ov, first = self.paths, self.overflow, self.first_at
            self.paths, self.overflow, self.first_at = set(), False, None
            return out, ov, first


class _NoObserver:
    def start(self) -> None: ...

    def stop(self) -> None: ...

    def join(self, timeout: float | None = None) -> None: ...


class Watcher:
    """Watches one source directory and ships its changes into the repository continuously."""

    def __init__(self, repo: Repository, source: Path, name: str, *, interval_s: float = 1.0, on_ship: Any = None, observe: bool = True) -> None:
        self.repo, self.source, self.name, self.interval_s = repo, Path(source).resolve(), name, interval_s
        self.journal = _Journal(self.source)
        self.observer: Any = Observer() if observe else _NoObserver()  # not observing: something else fills the journal
        if observe:
            self.observer.schedule(self.journal, str(self.source), recursive=True)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"govctl-watch-{name}", daemon=True)
        self.parent: dict[str, Any] | None = None
        self.trees: dict[str, dict[str, Any]] = {}  # relative dir → its tree (nodes by name), from the last snapshot
        self.on_ship = on_ship
        self.shipments = 0
        self.last_error: str | None = None
        self._recent: list[str] = []

    def start(self) -> Watcher:
        """Watch first, then take a full snapshot: nothing changed in between is missed."""
        self.observer.start()
        sid, _ = backup(self.repo, self.source, name=self.name, tags=["realtime"], lock_wait_s=30)
        self.journal.take()  # covered by the full snapshot (and re-shipped if they change again)
        self._load(sid)
        self._thread.start()
        return self

    def _load(self, sid: str) -> None:
        self.parent = self.repo.load_snapshot(sid)
        self.trees = {}
        stack = [("", self.parent["tree"])]
        while stack:
            rel, tid = stack.pop()
            nodes = {n["name"]: n for n in self.repo.tree(tid)["nodes"]}
            self.trees[rel] = nodes
            for n in nodes.values():
                if n["type"] == "dir":
                    stack.append((f"{rel}/{n['name']}" if rel else n["name"], n["subtree"]))

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.ship()
                self.last_error = None
            except Exception as exc:  # noqa: BLE001 - retried on the next tick; the RPO metric shows the lag
                self.last_error = f"{type(exc).__name__}: {getattr(exc, 'message', exc)}"

    def ship(self) -> str | None:
        """One shipment of the journal (if anything changed); returns the snapshot id."""
        changed, overflow, first = self.journal.take()
        if not changed and not overflow:
            return None
        t0 = time.time()
        if overflow:
            sid, _ = backup(self.repo, self.source, name=self.name, tags=["realtime"], lock_wait_s=30)
            self._load(sid)
        else:
            sid = self._incremental(changed, t0)
        self.shipments += 1
        self._recent.append(sid)
        if len(self._recent) > KEEP_REALTIME:  # long-term history is the periodic snapshots and the retention policy
            old, self._recent = self._recent[:-KEEP_REALTIME], self._recent[-KEEP_REALTIME:]
            self.repo.drop_snapshots(old, command=f"realtime {self.name}")
        if self.on_ship:
            self.on_ship(sid, changed, first)
        return sid

    def _incremental(self, changed: set[str], t0: float) -> str:
        """A snapshot from the parent's trees with only the changed paths re-read.

        The in-memory trees are updated as the snapshot is built, so the next shipment starts from
        them without reading the repository; only a directory walked whole (new, or moved in) makes
        the trees be reloaded from the snapshot, since its contents are not in memory.
        """
        assert self.parent is not None
        with self.repo.lock(exclusive=True, command=f"realtime {self.name}", wait_s=30):
            b = _Backup(self.repo, None, max(2, os.cpu_count() or 2), None)
            try:
                dirty: set[str] = set()
                walked: list[str] = []
                for rel in sorted(changed):
                    parent_rel, _, leaf = rel.rpartition("/")
                    if rel == "" or any(rel.startswith(w + "/") for w in walked):
                        continue  # the source itself, or inside a directory walked whole just now
                    full = self.source / rel
                    dirty.add(parent_rel)
                    try:
                        st = os.lstat(full)
                    except FileNotFoundError:
                        self.trees.get(parent_rel, {}).pop(leaf, None)
                        self._forget_dir(rel)
                        continue
                    if stat.S_ISDIR(st.st_mode) and rel in self.trees:
                        dirty.add(rel)  # a known directory whose entries changed: its own events say which
                        continue
                    if stat.S_ISDIR(st.st_mode):
                        sub = b.tree(full, rel)  # a new or renamed directory: walk just it
                        walked.append(rel)
                        self.trees.setdefault(parent_rel, {})[leaf] = {"name": leaf, "type": "dir", "subtree": sub, "mode": stat.S_IMODE(st.st_mode),
                                                                       "uid": st.st_uid, "gid": st.st_gid, "mtime_ns": st.st_mtime_ns}  # fmt: skip
                        self._forget_dir(rel)
                    elif stat.S_ISLNK(st.st_mode):
                        self.trees.setdefault(parent_rel, {})[leaf] = {"name": leaf, "type": "symlink", "target": os.readlink(full), "mode": stat.S_IMODE(st.st_mode),
                                                                       "uid": st.st_uid, "gid": st.st_gid, "mtime_ns": st.st_mtime_ns}  # fmt: skip
                    elif stat.S_ISREG(st.st_mode):
                        old = self.trees.get(parent_rel, {}).get(leaf)
                        if old and old["type"] == "file":
                            b.parent_nodes[rel] = old
                        self.trees.setdefault(parent_rel, {})[leaf] = b.file(full, rel, st)
                        b.stats.files += 1
                root = self._rebuild("", dirty, b)
                b.packer.close()
            finally:
                b.pool.shutdown(wait=True)
            stats: Stats = b.stats
            stats.new_blobs, stats.stored_bytes = b.packer.new_blobs, b.packer.stored_bytes
            now = datetime.now(timezone.utc).isoformat()
            manifest = {"time": now, "restore_point": datetime.fromtimestamp(t0, timezone.utc).isoformat(), "host": socket.gethostname(),
                        "source": self.name, "paths": [str(self.source)], "tree": root, "parent": self.parent["id"], "stats": stats.as_dict(),
                        "tags": ["realtime"], "changed_paths": len(changed)}  # fmt: skip
            sid = self.repo.write_snapshot(manifest)
        if walked:
            self._load(sid)
        else:
            self.parent = {**manifest, "id": sid}
        return sid

    def _forget_dir(self, rel: str) -> None:
        for k in [k for k in self.trees if k == rel or k.startswith(rel + "/")]:
            del self.trees[k]

    def _rebuild(self, rel: str, dirty: set[str], b: _Backup) -> str:
        """The tree id of ``rel`` (a directory with changes below it): unchanged subtrees keep their ids,
        changed ones are re-stored, and the in-memory trees take the new nodes."""
        nodes = self.trees.get(rel, {})
        out = []
        for name in sorted(nodes):
            n = nodes[name]
            child = f"{rel}/{name}" if rel else name
            if n["type"] == "dir" and child in self.trees and any(d == child or d.startswith(child + "/") for d in dirty):
                try:
                    st = os.lstat(self.source / child)
                    n = {**n, "mtime_ns": st.st_mtime_ns, "mode": stat.S_IMODE(st.st_mode)}
                except FileNotFoundError:
                    self._forget_dir(child)
                    continue
                n["subtree"] = self._rebuild(child, dirty, b)
            out.append(n)
        self.trees[rel] = {n["name"]: n for n in out}
        return b._store("tree", json.dumps({"nodes": out}, sort_keys=True, separators=(",", ":")).encode())

    def abandon(self) -> None:
        """Stop at once without shipping what is left (the source was lost: what was not shipped is gone)."""
        self.observer.stop()
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)

    def stop(self) -> None:
        """Stop watching; ships what is left in the journal."""
        self.observer.stop()
        self.observer.join(timeout=10)
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)
        self.ship()
