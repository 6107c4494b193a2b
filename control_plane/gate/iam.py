"""Users and API tokens. Tokens are stored only as SM3 hashes, with expiry and revocation."""

from __future__ import annotations

import hmac
import json
import re
import secrets
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update

from control_plane.clock import now_iso as utc_now_iso
from control_plane import clock
from control_plane.crypto import sm3_hex
from control_plane.gate.errors import GateError, NotFound, Unauthenticated
from control_plane.gate.models import auth_failures, tokens, users

if TYPE_CHECKING:
    from control_plane.context import Context

TOKEN_PREFIX = "gct"


class IamError(GateError):
    """A user, role or enrolment request that the identity rules refuse."""

    http_status = 400


def _iso_in(days: float) -> str:
    return clock.iso_in(days * 86400)


def get_user(rt: Context, name: str) -> dict[str, Any] | None:
    """A user row as a dict (roles decoded), or None."""
    with rt.engine.connect() as conn:
        row = conn.execute(select(users).where(users.c.name == name)).first()
    if row is None:
        return None
    d = dict(row._mapping)
    d["roles"] = json.loads(d["roles"])
    return d


def list_users(rt: Context) -> list[dict[str, Any]]:
    """Every user with roles and state."""
    with rt.engine.connect() as conn:
        rows = conn.execute(select(users).order_by(users.c.name)).all()
    return [{**dict(r._mapping), "roles": json.loads(r.roles)} for r in rows]


# Names nobody can register: the control plane's own principals and the ones the OS or the gate use.
RESERVED = frozenset({"anonymous", "gate", "system", "soc-engine", "scheduler", "ansible", "automation", "root", "admin", "govctl"})
USER_NAME = re.compile(r"^[a-z][a-z0-9_.-]{0,31}$")
# 三权分立: one person is never more than one of the system, security and audit administrators
EXCLUSIVE = ("sysadmin", "secadmin", "auditor")
ENROL_TTL_H = 72


def check_name(name: str) -> None:
    """Refuse names that are malformed or reserved (system principals, ``local:*``)."""
    if not isinstance(name, str) or not USER_NAME.fullmatch(name):
        raise IamError(f"user name {name!r} is not allowed", hint="lower-case letters, digits, '.', '_' and '-', at most 32, starting with a letter")
    if name in RESERVED:
        raise IamError(f"user name {name!r} is reserved for the control plane itself", hint="choose another name")


def check_roles(rt: Context, roles: list[str]) -> list[str]:
    """Known roles, and separation of duties: at most one of sysadmin, secadmin and auditor."""
    known = set(rt.gate.policy.roles)
    bad = [r for r in roles if r not in known]
    if bad:
        raise NotFound(f"unknown role {bad[0]!r}", hint=f"roles: {', '.join(sorted(known))}")
    held = [r for r in EXCLUSIVE if r in roles]
    if len(held) > 1:
        raise IamError(f"{' and '.join(held)} cannot be held by one person (separation of duties, 三权分立)",
                       hint="give each of these roles to a different person")  # fmt: skip
    return sorted(set(roles))


def change_user(rt: Context, name: str, *, roles: list[str] | None = None, disabled: bool | None = None,
                department: str | None = None) -> dict[str, Any]:  # fmt: skip
    """Create a user or change its roles / disabled flag (names and roles checked)."""
    check_name(name)
    if roles is not None:
        roles = check_roles(rt, roles)
    with rt.engine.begin() as conn:
        exists = conn.execute(select(users.c.name).where(users.c.name == name)).first()
        if exists is None:
            conn.execute(users.insert().values(name=name, roles=json.dumps(sorted(roles or [])), created=utc_now_iso(), disabled=bool(disabled),
                                               department=department or ""))  # fmt: skip
        else:
            vals: dict[str, Any] = {}
            if roles is not None:
                vals["roles"] = json.dumps(sorted(roles))
            if disabled is not None:
                vals["disabled"] = disabled
            if vals:
                conn.execute(update(users).where(users.c.name == name).values(**vals))
    return public(get_user(rt, name) or {})


def public(row: dict[str, Any]) -> dict[str, Any]:
    """A user row without its secrets."""
    hidden = ("enrol_sm3", "totp_secret", "totp_pending", "totp_last_step", "password_hash", "password_history")
    return {k: v for k, v in row.items() if k not in hidden} | {"totp": bool(row.get("totp_secret")), "password": bool(row.get("password_hash"))}


def create_user(rt: Context, name: str, *, roles: list[str], department: str = "") -> tuple[dict[str, Any], str]:
    """A new user who must enrol: returns (the user, a one-time enrolment code for that person only)."""
    check_name(name)
    if get_user(rt, name) is not None:
        raise IamError(f"user {name!r} already exists", hint="change roles with govctl iam role set; disable with govctl iam user disable")
    change_user(rt, name, roles=roles, department=department)
    return public(get_user(rt, name) or {}), new_enrolment(rt, name)


