"""File-tree snapshots and restores.

Backup walks the tree; a file whose size, mtime, ctime and inode equal the parent snapshot's is
not read again (its chunk list is reused). Other files are cut with FastCDC; a file's chunks go
to a pool of threads in batches of up to sixteen: hashed together (SM3-HMAC, sixteen AVX-512
lanes in our native extension), then each new one compressed (zstd) and encrypted (SM4-GCM);
all of it releases the GIL, so both cores work. Then packed. The snapshot is written last.

Restore recreates contents, modes, times and symlinks; every chunk's plaintext is checked
against its SM3-HMAC id as it is written, and every file's chunk list against its SM3.
"""

from __future__ import annotations

import json
import os
import socket
import stat
from collections.abc import Callable, Iterable
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pyfastcdc.cy import FastCDC

from control_plane.crypto import IntegrityError, sm3_hex
from dr.repo import Packer, RepoError, Repository

Progress = Callable[[int, int], None]  # (bytes done, files done)


@dataclass
class Stats:
    """What a backup did."""

    files: int = 0
    dirs: int = 0
    bytes: int = 0
    skipped_unchanged: int = 0
    new_blobs: int = 0
    new_bytes: int = 0
    stored_bytes: int = 0
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """Plain data."""
        return dict(self.__dict__)


PROGRESS_EVERY = 1 << 20  # bytes of a file between progress reports
BATCH_CHUNKS = 16  # a file's chunks are hashed sixteen at a time (one per AVX-512 lane)…
BATCH_BYTES = 24 << 20  # …or fewer, to bound the memory a batch holds


