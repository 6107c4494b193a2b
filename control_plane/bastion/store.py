"""The bastion's records: people's keys, grants, sessions, locks; and the hosts it can reach."""

from __future__ import annotations

import fnmatch
import json
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, select, update

from control_plane import clock
from control_plane.bastion.models import grants, keys, locks, sessions
from control_plane.errors import GovctlError

if TYPE_CHECKING:
    from control_plane.context import Context


class BastionError(GovctlError):
    """A bastion request the rules refuse."""

    http_status = 400
    exit_code = 2


class NoSuchHost(BastionError):
    """A host the bastion does not know."""

    http_status = 404


ALLOWED_KEY_TYPES = {"ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521", "sk-ssh-ed25519@openssh.com",
                     "sk-ecdsa-sha2-nistp256@openssh.com", "ssh-rsa"}  # fmt: skip


def parse_public_key(text: str) -> tuple[str, str, str]:
    """(OpenSSH public key, SHA256 fingerprint, comment) of a person's key; refuses weak or malformed keys."""
    import asyncssh

    if not isinstance(text, str) or len(text) > 16384 or "\n" in text.strip():
        raise BastionError("an SSH public key is one line (the content of id_ed25519.pub)", hint="register the .pub file, not the private key")
    try:
        key = asyncssh.import_public_key(text.strip())
    except (asyncssh.KeyImportError, ValueError) as exc:
        raise BastionError(f"not an OpenSSH public key: {exc}", hint="give the content of ~/.ssh/id_ed25519.pub") from None
    alg = key.get_algorithm()
    if alg not in ALLOWED_KEY_TYPES:
        raise BastionError(f"key type {alg} is not accepted", hint="use ed25519: ssh-keygen -t ed25519")
    if alg == "ssh-rsa" and key.pyca_key.key_size < 3072:  # type: ignore[attr-defined]
        raise BastionError(f"an RSA key of {key.pyca_key.key_size} bits is too weak", hint="use ed25519, or RSA of at least 3072 bits")  # type: ignore[attr-defined]
    parts = text.strip().split(None, 2)
    comment = parts[2][:200] if len(parts) > 2 else ""
    return key.export_public_key().decode().strip(), key.get_fingerprint("sha256"), comment


def add_key(ctx: Context, user: str, public_key: str, op_id: str = "") -> dict[str, Any]:
    """Register a person's key (a key belongs to one person only)."""
    pub, fp, comment = parse_public_key(public_key)
    with ctx.engine.begin() as conn:
        row = conn.execute(select(keys.c.user).where(keys.c.fingerprint == fp)).first()
        if row is not None:
            raise BastionError(f"this key is registered already (to {row.user})", hint="each person registers their own key")
        conn.execute(keys.insert().values(fingerprint=fp, user=user, public_key=pub, comment=comment, added=clock.now_iso(), op_id=op_id))
    return {"user": user, "fingerprint": fp, "comment": comment}


def remove_key(ctx: Context, fingerprint: str, *, user: str | None = None) -> dict[str, Any]:
    """Remove a key (of ``user`` when given)."""
    with ctx.engine.begin() as conn:
        q = keys.delete().where(keys.c.fingerprint == fingerprint)
        if user:
            q = q.where(keys.c.user == user)
        if conn.execute(q).rowcount != 1:
            raise BastionError(f"no key {fingerprint}" + (f" of {user}" if user else ""), hint="govctl bastion keys list")
    return {"removed": fingerprint}


def user_of_key(ctx: Context, user: str, public_key: str) -> bool:
    """True if ``public_key`` is registered to ``user``."""
    import asyncssh

    fp = asyncssh.import_public_key(public_key).get_fingerprint("sha256")
    with ctx.engine.connect() as conn:
        return conn.execute(select(keys.c.user).where(and_(keys.c.fingerprint == fp, keys.c.user == user))).first() is not None


def list_keys(ctx: Context, user: str | None = None) -> list[dict[str, Any]]:
    """Registered keys (public halves)."""
    q = select(keys.c.user, keys.c.fingerprint, keys.c.comment, keys.c.added).order_by(keys.c.user, keys.c.added)
    if user:
        q = q.where(keys.c.user == user)
    with ctx.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(q)]


