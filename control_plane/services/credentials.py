"""Generated service credentials, kept in 0600 JSON files created that way (never chmod'ed afterwards)."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

from control_plane.services.es_security import write_private


def _load(path: Path, names: tuple[str, ...]) -> dict[str, str]:
    if path.exists():
        data = json.loads(path.read_text())
        if set(names) <= set(data):
            return {k: str(v) for k, v in data.items()}
    data = {n: secrets.token_urlsafe(24) for n in names}
    write_private(path, json.dumps(data, indent=2).encode())
    return data


def pg_credentials(path: Path) -> dict[str, str]:
    """Passwords of our PostgreSQL cluster: ``superuser`` (maintenance), ``app`` (the control plane's role,
    no superuser) and ``replication`` (base backups and WAL streaming only)."""
    return _load(path, ("superuser", "app", "replication"))


REPLICATION_ROLE = "govctl_replication"