class _Backup:
    def __init__(self, repo: Repository, parent: dict[str, Any] | None, workers: int, progress: Progress | None) -> None:
        self.repo = repo
        self.packer = Packer(repo)
        self.stats = Stats()
        self.pool = ThreadPoolExecutor(max_workers=workers)
        self.workers = workers
        self.inflight: deque[Any] = deque()
        self.progress = progress
        cfg = repo.config["chunker"]
        self.cdc = FastCDC(avg_size=cfg["avg"], min_size=cfg["min"], max_size=cfg["max"])
        self.parent_nodes: dict[str, dict[str, Any]] = {}
        if parent is not None:
            for path, node in repo.walk(parent["tree"]):
                self.parent_nodes[path] = node

    def _seal(self, data: bytes) -> tuple[str, bytes | None, int]:
        bid = self.repo.keys.blob_id(data)
        if self.packer.known(bid):
            return bid, None, len(data)
        return bid, self.repo.seal_blob(bid, data), len(data)

    def _seal_many(self, chunks: list[bytes]) -> list[tuple[str, bytes | None, int]]:
        """A batch of one file's chunks: their ids in one multi-lane pass, then each new one compressed and encrypted."""
        out: list[tuple[str, bytes | None, int]] = []
        for bid, data in zip(self.repo.keys.blob_ids(chunks), chunks):
            out.append((bid, None if self.packer.known(bid) else self.repo.seal_blob(bid, data), len(data)))
        return out

    def _store(self, typ: str, data: bytes) -> str:
        bid, sealed, raw = self._seal(data)
        if sealed is not None:
            self.packer.add(bid, typ, sealed, raw)
            self.stats.new_bytes += raw
        return bid

    def file(self, path: Path, rel: str, st: os.stat_result) -> dict[str, Any]:
        node = {"name": path.name, "type": "file", "mode": stat.S_IMODE(st.st_mode), "uid": st.st_uid, "gid": st.st_gid,
                "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns, "inode": st.st_ino, "size": st.st_size}  # fmt: skip
        old = self.parent_nodes.get(rel)
        if old and old["type"] == "file" and all(old.get(k) == node[k] for k in ("size", "mtime_ns", "ctime_ns", "inode")):
            # unchanged by its metadata: reuse the chunk list, if every chunk is still there
            if all(self.packer.known(b) for b in old["content"]):
                self.stats.skipped_unchanged += 1
                self.stats.bytes += st.st_size
                return {**node, "content": old["content"], "sha": old["sha"]}
        ids: list[str] = []
        with open(path, "rb") as f:
            data = f.read() if st.st_size <= 64 * 1024 * 1024 else None
        if data is None:  # big files: chunk from the file (mmap) without holding it all
            chunks: Iterable[Any] = self.cdc.cut_file(str(path))
        else:
            chunks = self.cdc.cut_buf(data) if data else []
        partial, reported = 0, 0
        batch: list[bytes] = []
        batch_bytes = 0
        for c in chunks:  # hashing, compression and encryption run on the pool, a batch at a time, while the next chunks are cut
            batch.append(bytes(c.data))
            batch_bytes += len(c.data)
            partial += len(c.data)
            if len(batch) >= BATCH_CHUNKS or batch_bytes >= BATCH_BYTES:
                self.inflight.append(self.pool.submit(self._seal_many, batch))
                batch, batch_bytes = [], 0
                if len(self.inflight) > self.workers:
                    ids.extend(self._collect_one())
            if self.progress and partial - reported >= PROGRESS_EVERY:  # big files report as they go, not only when done
                reported = partial
                self.progress(self.stats.bytes + partial, self.stats.files)
        if batch:
            self.inflight.append(self.pool.submit(self._seal_many, batch))
        while self.inflight:
            ids.extend(self._collect_one())
        self.stats.bytes += st.st_size
        if self.progress:
            self.progress(self.stats.bytes, self.stats.files)
        # every chunk is authenticated by its id on restore; the file's digest binds the list of them
        return {**node, "content": ids, "sha": sm3_hex("".join(ids).encode())}

    def _collect_one(self) -> list[str]:
        ids = []
        for bid, sealed, raw in self.inflight.popleft().result():
            if sealed is not None and not self.packer.known(bid):
                self.packer.add(bid, "data", sealed, raw)
                self.stats.new_bytes += raw
            ids.append(bid)
        return ids

    def tree(self, d: Path, rel: str) -> str:
        nodes = []
        try:
            entries = sorted(os.scandir(d), key=lambda e: e.name)
        except OSError as exc:
            self.stats.errors.append(f"{d}: {exc.strerror}")
            entries = []
        for e in entries:
            p = Path(e.path)
            r = f"{rel}/{e.name}" if rel else e.name
            try:
                st = e.stat(follow_symlinks=False)
                if stat.S_ISLNK(st.st_mode):
                    nodes.append({"name": e.name, "type": "symlink", "target": os.readlink(p), "mode": stat.S_IMODE(st.st_mode),
                                  "uid": st.st_uid, "gid": st.st_gid, "mtime_ns": st.st_mtime_ns})  # fmt: skip
                elif stat.S_ISDIR(st.st_mode):
                    sub = self.tree(p, r)
                    self.stats.dirs += 1
                    nodes.append({"name": e.name, "type": "dir", "subtree": sub, "mode": stat.S_IMODE(st.st_mode), "uid": st.st_uid,
                                  "gid": st.st_gid, "mtime_ns": st.st_mtime_ns})  # fmt: skip
                elif stat.S_ISREG(st.st_mode):
                    nodes.append(self.file(p, r, st))
                    self.stats.files += 1
            except OSError as exc:  # a file that vanished or cannot be read: reported, the rest goes on
                self.stats.errors.append(f"{p}: {exc.strerror or exc}")
        return self._store("tree", json.dumps({"nodes": nodes}, sort_keys=True, separators=(",", ":")).encode())


def backup(repo: Repository, source: Path, *, name: str, parent: str | None | bool = True, tags: list[str] | None = None,
           workers: int | None = None, progress: Progress | None = None, restore_point: str | None = None,
           extra: dict[str, Any] | None = None, lock_wait_s: float = 0) -> tuple[str, Stats]:  # fmt: skip
    """Snapshot ``source``; ``parent=True`` uses the newest snapshot of the same source (and tags) for unchanged-file skipping.

    ``restore_point`` is the moment the data represents (default: the snapshot's time).
    """
    source = Path(source).resolve()
    if not source.is_dir():
        raise RepoError(f"backup source {source} is not a directory", hint="check dr.sources in govctl.yaml")
    with repo.lock(exclusive=True, command=f"backup {name}", wait_s=lock_wait_s):
        repo.recover_unindexed()
        par = None
        if parent is True:
            mine = [s for s in repo.snapshots() if s.get("source") == name and s.get("tags", []) == (tags or [])]
            par = mine[-1] if mine else None
        elif isinstance(parent, str):
            par = repo.load_snapshot(parent)
        b = _Backup(repo, par, workers or max(2, os.cpu_count() or 2), progress)
        try:
            root = b.tree(source, "")
            b.packer.close()  # every blob durable and indexed before the snapshot exists
        finally:
            b.pool.shutdown(wait=True)
        b.stats.new_blobs, b.stats.stored_bytes = b.packer.new_blobs, b.packer.stored_bytes
        now = datetime.now(timezone.utc).isoformat()
        manifest = {"time": now, "restore_point": restore_point or now, "host": socket.gethostname(), "source": name, "paths": [str(source)],
                    "tree": root, "parent": par["id"] if par else None, "stats": b.stats.as_dict(), "tags": tags or [], **(extra or {})}  # fmt: skip
        sid = repo.write_snapshot(manifest)
    return sid, b.stats


def restore(repo: Repository, snapshot: str, target: Path, *, include: list[str] | None = None, progress: Progress | None = None) -> dict[str, Any]:
    """Restore a snapshot (or the paths under ``include``) into ``target``; every file's SM3 is checked.

    ``target`` must be new or an empty directory (never a symlink): everything beneath it is then
    created by the restore itself, so no planted link can send a write or a chmod outside it.
    """
    target = Path(target)
    _fresh_target(target)
    root = os.path.realpath(target)
    with repo.lock(exclusive=False, command="restore", wait_s=30):
        snap = repo.load_snapshot(snapshot)
        files = nbytes = 0
        dirs: list[tuple[Path, dict[str, Any]]] = []

        def wanted(path: str) -> bool:
            return not include or any(path == i or path.startswith(i.rstrip("/") + "/") or i.startswith(path + "/") for i in include)

        # chunks are read, decrypted and checked on a pool, in batches, ahead of the writer, across file boundaries
        pool = ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2))
        ahead: deque[tuple[Any, Any, int]] = deque()  # (file entry, future of a batch of plaintexts, this chunk's place in it)
        window = 3 * BATCH_CHUNKS * max(2, os.cpu_count() or 2)
        current: dict[str, Any] = {}
        batch: list[tuple[Any, str]] = []  # chunks (of one or more files) read, decrypted and checked together

        def submit() -> None:
            fut = pool.submit(repo.read_blobs, [bid for _, bid in batch])
            ahead.extend((entry, fut, i) for i, (entry, _) in enumerate(batch))
            batch.clear()

        def finish(entry: dict[str, Any]) -> None:
            nonlocal files, nbytes
            entry["fh"].close()
            tmp, dest, node = entry["tmp"], entry["dest"], entry["node"]
            if sm3_hex("".join(node["content"]).encode()) != node["sha"] or tmp.stat().st_size != node["size"]:
                tmp.unlink()
                raise IntegrityError(f"restored {entry['path']}: its chunk list does not match its recorded SM3: the repository is damaged",
                                     hint="run govctl dr check --read-data")  # fmt: skip
            os.replace(tmp, dest)
            _meta(dest, node)
            files += 1
            nbytes += node["size"]
            if progress:
                progress(nbytes, files)

        def write_one() -> None:
            entry, fut, i = ahead.popleft()
            if current.get("entry") is not entry:
                if current.get("entry") is not None:
                    finish(current["entry"])
                entry["fh"] = os.fdopen(os.open(entry["tmp"], os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600), "wb")  # closed in finish()
                current["entry"] = entry
            entry["fh"].write(fut.result()[i])  # each chunk's plaintext is checked against its SM3-HMAC id
            entry["left"] -= 1
            if entry["left"] == 0:
                finish(entry)
                current["entry"] = None

        try:
            for path, node in repo.walk(snap["tree"]):
                if not wanted(path):
                    continue
                dest = _inside(target, root, path)
                if node["type"] == "dir":
                    dest.mkdir(parents=True, exist_ok=True)
                    dirs.append((dest, node))
                elif node["type"] == "symlink":
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    if dest.is_symlink() or dest.exists():
                        dest.unlink()
                    os.symlink(node["target"], dest)
                    os.utime(dest, ns=(node["mtime_ns"], node["mtime_ns"]), follow_symlinks=False)
                else:
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    entry = {"path": path, "dest": dest, "tmp": dest.with_name(f".{dest.name}.govctl-restore"), "node": node, "left": len(node["content"])}
                    if not node["content"]:
                        entry["tmp"].write_bytes(b"")
                        entry["fh"] = open(entry["tmp"], "ab")  # noqa: SIM115
                        finish(entry)
                        continue
                    for bid in node["content"]:
                        batch.append((entry, bid))
                        if len(batch) >= BATCH_CHUNKS:
                            submit()
                            while len(ahead) >= window:
                                write_one()
            if batch:
                submit()
            while ahead:
                write_one()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        for dest, node in reversed(dirs):  # directories last, deepest first, so their times stick
            _meta(dest, node)
    return {"snapshot": snap["id"], "files": files, "bytes": nbytes, "target": str(target)}


