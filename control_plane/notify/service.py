"""Finding what people must hear about, and delivering it: e-mail through SMTP, a webhook, escalation.

A message's id is derived from what it is about (``alert:<id>``, ``approval:<op>``…), so a thing
is announced once however often the scan runs. Deliveries are recorded on the message and in the
audit ledger; a failed delivery is kept and retried by the next scan, never lost.
"""

from __future__ import annotations

import json
import logging
import smtplib
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from email.message import EmailMessage
from typing import TYPE_CHECKING, Any

import httpx
from sqlalchemy import select, update

from control_plane import clock
from control_plane.errors import GovctlError
from control_plane.notify.models import messages, subscriptions
from control_plane.operation import system_principal

if TYPE_CHECKING:
    from control_plane.context import Context

log = logging.getLogger("govctl.notify")
KINDS = {  # kind → (中文, English), what may be subscribed to
    "alert": ("高危告警", "high or critical alert"),
    "approval": ("待审批", "waiting for approval"),
    "break_glass": ("紧急授权使用", "break-glass used"),
    "rpo": ("RPO 超标", "RPO breached"),
    "job": ("作业失败", "job failed"),
    "delivery": ("报送失败", "report delivery failing"),
    "escalation": ("升级通知", "escalation"),
    "expiry": ("资源即将到期", "a department's temporary host expires soon"),
}
ESCALATING = ("alert", "approval", "break_glass")
EMAIL = r"^[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9.-]{1,190}\.[A-Za-z]{2,24}$"


class NotifyError(GovctlError):
    """A subscription or delivery the notification rules refuse."""

    http_status = 400


@dataclass
class Message:
    """Something to tell people."""

    id: str
    kind: str
    subject: str
    body: str
    ref: str  # the console path it is about


# -- subscriptions --------------------------------------------------------------------------------


def set_subscription(ctx: Context, user: str, kinds: list[str], email: str) -> dict[str, Any]:
    """A person's kinds and e-mail address."""
    import re

    bad = [k for k in kinds if k not in KINDS]
    if bad:
        raise NotifyError(f"unknown notification kind {bad[0]!r}", hint=f"kinds: {', '.join(KINDS)}")
    if email and not re.fullmatch(EMAIL, email):
        raise NotifyError(f"{email!r} is not an e-mail address", hint="name@department.gov.cn")
    row = {"user": user, "kinds": json.dumps(sorted(set(kinds))), "email": email, "updated": clock.now_iso()}
    with ctx.engine.begin() as c:
        if c.execute(select(subscriptions.c.user).where(subscriptions.c.user == user)).first():
            c.execute(update(subscriptions).where(subscriptions.c.user == user).values(**row))
        else:
            c.execute(subscriptions.insert().values(**row))
    return {"user": user, "kinds": sorted(set(kinds)), "email": email}


def subscription(ctx: Context, user: str) -> dict[str, Any]:
    """A person's subscription (empty when none)."""
    with ctx.engine.connect() as c:
        r = c.execute(select(subscriptions).where(subscriptions.c.user == user)).first()
    return {"user": user, "kinds": json.loads(r.kinds), "email": r.email} if r else {"user": user, "kinds": [], "email": ""}


def _subscribers(ctx: Context, kind: str) -> list[tuple[str, str]]:
    from control_plane.gate import iam

    with ctx.engine.connect() as c:
        rows = c.execute(select(subscriptions)).all()
    out = []
    for r in rows:
        person = iam.get_user(ctx, r.user)
        if person and not person.get("disabled") and r.email and kind in json.loads(r.kinds):
            out.append((r.user, r.email))
    return out


# -- channels -------------------------------------------------------------------------------------


def _link(ctx: Context, ref: str) -> str:
    base = ctx.settings.notify.console_url or ctx.settings.api.url
    return f"{base.rstrip('/')}{ref}"


