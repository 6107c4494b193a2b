"""Users and API tokens. Tokens are stored only as SM3 hashes, with expiry and revocation."""

from __future__ import annotations

import hmac
import json
import secrets
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import select, update

from control_plane.audit.service import utc_now_iso
from control_plane.crypto import sm3_hex
from control_plane.gate.errors import NotFound, Unauthenticated
from control_plane.gate.models import tokens, users

TOKEN_PREFIX = "gct"


def _iso_in(days: float) -> str:
    return (datetime.now(timezone.utc) + timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def get_user(rt: Any, name: str) -> dict[str, Any] | None:
    """A user row as a dict (roles decoded), or None."""
    with rt.engine.connect() as conn:
        row = conn.execute(select(users).where(users.c.name == name)).first()
    if row is None:
        return None
    d = dict(row._mapping)
    d["roles"] = json.loads(d["roles"])
    return d


def list_users(rt: Any) -> list[dict[str, Any]]:
    """Every user with roles and state."""
    with rt.engine.connect() as conn:
        rows = conn.execute(select(users).order_by(users.c.name)).all()
    return [{**dict(r._mapping), "roles": json.loads(r.roles)} for r in rows]


def change_user(rt: Any, name: str, *, roles: list[str] | None = None, disabled: bool | None = None) -> dict[str, Any]:
    """Create a user or change its roles / disabled flag."""
    known = set(rt.gate.policy.roles)
    if roles is not None:
        bad = [r for r in roles if r not in known]
        if bad:
            raise NotFound(f"unknown role {bad[0]!r}", hint=f"roles: {', '.join(sorted(known))}")
    with rt.engine.begin() as conn:
        exists = conn.execute(select(users.c.name).where(users.c.name == name)).first()
        if exists is None:
            conn.execute(users.insert().values(name=name, roles=json.dumps(sorted(roles or [])), created=utc_now_iso(), disabled=bool(disabled)))
        else:
            vals: dict[str, Any] = {}
            if roles is not None:
                vals["roles"] = json.dumps(sorted(roles))
            if disabled is not None:
                vals["disabled"] = disabled
            if vals:
                conn.execute(update(users).where(users.c.name == name).values(**vals))
    return get_user(rt, name) or {}


def create_token(rt: Any, user: str, *, ttl_days: float = 30, description: str = "") -> tuple[str, str, str]:
    """Issue a token for ``user``: returns (token id, the full secret shown once, expiry)."""
    if get_user(rt, user) is None:
        raise NotFound(f"no user {user!r}", hint="create it first: govctl iam user add NAME --role ROLE")
    if not 0 < ttl_days <= 366:
        raise ValueError("a token lives between a moment and 366 days")
    token_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    expires = _iso_in(ttl_days)
    with rt.engine.begin() as conn:
        conn.execute(tokens.insert().values(id=token_id, user=user, secret_sm3=sm3_hex(secret.encode()), created=utc_now_iso(),
                                            expires=expires, revoked=None, description=description[:200]))  # fmt: skip
    return token_id, f"{TOKEN_PREFIX}_{token_id}_{secret}", expires


def revoke_token(rt: Any, token_id: str, *, owner: str | None = None) -> dict[str, Any]:
    """Revoke a token (of ``owner`` when given)."""
    with rt.engine.begin() as conn:
        q = update(tokens).where(tokens.c.id == token_id, tokens.c.revoked.is_(None))
        if owner:
            q = q.where(tokens.c.user == owner)
        n = conn.execute(q.values(revoked=utc_now_iso())).rowcount
    if not n:
        raise NotFound(f"no active token {token_id!r}" + (f" of {owner}" if owner else ""))
    return {"revoked": token_id}


def list_tokens(rt: Any, user: str | None = None) -> list[dict[str, Any]]:
    """Tokens (never their secrets)."""
    q = select(tokens.c.id, tokens.c.user, tokens.c.created, tokens.c.expires, tokens.c.revoked, tokens.c.description)
    if user:
        q = q.where(tokens.c.user == user)
    with rt.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(q.order_by(tokens.c.created))]


_LOOKUP = select(tokens.c.user, tokens.c.secret_sm3, tokens.c.expires, tokens.c.revoked)


def verify_token(rt: Any, presented: str) -> tuple[str, str]:
    """(user, token id) for a valid token; Unauthenticated with the reason otherwise."""
    parts = presented.strip().split("_", 2)
    if len(parts) != 3 or parts[0] != TOKEN_PREFIX:
        raise Unauthenticated("malformed token", hint="tokens look like gct_<id>_<secret>; create one with govctl iam token create")
    _, token_id, secret = parts
    with rt.engine.connect() as conn:
        row = conn.execute(_LOOKUP.where(tokens.c.id == token_id)).first()
    if row is None or not hmac.compare_digest(row.secret_sm3, sm3_hex(secret.encode())):
        raise Unauthenticated("unknown token", hint="check the token or create a new one")
    if row.revoked:
        raise Unauthenticated(f"token {token_id} was revoked at {row.revoked}", hint="create a new token")
    if row.expires <= utc_now_iso():
        raise Unauthenticated(f"token {token_id} expired at {row.expires}", hint="create a new token")
    return row.user, token_id
