"""Files on pool hosts, read over SSH with the bastion's key for that host into a mirror on this host, then backed up like any tree.

* Periodic: an SFTP walk compares every entry with the mirror (type, size, mtime, mode, owner)
  and fetches only what changed; what is gone on the host goes from the mirror. The mirror is then
  backed up with its previous snapshot as parent, so unchanged files are not even read again.
* Real time: a short program (the inotify journal, Python's standard library only) is sent over
  the SSH connection to the host's ``python3`` and prints each changed path as it happens; the
  paths are fetched into the mirror and the real-time watcher ships them every second. Nothing is
  installed on the host. When the journal's connection breaks or the host's event queue
  overflows, the mirror is walked again in full and the next shipment is a full one, so a lost
  event delays a change but never loses it.
* Everything the host sends is untrusted: a name is one path component (no ``/``, NUL, ``.`` or
  ``..``); a path from the journal is normalised and must lie under the source; a write into the
  mirror never follows a symbolic link (every directory on the way is checked, files are written
  to a new name and renamed); set-user and set-group bits are not reproduced.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import stat
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncssh

from dr.realtime import Watcher
from dr.repo import RepoError, Repository

if TYPE_CHECKING:
    from control_plane.context import Context

log = logging.getLogger("govctl.dr")

CHUNK = 256 * 1024
MODE_BITS = 0o1777  # no set-user or set-group bits from a host into the mirror


def mirror_dir(rt: Context, name: str) -> Path:
    """Where a remote source's mirror lives on this host (0700)."""
    d = rt.settings.var / "dr" / "mirror" / name
    d.mkdir(parents=True, exist_ok=True)
    os.chmod(d.parent, 0o700)
    return d


def _name_ok(name: bytes) -> bool:
    return bool(name) and name not in (b".", b"..") and b"/" not in name and b"\0" not in name


def clean_rel(rel: bytes) -> bytes | None:
    """A relative path from the host as a normalised path under the source, or None when it is not one."""
    if rel in (b"", b"."):
        return b""
    parts = rel.split(b"/")
    if rel.startswith(b"/") or not all(_name_ok(p) for p in parts):
        return None
    return rel


async def connect(rt: Context, host: str, account: str) -> asyncssh.SSHClientConnection:
    """An SSH connection to a pool host as ``account`` with the bastion's key for that host, its host key pinned to the deployed one."""
    from control_plane.bastion import store
    from control_plane.deploy import hostkeys

    a = store.asset(rt, host)
    if not a.host_key:
        raise RepoError(f"host {host} has no recorded SSH host key", hint="redeploy its stack (govctl deploy up) so the key is recorded")
    known = asyncssh.import_known_hosts(f"{a.address} {a.host_key}\n")
    key = hostkeys.private_key(rt, a.name)
    return await asyncssh.connect(a.address, username=account, client_keys=[key], known_hosts=known, connect_timeout=10, agent_path=None,
                                  preferred_auth="publickey")  # fmt: skip