def _fresh_target(target: Path) -> None:
    """Create ``target`` (0700 until the restore sets its modes), or accept an empty directory; refuse anything else."""
    if target.is_symlink():
        raise RepoError(f"restore target {target} is a symbolic link", hint="restore into a new directory")
    if target.exists():
        if not target.is_dir() or any(target.iterdir()):
            raise RepoError(f"restore target {target} is not empty", hint="restore into a new or empty directory, then move what you need")
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    os.mkdir(target, 0o700)


def _inside(target: Path, root: str, rel: str) -> Path:
    """``target/rel`` after checking that ``rel`` is relative, has no '..', and its parent resolves inside the target."""
    parts = rel.split("/")
    if rel.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise IntegrityError(f"snapshot path {rel!r} leaves the restore target", hint="the snapshot is damaged or forged; run govctl dr check")
    dest = target.joinpath(*parts)
    parent = os.path.realpath(dest.parent)
    if parent != root and not parent.startswith(root + os.sep):
        raise IntegrityError(f"snapshot path {rel!r} would be written through a link outside the restore target")
    return dest


def _meta(dest: Path, node: dict[str, Any]) -> None:
    if os.geteuid() == 0:
        try:
            os.chown(dest, node["uid"], node["gid"], follow_symlinks=False)
        except OSError:
            pass
    if dest.is_symlink():
        raise IntegrityError(f"{dest} became a symbolic link during the restore", hint="something else writes into the restore target")
    os.chmod(dest, node["mode"])
    os.utime(dest, ns=(node["mtime_ns"], node["mtime_ns"]), follow_symlinks=False)