def webhook_body(ctx: Context, m: Message, *, escalation_to: list[str] | None = None) -> dict[str, Any]:
    """The webhook's body in the configured format."""
    fmt = ctx.settings.notify.webhook.format
    zh, en = KINDS[m.kind]
    link = _link(ctx, m.ref)
    if fmt == "generic":
        return {"source": "govctl", "id": m.id, "kind": m.kind, "kind_zh": zh, "subject": m.subject, "body": m.body, "link": link,
                "escalated_to": escalation_to or [], "at": clock.now_iso()}  # fmt: skip
    # work-chat bots: markdown. Values come from logs and requests: markdown's link and emphasis characters are escaped.
    def esc(text: str) -> str:
        return "".join("\\" + ch if ch in "\\`*_[]()#<>|!" else ch for ch in text)

    md = f"### 【{zh}】{esc(m.subject)}\n> {esc(m.body)}\n\n[在控制台查看 / open in the console]({link})"
    if escalation_to:
        md += f"\n\n升级：{'、'.join(esc(u) for u in escalation_to)}"
    if fmt == "wecom":
        return {"msgtype": "markdown", "markdown": {"content": md}}
    return {"msgtype": "markdown", "markdown": {"title": f"【{zh}】{m.subject}"[:64], "text": md}}


def send_webhook(ctx: Context, body: dict[str, Any]) -> str:
    """POST the body; ``ok`` or the error."""
    w = ctx.settings.notify.webhook
    try:
        r = httpx.post(w.url or "", json=body, timeout=w.timeout_s)
        return "ok" if r.status_code < 300 else f"HTTP {r.status_code}"
    except httpx.HTTPError as exc:
        return f"{type(exc).__name__}: {exc}"[:300]


def send_email(ctx: Context, to: list[str], m: Message, *, prefix: str = "") -> str:
    """One mail to the given addresses; ``ok`` or the error."""
    cfg = ctx.settings.notify.smtp
    msg = EmailMessage()
    zh, en = KINDS[m.kind]
    # header values: no line breaks can come through (a subject from a log line must not add headers)
    msg["Subject"] = f"{prefix}[govctl {zh}] {m.subject}".replace("\r", " ").replace("\n", " ")[:200]
    msg["From"] = cfg.sender
    msg["To"] = ", ".join(to)
    msg.set_content(f"{m.body}\n\n{_link(ctx, m.ref)}\n\n—— 政务云运维管控平台 / govctl ({en})\n")
    try:
        with smtplib.SMTP(cfg.host or "", cfg.port, timeout=cfg.timeout_s) as s:
            if cfg.starttls:
                s.starttls()
            s.send_message(msg)
        return "ok"
    except (OSError, smtplib.SMTPException) as exc:
        return f"{type(exc).__name__}: {exc}"[:300]


# -- messages -------------------------------------------------------------------------------------


def _deliver(ctx: Context, m: Message, done: dict[str, str], *, escalation: list[tuple[str, str]] | None = None) -> dict[str, str]:
    """Send over every channel not yet done (``done`` maps channel → ``ok`` or the last error)."""
    cfg = ctx.settings.notify
    out = dict(done)
    if escalation is not None:
        if cfg.smtp.host and escalation:
            out["escalation:email"] = send_email(ctx, [e for _, e in escalation], m, prefix="【升级 escalated】")
        if cfg.webhook.url:
            out["escalation:webhook"] = send_webhook(ctx, webhook_body(ctx, m, escalation_to=[u for u, _ in escalation]))
        return out
    if cfg.smtp.host and out.get("email") != "ok":
        to = [e for _, e in _subscribers(ctx, m.kind)]
        if to:
            out["email"] = send_email(ctx, to, m)
    if cfg.webhook.url and out.get("webhook") != "ok":
        out["webhook"] = send_webhook(ctx, webhook_body(ctx, m))
    return out