class Mirror:
    """The local copy of a tree on a pool host, brought up to date over one SFTP session."""

    def __init__(self, local: Path, remote_root: str, sftp: asyncssh.SFTPClient) -> None:
        self.local, self.root, self.sftp = local, os.fsencode(remote_root.rstrip("/")), sftp
        self.fetched = self.fetched_bytes = self.removed = 0

    # -- the local side, never following a link --------------------------------------------------
    def _dir(self, rel: bytes, *, create: bool, replace: bool = False) -> str | None:
        """The mirror's directory for ``rel`` (missing ones created if asked), or None when something on the way is not a real
        directory. ``replace``: the last component may be replaced (the host changed a file into a directory); never one before it."""
        cur = os.fsencode(self.local)
        parts = [p for p in rel.split(b"/") if p]
        for i, part in enumerate(parts):
            cur = os.path.join(cur, part)
            try:
                st = os.lstat(cur)
            except FileNotFoundError:
                if not create:
                    return None
                os.mkdir(cur, 0o700)
                continue
            if not stat.S_ISDIR(st.st_mode):
                if not (create and replace and i == len(parts) - 1):
                    return None
                _remove(cur)
                os.mkdir(cur, 0o700)
        return os.fsdecode(cur)

    def _place(self, rel: bytes) -> tuple[str, bytes] | None:
        parent, _, leaf = rel.rpartition(b"/")
        d = self._dir(parent, create=True)
        return (d, leaf) if d is not None else None

    # -- the remote side ---------------------------------------------------------------------------
    def _remote(self, rel: bytes) -> bytes:
        return self.root + (b"/" + rel if rel else b"")

    async def sync(self, rel: bytes = b"") -> None:
        """Make the mirror's ``rel`` equal the host's: fetch what differs, remove what is gone."""
        here = self._dir(rel, create=True, replace=True)
        if here is None:
            log.warning("mirror: %r lies under something that is not a directory here (ignored)", rel)
            return
        remote: dict[bytes, asyncssh.SFTPAttrs] = {}
        for entry in await self.sftp.readdir(self._remote(rel)):
            name = entry.filename if isinstance(entry.filename, bytes) else os.fsencode(entry.filename)
            if name in (b".", b".."):
                continue
            if not _name_ok(name):
                raise RepoError(f"host sent an entry name that is not a file name: {name!r}")
            remote[name] = entry.attrs
        local = {os.fsencode(e.name): e for e in os.scandir(here)}
        for name in set(local) - set(remote):
            _remove(os.path.join(os.fsencode(here), name))
            self.removed += 1
        for name, attrs in sorted(remote.items()):
            child = rel + b"/" + name if rel else name
            await self._one(child, attrs, local.get(name))

    async def _one(self, rel: bytes, attrs: asyncssh.SFTPAttrs, have: os.DirEntry[str] | None, *, force: bool = False) -> None:
        ftype = attrs.type
        if ftype == asyncssh.FILEXFER_TYPE_DIRECTORY:
            await self.sync(rel)
            self._meta(rel, attrs)
        elif ftype == asyncssh.FILEXFER_TYPE_SYMLINK:
            target = await self.sftp.readlink(self._remote(rel))
            place = self._place(rel)
            if place is not None:
                path = os.path.join(os.fsencode(place[0]), place[1])
                tmp = path + b".govctl-tmp"
                _remove(tmp)
                os.symlink(os.fsencode(target) if isinstance(target, str) else target, tmp)
                os.replace(tmp, path)
        elif ftype == asyncssh.FILEXFER_TYPE_REGULAR:
            if not force and have is not None and have.is_file(follow_symlinks=False):
                st = have.stat(follow_symlinks=False)
                if st.st_size == attrs.size and int(st.st_mtime) == int(attrs.mtime or 0) and stat.S_IMODE(st.st_mode) == (attrs.permissions or 0) & MODE_BITS:
                    return
            await self._fetch(rel, attrs)
        # devices, sockets and pipes are not data: skipped, as in a local backup

    async def _fetch(self, rel: bytes, attrs: asyncssh.SFTPAttrs) -> None:
        place = self._place(rel)
        if place is None:
            return
        path = os.path.join(os.fsencode(place[0]), place[1])
        tmp = path + b".govctl-tmp"
        _remove(tmp)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            async with self.sftp.open(self._remote(rel), "rb") as src:
                with os.fdopen(fd, "wb") as out:
                    while True:
                        block = await src.read(CHUNK)
                        if not block:
                            break
                        out.write(block)
                        self.fetched_bytes += len(block)
                    out.flush()  # the buffered tail first: written after the utime, it would set the mtime to now
                    _set_meta(out.fileno(), attrs)
        except BaseException:
            _remove(tmp)
            raise
        os.replace(tmp, path)
        self.fetched += 1

    def _meta(self, rel: bytes, attrs: asyncssh.SFTPAttrs) -> None:
        d = self._dir(rel, create=False)
        if d is None:
            return
        fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        try:
            _set_meta(fd, attrs)
        finally:
            os.close(fd)

    async def paths(self, rels: set[bytes]) -> bool:
        """Bring the paths the journal named up to date; True if a whole directory was walked (new or moved in)."""
        walked = False
        for rel in sorted(rels):
            clean = clean_rel(rel)
            if clean is None:
                log.warning("journal named a path outside the source: %r (ignored)", rel)
                continue
            try:
                attrs = await self.sftp.lstat(self._remote(clean))
            except asyncssh.SFTPNoSuchFile:
                parent, _, leaf = clean.rpartition(b"/")
                d = self._dir(parent, create=False)
                if d is not None and leaf:
                    _remove(os.path.join(os.fsencode(d), leaf))
                    self.removed += 1
                continue
            if attrs.type == asyncssh.FILEXFER_TYPE_DIRECTORY:
                if self._dir(clean, create=False) is None:
                    await self.sync(clean)
                    walked = True
                self._meta(clean, attrs)
            else:
                await self._one(clean, attrs, None, force=True)
        return walked


