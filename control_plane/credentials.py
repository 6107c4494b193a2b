"""Generated service credentials, kept in 0600 JSON files created that way (never chmod'ed afterwards)."""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

REPLICATION_ROLE = "govctl_replication"


def write_private(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write a file that is ``mode`` from its creation (never world-readable for a moment), atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)


def load_generated(path: Path, names: tuple[str, ...]) -> dict[str, str]:
    """Passwords by name from ``path``; any that are missing are generated (random, 24 bytes) and the file rewritten 0600."""
    data: dict[str, str] = {}
    if path.exists():
        data = {k: str(v) for k, v in json.loads(path.read_text()).items()}
        if set(names) <= set(data):
            return data
    data.update({n: secrets.token_urlsafe(24) for n in names if n not in data})
    write_private(path, json.dumps(data, indent=2).encode())
    return data


def pg_credentials(path: Path) -> dict[str, str]:
    """Passwords of our PostgreSQL cluster: ``superuser`` (maintenance), ``app`` (the control plane's role,
    no superuser) and ``replication`` (base backups and WAL streaming only)."""
    return load_generated(path, ("superuser", "app", "replication"))