def post(ctx: Context, m: Message) -> bool:
    """Record a message once and deliver it; False when it was known already."""
    with ctx.engine.begin() as c:
        if c.execute(select(messages.c.id).where(messages.c.id == m.id)).first():
            return False
        c.execute(messages.insert().values(id=m.id, kind=m.kind, subject=m.subject[:500], body=m.body[:4000], ref=m.ref[:128], created=clock.now_iso(),
                                           acked=None, acked_by=None, escalated=None, deliveries="{}"))  # fmt: skip
    d = _deliver(ctx, m, {})
    _save(ctx, m.id, deliveries=json.dumps(d))
    ctx.gate.record(system_principal("system:scheduler"), "notify.deliver", target=m.id, details={"kind": m.kind, "deliveries": d})
    return True


def _save(ctx: Context, mid: str, **vals: Any) -> None:
    with ctx.engine.begin() as c:
        c.execute(update(messages).where(messages.c.id == mid).values(**vals))


def ack(ctx: Context, mid: str, by: str) -> dict[str, Any]:
    """Someone has seen it: no escalation."""
    with ctx.engine.begin() as c:
        n = c.execute(update(messages).where(messages.c.id == mid, messages.c.acked.is_(None)).values(acked=clock.now_iso(), acked_by=by)).rowcount
    if not n:
        raise NotifyError(f"no unacknowledged message {mid!r}", hint="see the 通知 list on the console")
    return {"id": mid, "acked_by": by}


def recent(ctx: Context, limit: int = 100) -> list[dict[str, Any]]:
    """Messages, newest first."""
    with ctx.engine.connect() as c:
        rows = c.execute(select(messages).order_by(messages.c.created.desc()).limit(limit)).all()
    return [{**dict(r._mapping), "deliveries": json.loads(r.deliveries or "{}")} for r in rows]


# -- what to announce ------------------------------------------------------------------------------


def _found(ctx: Context) -> list[Message]:
    """Everything there is to announce now (known ones are skipped by id)."""
    out: list[Message] = []
    try:
        from control_plane.soc import alerts

        since = (datetime.now(timezone.utc) - timedelta(days=2)).isoformat()
        for a in alerts.search(ctx.es, status="open", since=since, limit=200):
            if a.get("severity") in ("high", "critical"):
                title = (a.get("rule") or {}).get("title") or (a.get("rule") or {}).get("id", "?")
                out.append(Message(f"alert:{a['id']}", "alert" if not a["id"].startswith(alerts.BREAK_GLASS_PREFIX) else "break_glass",
                                   f"{'严重' if a['severity'] == 'critical' else '高危'}告警：{title}", str(a.get("summary") or "")[:1000], f"/alerts/{a['id']}"))  # fmt: skip
    except Exception as exc:  # noqa: BLE001 - Elasticsearch down: the rest is still announced
        log.warning("notify: alerts unavailable: %s", exc)
    for v in ctx.gate.list(status="pending_approval", limit=200):
        out.append(Message(f"approval:{v.id}", "approval", f"待审批：{v.operation} {v.target}（{v.requester}）",
                           f"风险 {v.risk}，需要 {v.approvals_needed} 名审批人。理由：{v.reason}", f"/approvals/{v.id}"))  # fmt: skip
    for v in ctx.gate.list(limit=200):
        if v.break_glass:
            out.append(Message(f"break_glass:{v.id}", "break_glass", f"紧急授权：{v.requester} 执行 {v.operation} {v.target}",
                               f"理由：{v.reason}。须由安全管理员复核。", f"/approvals/{v.id}"))  # fmt: skip
    try:
        from dr.service import rpo_status

        hour = clock.now_iso()[:13]
        for r in rpo_status(ctx):
            if not r["ok"]:
                out.append(Message(f"rpo:{r['source']}:{hour}", "rpo", f"RPO 超标：{r['source']}",
                                   f"最新恢复点 {r['newest'] or '无'}，已 {r['age_s']} 秒，目标 {r['rpo_s']} 秒。", "/dr"))  # fmt: skip
    except Exception as exc:  # noqa: BLE001 - no repository yet, or it is unreachable
        log.info("notify: rpo unavailable: %s", exc)
    from control_plane.scheduler import recent_runs

    for r in recent_runs(ctx, None, 50):
        if r["status"] == "failed" and not r["job_id"].startswith("notify."):
            out.append(Message(f"job:{r['run_key']}"[:80], "job", f"作业失败：{r['job_id']}", str(r.get("detail") or "")[:1000], "/jobs"))
    try:
        from datetime import date

        from control_plane.tenancy import service as tenancy

        soon = (date.today() + timedelta(days=7)).isoformat()
        for a in tenancy.listing(ctx):
            if a["expires"] and a["expires"] <= soon:
                out.append(Message(f"expiry:{a['id']}:{a['expires']}", "expiry", f"资源即将到期：{a['department']} {a['host']}（{a['expires']}）",
                                   f"到期后将自动提交回收申请。需要继续使用请申请延期：govctl resource extend {a['id']} --expires YYYY-MM-DD。", "/resources"))  # fmt: skip
    except Exception as exc:  # noqa: BLE001 - no stack deployed yet
        log.info("notify: allocations unavailable: %s", exc)
    from control_plane.report import deliver

    for d in deliver.list_deliveries(ctx):
        if d["status"] == "rejected" or (d["status"] == "pending" and int(d.get("attempts") or 0) >= 3):
            out.append(Message(f"delivery:{d['key']}:{d['status']}:{min(int(d.get('attempts') or 0), 3)}"[:80], "delivery",
                               f"报送失败：{d['month']} r{d['revision']}", f"{d.get('last_error') or ''}", f"/reports/{d['month']}/{d['revision']}"))  # fmt: skip
    return out


