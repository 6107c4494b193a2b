"""Per-host SSH credentials the bastion logs in with: generated here, installed at deploy time, rotated through the gate.

Each pool host gets its own ed25519 key pair (0600 under ``<key_dir>/hosts/``); the host's
authorized keys hold the control plane's automation key and that host's bastion key, nothing a
person owns. People never see these keys: they reach hosts only through the bastion.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from control_plane.context import Context

HOST_NAME = re.compile(r"^[a-z][a-z0-9-]{0,62}$")


def _dir(ctx: Context) -> Path:
    d = ctx.settings.key_dir / "hosts"
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    return d


def key_path(ctx: Context, host: str) -> Path:
    """Where the host's bastion key lives."""
    if not HOST_NAME.fullmatch(host):
        raise ValueError(f"host name {host!r} is not valid")
    return _dir(ctx) / f"{host}.key"


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def public_key(ctx: Context, host: str, *, create: bool = True) -> str:
    """The host's bastion public key (OpenSSH form), made on first use."""
    import asyncssh

    path = key_path(ctx, host)
    if not path.exists():
        if not create:
            raise FileNotFoundError(path)
        key = asyncssh.generate_private_key("ssh-ed25519", comment=f"govctl-bastion@{host}")
        _write(path, key.export_private_key())
    return asyncssh.read_private_key(str(path)).export_public_key().decode().strip()


def private_key(ctx: Context, host: str) -> object:
    """The host's bastion key, for the gateway's upstream login."""
    import asyncssh

    return asyncssh.read_private_key(str(key_path(ctx, host)))


def keys_for(ctx: Context, hosts: list[str]) -> dict[str, str]:
    """Public keys for every host a stack will have (what deploy installs)."""
    return {h: public_key(ctx, h) for h in hosts}


def rotate(ctx: Context, host: str, address: str, host_key: str, authorized_file: str) -> dict[str, str]:
    """A new key for ``host``: installed over SSH with the current one, checked by logging in with it, then the old one removed."""
    import asyncio

    import asyncssh

    old = private_key(ctx, host)
    new = asyncssh.generate_private_key("ssh-ed25519", comment=f"govctl-bastion@{host}")
    new_pub = new.export_public_key().decode().strip()
    old_pub = old.export_public_key().decode().strip()  # type: ignore[attr-defined]
    known = asyncssh.import_known_hosts(f"{address} {host_key}\n") if host_key else None

    async def _go() -> None:
        async with asyncssh.connect(address, username="root", client_keys=[old], known_hosts=known, connect_timeout=10) as conn:
            path = authorized_file
            async with conn.start_sftp_client() as sftp:
                async with sftp.open(path, "r") as f:
                    lines = [ln for ln in (await f.read()).splitlines() if ln.strip()]
                async with sftp.open(path, "w") as f:
                    await f.write("\n".join([*lines, new_pub]) + "\n")
        async with asyncssh.connect(address, username="root", client_keys=[new], known_hosts=known, connect_timeout=10) as conn:
            async with conn.start_sftp_client() as sftp:
                async with sftp.open(path, "w") as f:
                    await f.write("\n".join([*(ln for ln in lines if ln.split()[:2] != old_pub.split()[:2]), new_pub]) + "\n")
            await conn.run("true", check=True)

    asyncio.run(_go())
    _write(key_path(ctx, host), new.export_private_key())
    return {"host": host, "public_key": new_pub}
