"""Where a repository's objects are stored.

Every object is addressed by a name like ``data/ab/<pack id>``, ``index/<id>``,
``snapshots/<id>``, ``config`` or ``keys/master.json``; objects are written once and never
modified, read whole or by byte range, listed by prefix and deleted (prune, forget). That is
exactly what S3-compatible object storage offers (PUT, ranged GET, LIST, DELETE), so a
``S3Backend`` can implement this protocol without the repository changing. The repository
lock and the local bookkeeping (``state/``) stay on the host that writes.

``LocalBackend`` stores objects as files under a directory (local, or mounted from the backup
pool): written to a temporary name, fsynced, renamed into place, the directory fsynced.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Protocol


class Backend(Protocol):
    """Object storage for one repository."""

    def read(self, name: str) -> bytes: ...
    def read_range(self, name: str, offset: int, length: int) -> bytes: ...
    def read_tail(self, name: str, length: int) -> bytes: ...
    def write_once(self, name: str, data: bytes) -> None: ...
    def list(self, prefix: str) -> list[str]: ...
    def delete(self, name: str) -> None: ...
    def exists(self, name: str) -> bool: ...
    def size(self, name: str) -> int: ...


def _fsync_dir(d: Path) -> None:
    fd = os.open(d, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_file_once(path: Path, data: bytes) -> None:
    """Write to a temporary name, fsync, rename into place, fsync the directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".tmp-{uuid.uuid4().hex}"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


class LocalBackend:
    """Objects as files under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, name: str) -> Path:
        """The file holding an object (local only: tests and tools that look inside)."""
        return self.root / name

    def read(self, name: str) -> bytes:
        return (self.root / name).read_bytes()

    def read_range(self, name: str, offset: int, length: int) -> bytes:
        with open(self.root / name, "rb") as f:
            f.seek(offset)
            return f.read(length)

    def read_tail(self, name: str, length: int) -> bytes:
        with open(self.root / name, "rb") as f:
            f.seek(-length, os.SEEK_END)
            return f.read(length)

    def write_once(self, name: str, data: bytes) -> None:
        write_file_once(self.root / name, data)

    def list(self, prefix: str) -> list[str]:
        """Names of the objects under a prefix ending in ``/`` (temporaries of killed writers are not objects)."""
        base = self.root / prefix
        if not base.is_dir():
            return []
        out = []
        for dirpath, _dirs, files in os.walk(base):
            rel = os.path.relpath(dirpath, self.root)
            out += [f"{rel}/{f}" if rel != "." else f for f in files if not f.startswith(".")]
        return sorted(out)

    def delete(self, name: str) -> None:
        (self.root / name).unlink(missing_ok=True)

    def exists(self, name: str) -> bool:
        return (self.root / name).exists()

    def size(self, name: str) -> int:
        return (self.root / name).stat().st_size

    def clean_temporaries(self) -> int:
        """Remove what writers killed mid-write left behind."""
        n = 0
        for dirpath, _dirs, files in os.walk(self.root / "data"):
            for f in files:
                if f.startswith(".tmp-"):
                    os.unlink(os.path.join(dirpath, f))
                    n += 1
        return n