def _set_meta(fd: int, attrs: asyncssh.SFTPAttrs) -> None:
    if attrs.uid is not None and attrs.gid is not None and os.geteuid() == 0:
        os.fchown(fd, attrs.uid, attrs.gid)
    if attrs.permissions is not None:
        os.fchmod(fd, attrs.permissions & MODE_BITS)
    if attrs.mtime is not None:
        ns = getattr(attrs, "mtime_ns", None)
        m = int(ns) if ns else int(attrs.mtime) * 1_000_000_000
        os.utime(fd, ns=(m, m))


def _remove(path: bytes | str) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(path)
    else:
        os.unlink(path)


def _run(coro: Any) -> Any:
    """Run a coroutine to completion on a fresh event loop in its own thread (callers may be inside another loop)."""
    box: dict[str, Any] = {}

    def main() -> None:
        try:
            box["value"] = asyncio.run(coro)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            box["error"] = exc

    th = threading.Thread(target=main, name="govctl-dr-ssh")
    th.start()
    th.join()
    if "error" in box:
        raise box["error"]
    return box.get("value")


def sync_mirror(rt: Context, name: str, src: Any) -> dict[str, int]:
    """One full SFTP pass bringing the mirror of a remote source up to date."""

    async def go() -> dict[str, int]:
        try:
            conn = await connect(rt, src.host, src.account)
        except (OSError, asyncssh.Error) as exc:
            raise RepoError(f"source {name}: cannot reach {src.account}@{src.host} over SSH: {exc}", hint="govctl services status; is the stack deployed?") from None
        async with conn:
            async with conn.start_sftp_client() as sftp:
                m = Mirror(mirror_dir(rt, name), str(src.path), sftp)
                try:
                    await m.sync()
                except asyncssh.SFTPNoSuchFile:
                    raise RepoError(f"source {name}: {src.path} does not exist on {src.host}", hint="check the system's data in the registry") from None
                return {"fetched": m.fetched, "fetched_bytes": m.fetched_bytes, "removed": m.removed}

    return _run(go())  # type: ignore[no-any-return]


def backup_remote(rt: Context, repo: Repository, name: str, src: Any, *, progress: Any = None) -> tuple[str, dict[str, Any]]:
    """A periodic backup of a tree on a pool host: sync the mirror, then snapshot it (tagged with the host and path it came from)."""
    from dr.files import backup

    synced = sync_mirror(rt, name, src)
    sid, st = backup(repo, mirror_dir(rt, name), name=name, progress=progress, extra={"remote": {"host": src.host, "path": str(src.path)}})
    return sid, {**st.as_dict(), "transfer": synced}


# -- the journal on the host -----------------------------------------------------------------------

JOURNAL = r'''
import ctypes, json, os, select, struct, sys
ROOT = %s
libc = ctypes.CDLL(None, use_errno=True)
fd = libc.inotify_init1(os.O_CLOEXEC | os.O_NONBLOCK)
if fd < 0:
    sys.exit("inotify_init1 failed: errno %%d" %% ctypes.get_errno())
EVENTS = 0x2 | 0x4 | 0x8 | 0x40 | 0x80 | 0x100 | 0x200 | 0x400 | 0x800
ONLYDIR, DONT_FOLLOW, OVERFLOW, IGNORED, ISDIR = 0x01000000, 0x02000000, 0x4000, 0x8000, 0x40000000
wd = {}
def watch(top):
    for d, _, _ in os.walk(top):
        w = libc.inotify_add_watch(fd, os.fsencode(d), EVENTS | ONLYDIR | DONT_FOLLOW)
        if w >= 0:
            wd[w] = d
watch(ROOT)
out = sys.stdout
out.write('"\\u0000ready"\n'); out.flush()
parent = os.getppid()
while os.getppid() == parent:
    if not select.select([fd], [], [], 1.0)[0]:
        continue
    try:
        buf = os.read(fd, 1 << 16)
    except BlockingIOError:
        continue
    i, batch = 0, set()
    while i < len(buf):
        w, mask, _, n = struct.unpack_from("iIII", buf, i)
        name = buf[i + 16:i + 16 + n].rstrip(b"\0")
        i += 16 + n
        if mask & OVERFLOW:
            batch.add("\u0000overflow")
            continue
        d = wd.get(w)
        if d is None:
            continue
        if mask & IGNORED:
            wd.pop(w, None)
            continue
        p = os.path.join(d, os.fsdecode(name)) if name else d
        if mask & ISDIR and mask & (0x100 | 0x80):
            watch(p)
        batch.add(os.path.relpath(p, ROOT))
    for p in sorted(batch):
        out.write(json.dumps(p) + "\n")
    out.flush()
'''