def new_enrolment(rt: Context, name: str) -> str:
    """A fresh one-time enrolment code for ``name`` (stored only as its SM3 hash; 72 hours)."""
    code = f"enr_{secrets.token_urlsafe(18)}"
    with rt.engine.begin() as conn:
        conn.execute(update(users).where(users.c.name == name).values(
            enrol_sm3=sm3_hex(code.encode()), enrol_expires=_iso_in(ENROL_TTL_H / 24), totp_pending=None))  # fmt: skip
    return code


def start_enrolment(rt: Context, name: str, code: str) -> str:
    """Check a user's enrolment code and give them a new TOTP secret to confirm; returns its otpauth URI."""
    import pyotp

    row = _enrolling(rt, name, code)
    secret = pyotp.random_base32()
    with rt.engine.begin() as conn:
        conn.execute(update(users).where(users.c.name == row["name"]).values(totp_pending=secret))
    return pyotp.TOTP(secret).provisioning_uri(name=name, issuer_name="govctl")


def finish_enrolment(rt: Context, name: str, code: str, otp: str, *, ttl_days: float = 30) -> tuple[str, str, str]:
    """Confirm the TOTP secret with a current code: the user is enrolled and gets their first token."""
    import pyotp

    row = _enrolling(rt, name, code)
    if not row.get("totp_pending"):
        raise IamError("start the enrolment first", hint=f"govctl iam enrol {name}")
    step = _totp_step(pyotp.TOTP(row["totp_pending"]), otp)
    if step is None:
        raise Unauthenticated("the one-time password does not match the new secret", hint="check the authenticator's clock and try the current code")
    with rt.engine.begin() as conn:
        conn.execute(update(users).where(users.c.name == name).values(
            totp_secret=row["totp_pending"], totp_pending=None, totp_last_step=step, enrol_sm3=None, enrol_expires=None,
            enrolled=utc_now_iso()))  # fmt: skip
    return create_token(rt, name, ttl_days=ttl_days, description="enrolment")


def _enrolling(rt: Context, name: str, code: str) -> dict[str, Any]:
    row = get_user(rt, name)
    if row is None or not row.get("enrol_sm3") or not isinstance(code, str) or not hmac.compare_digest(row["enrol_sm3"], sm3_hex(code.encode())):
        raise Unauthenticated(f"no valid enrolment code for {name!r}", hint="ask a security administrator for a new one")
    if (row.get("enrol_expires") or "") <= utc_now_iso():
        raise Unauthenticated(f"the enrolment code for {name!r} expired at {row['enrol_expires']}", hint="ask a security administrator for a new one")
    if row["disabled"]:
        raise Unauthenticated(f"user {name!r} is disabled")
    return row


def _totp_step(totp: Any, otp: str) -> int | None:
    """The time step a code belongs to (this one or one either side), or None."""
    import time

    if not isinstance(otp, str) or not re.fullmatch(r"\d{6}", otp):
        return None
    now = int(time.time()) // 30
    for step in (now, now - 1, now + 1):
        if hmac.compare_digest(totp.at(step * 30), otp):
            return step
    return None


def verify_otp(rt: Context, name: str, otp: str | None) -> None:
    """Check a user's second factor; each code is good once (a replayed one is refused)."""
    import pyotp

    row = get_user(rt, name)
    if row is None or not row.get("totp_secret"):
        raise Unauthenticated(f"{name} has no second factor enrolled", hint="enrol first: govctl iam enrol")
    step = _totp_step(pyotp.TOTP(row["totp_secret"]), otp or "")
    if step is None:
        raise Unauthenticated("the one-time password is wrong or missing", hint="give the current code from your authenticator (--otp)")
    with rt.engine.begin() as conn:
        won = conn.execute(update(users).where(users.c.name == name, (users.c.totp_last_step.is_(None)) | (users.c.totp_last_step < step))
                           .values(totp_last_step=step)).rowcount  # fmt: skip
    if won != 1:
        raise Unauthenticated("that one-time password was used already", hint="wait for the next code")


def create_token(rt: Context, user: str, *, ttl_days: float = 30, description: str = "") -> tuple[str, str, str]:
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


def revoke_token(rt: Context, token_id: str, *, owner: str | None = None) -> dict[str, Any]:
    """Revoke a token (of ``owner`` when given)."""
    with rt.engine.begin() as conn:
        q = update(tokens).where(tokens.c.id == token_id, tokens.c.revoked.is_(None))
        if owner:
            q = q.where(tokens.c.user == owner)
        n = conn.execute(q.values(revoked=utc_now_iso())).rowcount
    if not n:
        raise NotFound(f"no active token {token_id!r}" + (f" of {owner}" if owner else ""))
    return {"revoked": token_id}


def list_tokens(rt: Context, user: str | None = None) -> list[dict[str, Any]]:
    """Tokens (never their secrets)."""
    q = select(tokens.c.id, tokens.c.user, tokens.c.created, tokens.c.expires, tokens.c.revoked, tokens.c.description)
    if user:
        q = q.where(tokens.c.user == user)
    with rt.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(q.order_by(tokens.c.created))]


