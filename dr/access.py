"""How the control plane opens its backup repository: where it is, its passphrase, the platform key as signer."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING

from control_plane.objects import Backend, LocalBackend
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
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(32) + "\n")
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)  # whole or not at all; if another thread or process made it first, theirs is the one
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp)
    return path.read_text().strip()


def repo_path(rt: Context) -> Path:
    """The primary repository's directory."""
    r = rt.settings.dr.repository
    return rt.settings.path(r) if r else rt.settings.var / "dr" / "repo"


def s3_backend(rt: Context, bucket: str) -> Backend:
    """A bucket of the object store (services.objectstore) as a repository's object backend."""
    from control_plane.objects import store

    return store(rt.settings, bucket)


def open_repo(rt: Context, path: Path | None = None, *, create: bool = True, backend: Backend | None = None) -> Repository:
    """Open (creating it on first use) a repository with the platform key as signer and trust anchor.

    The primary repository's objects are files under ``path``, or, with ``dr.objects: s3``, objects
    in ``dr.bucket`` (``path`` then holds only the lock and this host's bookkeeping).
    """
    primary = path is None
    path = path or repo_path(rt)
    if backend is None:
        backend = s3_backend(rt, rt.settings.dr.bucket) if primary and rt.settings.dr.objects == "s3" else LocalBackend(path)
    pw = passphrase(rt)
    if not backend.exists("config"):
        if not create:
            raise RepoError(f"no repository at {path}", hint="run a backup first (it creates the repository)")
        try:
            return Repository.init(path, pw, signer=rt.signer, iterations=rt.settings.dr.kdf_iterations, backend=backend)
        except (FileExistsError, RepoError):
            # another thread or process created it at the same moment (objects are written once: its key won): open theirs
            import time

            deadline = time.monotonic() + 30
            while not backend.exists("config") and time.monotonic() < deadline:
                time.sleep(0.2)
    return Repository.open(path, pw, signer=rt.signer, trusted=rt.signer.public_key, backend=backend)


def credential_path(rt: Context, name: str, configured: Path | None = None) -> Path:
    """Where a source's password lives: the configured file, or <key_dir>/dr/<source>.pw."""
    return rt.settings.path(configured) if configured else rt.settings.key_dir / "dr" / f"{name}.pw"


def read_credential(rt: Context, name: str, configured: Path | None = None) -> str:
    """A source's password from its file, which must be 0600 (or stricter) and owned by this user: a readable secret is refused, not used."""
    import stat

    path = credential_path(rt, name, configured)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise RepoError(f"source {name}: no credential file {path}",
                        hint=f"put the replication role's password there, mode 0600: govctl dr credential {name} (reads it from standard input)") from None
    if stat.S_IMODE(st.st_mode) & 0o077 or st.st_uid != os.getuid():
        raise RepoError(f"source {name}: credential file {path} is mode {stat.S_IMODE(st.st_mode):04o}, owner uid {st.st_uid}; refusing a secret others may read",
                        hint=f"chmod 600 {path} (and chown it to the user govctl runs as)")  # fmt: skip
    text = path.read_text(encoding="utf-8").strip()
    if not text or "\n" in text:
        raise RepoError(f"source {name}: credential file {path} must hold the password alone, on one line")
    return text


def stage_credential(rt: Context, secret: str) -> str:
    """Keep a password a person typed, 0600, until the gated dr.credential operation installs it; returns its token.

    The password never becomes an operation parameter (those are audited), only the token does.
    """
    from control_plane.credentials import write_private

    secret = secret.strip()
    if not secret or "\n" in secret or len(secret) > 1024:
        raise RepoError("a password is one line of at most 1024 characters")
    token = secrets.token_hex(16)
    d = rt.settings.key_dir / "dr" / "staged"
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_private(d / f"{token}.pw", (secret + "\n").encode())
    return token


def install_credential(rt: Context, name: str, token: str, configured: Path | None = None) -> dict[str, str]:
    """Move a staged password into the source's credential file (0600, replaced whole)."""
    import re

    if not re.fullmatch(r"[0-9a-f]{32}", token):
        raise RepoError("staged credential token is not valid")
    staged = rt.settings.key_dir / "dr" / "staged" / f"{token}.pw"
    if not staged.is_file():
        raise RepoError("that staged password is gone (installed already, or never staged here)", hint="run govctl dr credential again")
    path = credential_path(rt, name, configured)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.replace(staged, path)
    return {"source": name, "file": str(path)}
