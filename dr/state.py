"""The control plane's own state as a backup source (``type: control-plane``, default source ``control-plane``).

What a rebuilt control plane needs to resume and to prove its history, staged into one tree and
backed up like any files source:

- ``state/govctl.db``: a consistent copy of the SQLite state DB, taken with SQLite's online
  backup API while the control plane keeps writing (a PostgreSQL state DB is the ``postgres``
  source's business: base backups and streamed WAL);
- ``audit/checkpoints.jsonl``: the signed checkpoints kept off the state DB;
- ``keys/``: the public halves only (the platform's SM2 public key, the Elasticsearch CA's
  certificate); private keys and generated passwords never enter a backup;
- ``config/govctl.yaml``: the configuration file, if there is one (the snapshot is SM4-GCM
  encrypted like every other).
"""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dr.repo import Repository

if TYPE_CHECKING:
    from control_plane.context import Context

PUBLIC_PEM = (b"-----BEGIN PUBLIC KEY-----", b"-----BEGIN CERTIFICATE-----")


def _sqlite_path(url: str) -> Path | None:
    return Path(url.removeprefix("sqlite:///")) if url.startswith("sqlite:///") else None


def stage(rt: Context, into: Path) -> dict[str, Any]:
    """Write the tree into ``into``; returns what went in."""
    s = rt.settings
    what: dict[str, Any] = {"state_db": None, "anchors": False, "public_keys": [], "config": False}
    # the anchors first: a checkpoint newer than the copied DB's head would read as a truncated ledger
    if s.anchor_file.exists():
        (into / "audit").mkdir(parents=True)
        shutil.copy2(s.anchor_file, into / "audit" / "checkpoints.jsonl")
        what["anchors"] = True
    db = _sqlite_path(s.state_url())
    if db is not None and db.exists():
        (into / "state").mkdir(parents=True)
        src = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
        dst = sqlite3.connect(into / "state" / "govctl.db")
        try:
            src.backup(dst)  # one step: a consistent image even while the control plane writes
        finally:
            dst.close()
            src.close()
        what["state_db"] = "sqlite"
    elif db is None:
        what["state_db"] = "postgresql (in the postgres source)"
    if s.key_dir.is_dir():
        for f in sorted(s.key_dir.glob("*.pem")):
            if f.is_file() and not f.is_symlink() and f.read_bytes()[:32].startswith(PUBLIC_PEM):
                (into / "keys").mkdir(parents=True, exist_ok=True)
                shutil.copy2(f, into / "keys" / f.name)
                what["public_keys"].append(f.name)
    if s.source != "embedded defaults" and Path(s.source).is_file():
        (into / "config").mkdir(parents=True)
        shutil.copy2(s.source, into / "config" / "govctl.yaml")
        what["config"] = True
    return what


def backup_state(rt: Context, repo: Repository, name: str) -> tuple[str, dict[str, Any]]:
    """Stage the control plane's state and back it up as snapshot of source ``name``."""
    from dr.files import backup

    tmp = rt.settings.var / "dr" / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"state-{name}-", dir=tmp))
    try:
        root = work / "control-plane"
        root.mkdir(mode=0o700)
        what = stage(rt, root)
        sid, st = backup(repo, root, name=name, tags=["control-plane"], extra={"control_plane": what})
        return sid, {**st.as_dict(), "contents": what}
    finally:
        shutil.rmtree(work, ignore_errors=True)