def _settled(ctx: Context, m: dict[str, Any]) -> bool:
    """Whether what a message is about was handled (an alert acknowledged or closed, a request decided): that is an acknowledgement."""
    kind, _, ref = m["id"].partition(":")
    try:
        if kind in ("alert", "break_glass") and m["ref"].startswith("/alerts/"):
            from control_plane.soc import alerts

            return alerts.get(ctx.es, ref).get("status") != "open"
        if kind == "approval":
            return ctx.gate.get(ref).status != "pending_approval"
    except Exception:  # noqa: BLE001 - gone or unreachable: not settled
        return False
    return False


def scan(ctx: Context) -> dict[str, int]:
    """Announce what is new, retry failed deliveries, settle what was handled, escalate what nobody acknowledged."""
    new = sum(post(ctx, m) for m in _found(ctx))
    retried = escalated = settled = 0
    cfg = ctx.settings.notify
    cutoff = clock.iso_in(-cfg.escalate_after_min * 60)
    for m in recent(ctx, 500):
        if m["acked"]:
            continue
        if any(v != "ok" for k, v in m["deliveries"].items() if not k.startswith("escalation")):
            msg = Message(m["id"], m["kind"], m["subject"], m["body"], m["ref"])
            _save(ctx, m["id"], deliveries=json.dumps(_deliver(ctx, msg, m["deliveries"])))
            retried += 1
        if m["kind"] in ESCALATING and _settled(ctx, m):
            _save(ctx, m["id"], acked=clock.now_iso(), acked_by="(handled)")
            settled += 1
            continue
        if m["kind"] in ESCALATING and not m["escalated"] and m["created"] <= cutoff and cfg.escalate_to:
            from control_plane.gate import iam

            people = [(u, subscription(ctx, u)["email"]) for u in cfg.escalate_to if iam.get_user(ctx, u)]
            msg = Message(m["id"], m["kind"], m["subject"], m["body"], m["ref"])
            d = _deliver(ctx, msg, m["deliveries"], escalation=[(u, e) for u, e in people if e] or [(u, "") for u, _ in people])
            _save(ctx, m["id"], escalated=clock.now_iso(), deliveries=json.dumps(d))
            ctx.gate.record(system_principal("system:scheduler"), "notify.escalate", target=m["id"], details={"to": [u for u, _ in people], "deliveries": d})
            escalated += 1
    return {"new": new, "retried": retried, "settled": settled, "escalated": escalated}
