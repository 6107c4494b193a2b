"""How the control plane opens its backup repository: where it is, its passphrase, the platform key as signer."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING

from dr.repo import RepoError, Repository

if TYPE_CHECKING:
    from control_plane.context import Context


def passphrase(rt: Context) -> str:
    """The repository passphrase: the configured file, or a random one kept 0600 in the key directory."""
    p = rt.settings.dr.passphrase_file
    path = rt.settings.path(p) if p else rt.settings.key_dir / "dr-passphrase"
    if not path.exists():
        if p:
            raise RepoError(f"the DR passphrase file {path} does not exist", hint="create it, or unset dr.passphrase_file")
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(32) + "\n")
    return path.read_text().strip()


def repo_path(rt: Context) -> Path:
    """The primary repository's directory."""
    r = rt.settings.dr.repository
    return rt.settings.path(r) if r else rt.settings.var / "dr" / "repo"


def open_repo(rt: Context, path: Path | None = None, *, create: bool = True) -> Repository:
    """Open (creating it on first use) a repository with the platform key as signer and trust anchor."""
    path = path or repo_path(rt)
    pw = passphrase(rt)
    if not (path / "config").exists():
        if not create:
            raise RepoError(f"no repository at {path}", hint="run a backup first (it creates the repository)")
        return Repository.init(path, pw, signer=rt.signer, iterations=rt.settings.dr.kdf_iterations)
    return Repository.open(path, pw, signer=rt.signer, trusted=rt.signer.public_key)