# -- hosts ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Asset:
    """A host the bastion can reach."""

    name: str
    address: str
    pool: str
    zone: str
    stack: str
    host_key: str


def assets(ctx: Context) -> dict[str, Asset]:
    """Every deployed host, with its pool, zone and SSH host key."""
    from control_plane.deploy.service import outputs, state_file

    out: dict[str, Asset] = {}
    for stack_name, cfg in ctx.settings.deploy.stacks.items():
        if not state_file(ctx, stack_name).exists():
            continue
        outs = outputs(ctx, stack_name)
        for role in ("primary", "backup"):
            zone = str(outs.get(f"{role}_zone") or ((cfg.get("pools") or {}).get(role) or {}).get("zone", ""))
            for hname, ip in (outs.get(f"{role}_hosts") or {}).items():
                out[hname] = Asset(hname, str(ip), role, zone, stack_name, str((outs.get(f"{role}_host_keys") or {}).get(hname, "")))
    return out


def authorized_keys_file(ctx: Context, a: Asset) -> str:
    """Where the host's sshd reads authorized keys: the local target's per-host file, else the account's own."""
    cfg = ctx.settings.deploy.stacks.get(a.stack, {})
    if cfg.get("target", "local") != "local":
        return ".ssh/authorized_keys"
    root = cfg.get("local_root") or str(ctx.settings.var / "pools" / a.stack)
    return f"{root}/{a.pool}/hosts/{a.name}/ssh/authorized_keys"


def asset(ctx: Context, name: str) -> Asset:
    """One host by name."""
    found = assets(ctx)
    if name not in found:
        raise NoSuchHost(f"no host {name!r}", hint=f"hosts: {', '.join(sorted(found)) or 'none (deploy a stack first)'}")
    return found[name]


# -- grants ---------------------------------------------------------------------------------------

def _covers(pattern: str, a: Asset) -> bool:
    if pattern == "*":
        return True
    if pattern.startswith("pool:"):
        return a.pool == pattern[5:]
    if pattern.startswith("stack:"):
        return a.stack == pattern[6:]
    return fnmatch.fnmatchcase(a.name, pattern)


def add_grant(ctx: Context, user: str, hosts: list[str], account: str, valid_from: str, valid_to: str, reason: str, op_id: str = "") -> dict[str, Any]:
    """A new grant: ``user`` may open sessions as ``account`` on ``hosts`` between the two times."""
    gid = f"g-{secrets.token_hex(4)}"
    row = {"id": gid, "user": user, "hosts": json.dumps(hosts), "account": account, "valid_from": valid_from, "valid_to": valid_to,
           "reason": reason, "created": clock.now_iso(), "op_id": op_id, "revoked": None}  # fmt: skip
    with ctx.engine.begin() as conn:
        conn.execute(grants.insert().values(**row))
    return {**row, "hosts": hosts}


def revoke_grant(ctx: Context, gid: str) -> dict[str, Any]:
    """End a grant now (open sessions under it end within a second)."""
    with ctx.engine.begin() as conn:
        if conn.execute(update(grants).where(and_(grants.c.id == gid, grants.c.revoked.is_(None))).values(revoked=clock.now_iso())).rowcount != 1:
            raise BastionError(f"no active grant {gid}", hint="govctl bastion grants list")
    return {"revoked": gid}


def list_grants(ctx: Context, user: str | None = None, *, active_only: bool = False) -> list[dict[str, Any]]:
    """Grants, newest first."""
    q = select(grants).order_by(grants.c.created.desc())
    if user:
        q = q.where(grants.c.user == user)
    now = clock.now_iso()
    with ctx.engine.connect() as conn:
        rows = [{**dict(r._mapping), "hosts": json.loads(r.hosts)} for r in conn.execute(q)]
    if active_only:
        rows = [r for r in rows if not r["revoked"] and r["valid_from"] <= now < r["valid_to"]]
    return rows


def granted(ctx: Context, user: str, a: Asset, account: str | None = None) -> list[str]:
    """The accounts ``user`` may use on ``a`` now (only ``account`` when given)."""
    out = []
    for g in list_grants(ctx, user, active_only=True):
        if any(_covers(p, a) for p in g["hosts"]) and (account is None or g["account"] == account) and g["account"] not in out:
            out.append(g["account"])
    return out


