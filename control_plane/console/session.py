"""Console sign-in: password + TOTP → a server-side session (cookie holds a random id, the DB only its SM3).

Idle timeout 15 minutes, at most 12 hours in all; a CSRF token per session; failures throttled per
user and per source address (the same lockout as tokens and the bastion); every login, logout and
failure goes to the audit ledger.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import select, update

from control_plane import clock
from control_plane.crypto import sm3_hex
from control_plane.gate import iam
from control_plane.gate.errors import Unauthenticated
from control_plane.gate.models import Principal, console_sessions

if TYPE_CHECKING:
    from control_plane.context import Context

COOKIE = "govctl_session"
IDLE_S = 15 * 60
MAX_S = 12 * 3600
LANGS = ("zh", "en")


@dataclass(frozen=True)
class WebSession:
    """A signed-in person's browser session."""

    id_sm3: str
    user: str
    roles: tuple[str, ...]
    csrf: str
    source: str
    lang: str

    @property
    def principal(self) -> Principal:
        """How the gate sees this person's requests from the console."""
        return Principal(self.user, self.roles, self.source, "console", self.id_sm3[:12])


def _fail(rt: Context, name: str, source: str, why: str) -> Unauthenticated:
    iam.record_failure(rt, f"console:user:{name[:64]}", f"console:ip:{source}")
    rt.gate.record(Principal(name[:64] if iam.USER_NAME.fullmatch(name or "") else "anonymous", (), source, "console"), "console.login",
                   target=name[:64], decision="deny", outcome="refused", details={"error": why})  # fmt: skip
    # one message whatever was wrong: a stranger learns nothing about which names exist or which factor failed
    return Unauthenticated("用户名、口令或动态口令错误 / wrong user name, password or one-time password",
                           hint="check all three; after 5 failures the account and the address are locked for 15 minutes")  # fmt: skip


def login(rt: Context, name: str, password: str, otp: str, *, source: str, lang: str = "zh") -> tuple[str, WebSession]:
    """Check password and TOTP; returns (the cookie value, the session). Refusals are uniform, counted and audited."""
    name = (name or "").strip()
    locked = iam.locked_out(rt, f"console:user:{name[:64]}", f"console:ip:{source}")
    if locked:
        rt.gate.record(Principal("anonymous", (), source, "console"), "console.login", target=name[:64], decision="deny", outcome="refused",
                       details={"error": f"locked out ({locked})"})  # fmt: skip
        raise Unauthenticated("登录失败次数过多，已临时锁定 15 分钟 / too many failed sign-ins: locked for 15 minutes",
                              hint="wait, or ask a security administrator")  # fmt: skip
    if not iam.check_password(rt, name, password):
        raise _fail(rt, name, source, "password")
    row = iam.get_user(rt, name) or {}
    if row.get("disabled"):
        raise _fail(rt, name, source, "disabled")
    try:
        iam.verify_otp(rt, name, otp)
    except Unauthenticated as exc:
        raise _fail(rt, name, source, f"totp: {exc.message}") from None
    cookie = secrets.token_urlsafe(32)
    now = clock.now_iso()
    s = WebSession(sm3_hex(cookie.encode()), name, tuple(row.get("roles") or ()), secrets.token_urlsafe(24), source, lang if lang in LANGS else "zh")
    with rt.engine.begin() as conn:
        conn.execute(console_sessions.insert().values(id_sm3=s.id_sm3, user=name, csrf=s.csrf, source=source, created=now, last_seen=now,
                                                      expires=clock.iso_in(MAX_S), ended=None, lang=s.lang))  # fmt: skip
    rt.gate.record(s.principal, "console.login", target=name, details={"factor": "password+totp", "session": s.id_sm3[:12]})
    return cookie, s


def lookup(rt: Context, cookie: str | None, *, source: str) -> WebSession:
    """The live session a cookie names (its idle clock restarted), or Unauthenticated."""
    if not cookie or len(cookie) > 100:
        raise Unauthenticated("请先登录 / please sign in")
    key = sm3_hex(cookie.encode())
    with rt.engine.connect() as conn:
        row = conn.execute(select(console_sessions).where(console_sessions.c.id_sm3 == key)).first()
    now = clock.now_iso()
    if row is None or row.ended:
        raise Unauthenticated("会话已结束，请重新登录 / your session ended; please sign in again")
    if row.expires <= now or row.last_seen <= clock.iso_in(-IDLE_S):
        end(rt, key, "idle timeout" if row.expires > now else "maximum length")
        raise Unauthenticated("会话已超时，请重新登录 / your session timed out; please sign in again")
    person = iam.get_user(rt, row.user)
    if person is None or person.get("disabled"):
        end(rt, key, "user disabled")
        raise Unauthenticated("账号已停用 / your account is disabled")
    if row.last_seen <= clock.iso_in(-30):  # the idle clock needs no write on every request: once in 30 s is exact enough
        with rt.engine.begin() as conn:
            conn.execute(update(console_sessions).where(console_sessions.c.id_sm3 == key).values(last_seen=now))
    return WebSession(key, row.user, tuple(person.get("roles") or ()), row.csrf, source, row.lang)


def check_csrf(s: WebSession, presented: str | None) -> None:
    """A state-changing request carries the session's CSRF token (form field or X-CSRF-Token header)."""
    if not presented or not hmac.compare_digest(presented, s.csrf):
        raise Unauthenticated("表单已失效，请刷新页面后重试 / the form is stale or forged (CSRF token missing or wrong); reload the page and retry")


def end(rt: Context, id_sm3: str, reason: str, *, principal: Principal | None = None) -> None:
    """End a session (logout, timeout); audited when a person did it."""
    with rt.engine.begin() as conn:
        conn.execute(update(console_sessions).where(console_sessions.c.id_sm3 == id_sm3, console_sessions.c.ended.is_(None))
                     .values(ended=clock.now_iso()))  # fmt: skip
    if principal is not None:
        rt.gate.record(principal, "console.logout", target=principal.name, details={"reason": reason, "session": id_sm3[:12]})


def set_lang(rt: Context, id_sm3: str, lang: str) -> None:
    """Switch the session's language (zh or en)."""
    if lang in LANGS:
        with rt.engine.begin() as conn:
            conn.execute(update(console_sessions).where(console_sessions.c.id_sm3 == id_sm3).values(lang=lang))
