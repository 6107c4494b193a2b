"""Write-once object storage: the backup repository's objects, audit checkpoints, report archives.

Every object is addressed by a name like ``data/ab/<pack id>``, ``snapshots/<id>``,
``checkpoints/<seq>.json`` or ``2026-11/r1/report.json``; objects are written once and never
modified, read whole or by byte range, listed by prefix and deleted (only the repository's
prune and forget delete). That is what S3-compatible object storage offers (PUT, ranged GET,
LIST, DELETE), so ``S3Backend`` implements the same protocol as ``LocalBackend`` and nothing
above them changes. A repository's lock and local bookkeeping (``state/``) stay on the host
that writes.

``LocalBackend`` stores objects as files under a directory (local, or mounted from the backup
pool): written to a temporary name, fsynced, renamed into place, the directory fsynced.
``store(settings, bucket)`` is a bucket of the configured object store (``services.objectstore``).
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from control_plane.config import Settings


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



class S3Backend:
    """Objects in an S3-compatible bucket (SeaweedFS in the cluster profile), under ``prefix``.

    Written once with ``If-None-Match: *`` (the store refuses to replace an object); a retried
    write of the same bytes is accepted, different bytes under an existing name are an error.
    Reads by byte range use ``Range``; the official AWS SDK (boto3) does the signing and retries.
    """

    def __init__(self, endpoint: str, bucket: str, access_key: str, secret_key: str, *, prefix: str = "", timeout_s: float = 30.0,
                 attempts: int = 6) -> None:  # fmt: skip
        import boto3
        from botocore.config import Config

        self.bucket, self.prefix = bucket, prefix
        self.s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=access_key, aws_secret_access_key=secret_key, region_name="us-east-1",
                               config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": attempts, "mode": "standard"},
                                             connect_timeout=5, read_timeout=timeout_s, request_checksum_calculation="when_required",
                                             response_checksum_validation="when_required"))  # fmt: skip

    def _key(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def _get(self, name: str, rng: str | None = None) -> bytes:
        kw = {"Range": rng} if rng else {}
        try:
            return bytes(self.s3.get_object(Bucket=self.bucket, Key=self._key(name), **kw)["Body"].read())
        except self.s3.exceptions.NoSuchKey:
            raise FileNotFoundError(name) from None

    def read(self, name: str) -> bytes:
        return self._get(name)

    def read_range(self, name: str, offset: int, length: int) -> bytes:
        return self._get(name, f"bytes={offset}-{offset + length - 1}")

    def read_tail(self, name: str, length: int) -> bytes:
        return self._get(name, f"bytes=-{length}")

    def write_once(self, name: str, data: bytes) -> None:
        from botocore.exceptions import ClientError

        try:
            self.s3.put_object(Bucket=self.bucket, Key=self._key(name), Body=data, IfNoneMatch="*")
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("PreconditionFailed", "412"):
                raise
            if self._get(name) != data:  # a retry of the same write is fine; anything else would replace history
                raise FileExistsError(f"{name} exists with other content; objects are written once") from None

    def list(self, prefix: str) -> list[str]:
        out: list[str] = []
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self._key(prefix)):
            out += [o["Key"][len(self.prefix):] for o in page.get("Contents", [])]
        return sorted(out)

    def delete(self, name: str) -> None:
        self.s3.delete_object(Bucket=self.bucket, Key=self._key(name))

    def exists(self, name: str) -> bool:
        try:
            self.size(name)
            return True
        except FileNotFoundError:
            return False

    def size(self, name: str) -> int:
        from botocore.exceptions import ClientError

        try:
            return int(self.s3.head_object(Bucket=self.bucket, Key=self._key(name))["ContentLength"])
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                raise FileNotFoundError(name) from None
            raise


def store(settings: Settings, bucket: str, *, attempts: int = 6, timeout_s: float = 30.0) -> S3Backend:
    """A bucket of the object store (``services.objectstore``) with the generated S3 identity."""
    creds = settings.s3_credentials()
    return S3Backend(settings.services.objectstore.url, bucket, creds["access_key"], creds["secret_key"], attempts=attempts, timeout_s=timeout_s)