class RemoteWatcher(Watcher):
    """Real-time backup of a tree on a pool host: the host's inotify journal, streamed over SSH, fills a local mirror that is shipped every second."""

    def __init__(self, rt: Context, repo: Repository, name: str, src: Any, *, interval_s: float = 1.0, on_ship: Any = None) -> None:
        super().__init__(repo, mirror_dir(rt, name), name, interval_s=interval_s, on_ship=on_ship, observe=False)
        self.rt, self.src = rt, src
        self._ready = threading.Event()
        self._remote_stop = threading.Event()
        self._reader = threading.Thread(target=self._read_forever, name=f"govctl-remote-journal-{name}", daemon=True)
        self.reconnects = 0
        self.remote_error: str | None = None

    def start(self) -> RemoteWatcher:
        """The journal first, then a full sync and snapshot: nothing that changes in between is missed."""
        self._reader.start()
        if not self._ready.wait(60):
            self._remote_stop.set()
            raise RepoError(f"source {self.name}: the journal on {self.src.host} did not start: {self.remote_error or 'no answer in 60 s'}")
        super().start()
        return self

    def _read_forever(self) -> None:
        first = True
        while not self._remote_stop.is_set():
            try:
                asyncio.run(self._session(first))
            except Exception as exc:  # noqa: BLE001 - reconnect; the RPO metric shows the lag meanwhile
                self.remote_error = f"{type(exc).__name__}: {exc}"[:300]
                log.warning("journal of %s on %s: %s; reconnecting", self.name, self.src.host, self.remote_error)
            first = False
            if not self._remote_stop.wait(2.0):
                self.reconnects += 1

    async def _session(self, first: bool) -> None:
        async with await connect(self.rt, self.src.host, self.src.account) as conn:
            async with conn.start_sftp_client() as sftp:
                mirror = Mirror(self.source, str(self.src.path), sftp)
                proc = await conn.create_process("python3 -u -", encoding=None)
                proc.stdin.write((JOURNAL % json.dumps(str(self.src.path))).encode())
                proc.stdin.write_eof()
                line = await asyncio.wait_for(proc.stdout.readline(), 30)
                if json.loads(line or b'""') != "\u0000ready":
                    err = (await proc.stderr.read(2000)).decode(errors="replace")
                    raise RepoError(f"the journal on {self.src.host} did not start: {err.strip() or line!r}")
                await mirror.sync()  # the journal watches: now the mirror can be made whole
                if not first:
                    self._overflowed()  # events may have been missed while disconnected: the next shipment walks the mirror
                self._ready.set()
                try:
                    while not self._remote_stop.is_set():
                        try:
                            line = await asyncio.wait_for(proc.stdout.readline(), 1.0)
                        except asyncio.TimeoutError:
                            continue
                        if not line:
                            raise RepoError(f"the journal on {self.src.host} ended: {(await proc.stderr.read(2000)).decode(errors='replace').strip()}")
                        batch = {line}
                        while True:  # take what else is already there, then fetch once
                            try:
                                more = await asyncio.wait_for(proc.stdout.readline(), 0.05)
                            except asyncio.TimeoutError:
                                break
                            if not more:
                                break
                            batch.add(more)
                        await self._apply(mirror, batch)
                finally:
                    proc.close()

    async def _apply(self, mirror: Mirror, lines: set[bytes]) -> None:
        rels: set[bytes] = set()
        overflow = False
        for raw in lines:
            try:
                p = json.loads(raw)
            except ValueError:
                log.warning("journal of %s sent a line that is not JSON: %r", self.name, raw[:100])
                continue
            if not isinstance(p, str):
                continue
            if p == "\u0000overflow":
                overflow = True
                continue
            rels.add(os.fsencode(p))
        t = time.monotonic()
        with self.journal.lock:
            if self.journal.first_at is None:
                self.journal.first_at = t  # the lag (RPO) counts from when the host reported the change
        if overflow:
            await mirror.sync()
            self._overflowed()
            return
        walked = await mirror.paths(rels)
        with self.journal.lock:
            for r in rels:
                clean = clean_rel(r)
                if clean is not None:
                    self.journal.paths.add(os.fsdecode(clean))
            if walked:
                self.journal.overflow = True

    def _overflowed(self) -> None:
        with self.journal.lock:
            self.journal.overflow = True
            if self.journal.first_at is None:
                self.journal.first_at = time.monotonic()

    def _stop_remote(self) -> None:
        self._remote_stop.set()
        self._reader.join(timeout=15)

    def abandon(self) -> None:
        """Stop at once without shipping what is left."""
        self._stop_remote()
        super().abandon()

    def stop(self) -> None:
        """Stop the journal; ship what is in the mirror's journal."""
        self._stop_remote()
        super().stop()