_LOOKUP = select(tokens.c.user, tokens.c.secret_sm3, tokens.c.expires, tokens.c.revoked)


def verify_token(rt: Context, presented: str) -> tuple[str, str]:
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


# -- failed authentication: throttling and lockout (GB/T 22239 8.1.4.1 b) --------------------------

FAIL_LIMIT = 5
FAIL_WINDOW_S = 900


def _since(seconds: float) -> str:
    return clock.iso_in(-seconds)


def record_failure(rt: Context, *keys: str) -> None:
    """Count a failed authentication against each key (a token id, a source address, a user's enrolment)."""
    now = utc_now_iso()
    with rt.engine.begin() as conn:
        conn.execute(auth_failures.delete().where(auth_failures.c.ts < _since(FAIL_WINDOW_S * 4)))
        for k in keys:
            conn.execute(auth_failures.insert().values(key=k[:160], ts=now))


def locked_out(rt: Context, *keys: str) -> str | None:
    """The first key with too many recent failures (it stays locked until they age out of the window), or None."""
    from sqlalchemy import func

    since = _since(FAIL_WINDOW_S)
    with rt.engine.connect() as conn:
        for k in keys:
            n = conn.execute(select(func.count()).select_from(auth_failures).where(auth_failures.c.key == k[:160], auth_failures.c.ts >= since)).scalar()
            if n and n >= FAIL_LIMIT:
                return k
    return None


# -- passwords (the console's first factor; TOTP is the second) ---------------------------------------

PASSWORD_MIN = 12
# (user, new password, current TOTP code) for the one iam.password.set request being run in this context
PENDING_PASSWORD: ContextVar[tuple[str, str, str] | None] = ContextVar("govctl_pending_password", default=None)
PASSWORD_HISTORY = 5
_SCRYPT = (2**14, 8, 1)  # n, r, p: 16 MiB and ~50 ms per check on these machines


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    import hashlib

    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=64 * 1024 * 1024, dklen=32)


def hash_password(password: str) -> str:
    """``scrypt$n$r$p$salt$hash`` (base64), a fresh 16-byte salt each time."""
    import base64

    salt = secrets.token_bytes(16)
    n, r, p = _SCRYPT
    enc = base64.b64encode
    return f"scrypt${n}${r}${p}${enc(salt).decode()}${enc(_scrypt(password, salt, n, r, p)).decode()}"


def _matches(stored: str, password: str) -> bool:
    import base64

    try:
        kind, n, r, p, salt, want = stored.split("$")
        if kind != "scrypt":
            return False
        return hmac.compare_digest(_scrypt(password, base64.b64decode(salt), int(n), int(r), int(p)), base64.b64decode(want))
    except (ValueError, TypeError):
        return False


def password_problem(name: str, password: str) -> str | None:
    """What the password policy has against ``password`` (Chinese first), or None."""
    if not isinstance(password, str) or len(password) < PASSWORD_MIN:
        return f"口令至少 {PASSWORD_MIN} 个字符 / a password has at least {PASSWORD_MIN} characters"
    if len(password) > 256:
        return "口令最长 256 个字符 / a password has at most 256 characters"
    classes = sum(bool(re.search(p, password)) for p in (r"[a-z]", r"[A-Z]", r"[0-9]", r"[^a-zA-Z0-9]"))
    if classes < 3:
        return "口令须包含大写字母、小写字母、数字、符号中的至少三类 / use at least three of: lower case, upper case, digits, symbols"
    if name.lower() in password.lower():
        return "口令不能包含用户名 / a password must not contain the user name"
    return None


def set_password(rt: Context, name: str, password: str) -> dict[str, Any]:
    """Set a person's password after the policy (length, character classes, not the name, none of the last five)."""
    row = get_user(rt, name)
    if row is None:
        raise NotFound(f"no user {name!r}")
    problem = password_problem(name, password)
    if problem:
        raise IamError(problem, hint="choose a longer password that mixes character classes")
    history = json.loads(row.get("password_history") or "[]")
    if any(_matches(h, password) for h in history):
        raise IamError(f"不能重复使用最近 {PASSWORD_HISTORY} 次用过的口令 / a password may not repeat one of the last {PASSWORD_HISTORY}",
                       hint="choose a password you have not used here")  # fmt: skip
    new = hash_password(password)
    with rt.engine.begin() as conn:
        conn.execute(update(users).where(users.c.name == name).values(
            password_hash=new, password_history=json.dumps(([new] + history)[:PASSWORD_HISTORY]), password_changed=utc_now_iso()))  # fmt: skip
    return {"user": name, "password_changed": True}


def check_password(rt: Context, name: str, password: str) -> bool:
    """Whether ``password`` is ``name``'s (the same work is done for a name that does not exist, so timing tells nothing)."""
    row = get_user(rt, name) if isinstance(name, str) and USER_NAME.fullmatch(name or "") else None
    stored = (row or {}).get("password_hash") or "scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
    ok = _matches(stored, password if isinstance(password, str) else "")
    return bool(ok and row is not None and row.get("password_hash"))