def reachable(ctx: Context, user: str) -> list[tuple[Asset, list[str]]]:
    """The hosts ``user`` may open now, with their accounts."""
    out = []
    for a in sorted(assets(ctx).values(), key=lambda a: a.name):
        accts = granted(ctx, user, a)
        if accts:
            out.append((a, accts))
    return out


# -- locks and sessions ---------------------------------------------------------------------------

def lock(ctx: Context, user: str, by: str, reason: str) -> dict[str, Any]:
    """Lock a person out of the bastion; their sessions end within a second."""
    with ctx.engine.begin() as conn:
        conn.execute(locks.delete().where(locks.c.user == user))
        conn.execute(locks.insert().values(user=user, since=clock.now_iso(), by=by, reason=reason))
    return {"locked": user}


def unlock(ctx: Context, user: str) -> dict[str, Any]:
    """Lift a lock."""
    with ctx.engine.begin() as conn:
        if conn.execute(locks.delete().where(locks.c.user == user)).rowcount != 1:
            raise BastionError(f"{user} is not locked")
    return {"unlocked": user}


def locked(ctx: Context) -> set[str]:
    """Everyone locked now."""
    with ctx.engine.connect() as conn:
        return {u for (u,) in conn.execute(select(locks.c.user))}


def start_session(ctx: Context, sid: str, *, user: str, host: str, account: str, kind: str, source: str, recording: str, gateway: str) -> None:
    """Record that a session began."""
    with ctx.engine.begin() as conn:
        conn.execute(sessions.insert().values(id=sid, user=user, host=host, account=account, kind=kind, source=source, started=clock.now_iso(),
                                              recording=recording, chunks=0, commands=0, gateway=gateway))  # fmt: skip


def end_session(ctx: Context, sid: str, reason: str, *, final_sm3: str | None, chunks: int, commands: int) -> None:
    """Record how a session ended."""
    with ctx.engine.begin() as conn:
        conn.execute(update(sessions).where(and_(sessions.c.id == sid, sessions.c.ended.is_(None)))
                     .values(ended=clock.now_iso(), end_reason=reason, final_sm3=final_sm3, chunks=chunks, commands=commands))  # fmt: skip


def request_kill(ctx: Context, sid: str) -> dict[str, Any]:
    """Ask the gateway holding a session to end it (within a second)."""
    with ctx.engine.begin() as conn:
        if conn.execute(update(sessions).where(and_(sessions.c.id == sid, sessions.c.ended.is_(None))).values(kill_requested=clock.now_iso())).rowcount != 1:
            raise BastionError(f"no live session {sid}", hint="govctl bastion sessions")
    return {"killed": sid}


def get_session(ctx: Context, sid: str) -> dict[str, Any]:
    """One session."""
    with ctx.engine.connect() as conn:
        row = conn.execute(select(sessions).where(sessions.c.id == sid)).first()
    if row is None:
        raise BastionError(f"no session {sid!r}", hint="govctl bastion sessions --all")
    return dict(row._mapping)


def list_sessions(ctx: Context, *, live_only: bool = True, user: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
    """Sessions, newest first."""
    q = select(sessions).order_by(sessions.c.started.desc()).limit(limit)
    if live_only:
        q = q.where(sessions.c.ended.is_(None))
    if user:
        q = q.where(sessions.c.user == user)
    with ctx.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(q)]


def to_end(ctx: Context, ids: list[str]) -> dict[str, str]:
    """Which of these live sessions must end now, and why (killed, owner locked, grant gone)."""
    if not ids:
        return {}
    with ctx.engine.connect() as conn:
        rows = conn.execute(select(sessions.c.id, sessions.c.user, sessions.c.kill_requested).where(sessions.c.id.in_(ids))).all()
        held = {u for (u,) in conn.execute(select(locks.c.user))}
    out = {}
    for r in rows:
        if r.kill_requested:
            out[r.id] = "killed"
        elif r.user in held:
            out[r.id] = "locked"
    return out
