"""What every console page shares: the signed-in person, access marks, CSRF, templates, Chinese formatting.

``Depends(page_reads("soc.read"))`` signs the person in from the session cookie and asks the gate's
``authorize_read`` (the same question the CLI and the API ask); ``Depends(page_changes())`` also
checks the form's CSRF token; the operation itself is authorized by the gate when submitted.
``tests/test_access_map.py`` checks every page carries one of these marks.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import Depends, Request
from fastapi.templating import Jinja2Templates
from markupsafe import Markup

from control_plane.apikit import Access, context
from control_plane.console import session as sessions
from control_plane.console.session import WebSession

HERE = Path(__file__).parent
CN = ZoneInfo("Asia/Shanghai")
templates = Jinja2Templates(directory=str(HERE / "templates"))  # autoescaping on for .html


def source_of(request: Request) -> str:
    """The peer address (uvicorn has already applied X-Forwarded-For from trusted proxies only)."""
    return request.client.host if request.client else "unknown"


def web_session(request: Request) -> WebSession:
    """The signed-in person, or Unauthenticated (a page handler turns that into the sign-in page)."""
    cached = getattr(request.state, "web_session", None)
    if cached is not None:
        return cached
    s = sessions.lookup(context(request), request.cookies.get(sessions.COOKIE), source=source_of(request))
    request.state.web_session = s
    return s


class PageAccess(Access):
    """A page's mark: the session cookie's person, authorized like any API caller; changes also need the CSRF token."""

    async def __call__(self, request: Request, s: WebSession = Depends(web_session)) -> Any:  # type: ignore[override]
        """The session, once allowed."""
        if self.kind == "reads":
            context(request).gate.authorize_read(s.principal, self.name)
        elif self.kind in ("changes", "decides", "session"):
            presented = request.headers.get("x-csrf-token")
            if presented is None and request.headers.get("content-type", "").startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
                presented = (await request.form()).get("csrf")  # type: ignore[assignment]
            sessions.check_csrf(s, presented if isinstance(presented, str) else None)
        return s


def page_reads(name: str) -> PageAccess:
    """A page that is the policy's read ``name``."""
    return PageAccess("reads", name)


def page_changes(operation: str = "*") -> PageAccess:
    """A form that submits an operation; the gate authorizes it."""
    return PageAccess("changes", operation)


def page_session(reason: str) -> PageAccess:
    """A form about the person's own session (sign out, language): signed in and CSRF-checked, no operation."""
    return PageAccess("session", reason)


def page_decides(action: str) -> PageAccess:
    """A form that decides on an operation (approve, reject, cancel, run)."""
    return PageAccess("decides", action)


# -- what a page may show ----------------------------------------------------------------------------

NAV = (  # (path, 中文, English, the read it needs)
    ("/", "总览", "Overview", "ops.read"),
    ("/alerts", "告警", "Alerts", "soc.read"),
    ("/events", "事件检索", "Events", "soc.read"),
    ("/approvals", "审批", "Approvals", "ops.read"),
    ("/sessions", "会话", "Sessions", "bastion.read"),
    ("/audit", "审计", "Audit", "audit.read"),
    ("/pools", "资源池", "Pools", "deploy.read"),
    ("/dr", "灾备", "DR", "dr.read"),
    ("/resources", "部门资源", "Resources", "resource.read"),
    ("/reports", "报告", "Reports", "report.read"),
    ("/jobs", "作业", "Jobs", "jobs.read"),
    ("/users", "用户与权限", "Users", "iam.read"),
    ("/notifications", "通知", "Notifications", "notify.read"),
)


def next_page(policy: Any, roles: tuple[str, ...]) -> str:
    """The first page of the menu a person's roles may read (where someone who may not see the overview starts)."""
    return next((p for p, _zh, _en, read in NAV if roles_may_read(policy, roles, read)), "/account")


def roles_may_read(policy: Any, roles: tuple[str, ...], read: str) -> bool:
    """Whether ``roles`` are admitted to ``read`` (no audit record: this only decides what to show)."""
    rd = policy.reads.get(read)
    return rd is not None and bool(set(roles) & set(rd.roles))


def may_read(request: Request, s: WebSession, read: str) -> bool:
    """Whether the signed-in person may ``read``."""
    return roles_may_read(context(request).gate.policy, s.roles, read)


def may_change(request: Request, s: WebSession, operation: str) -> bool:
    """Whether the person's roles may request ``operation`` at all (buttons are shown only then)."""
    op = context(request).gate.policy.operations.get(operation)
    return op is not None and bool(set(s.roles) & set(op.roles))


def cn_time(value: Any, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    """An ISO time (UTC) as Asia/Shanghai wall time."""
    if not value:
        return "—"
    try:
        dt = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return str(value)
    if dt.tzinfo is None:
        from datetime import timezone

        dt = dt.replace(tzinfo=timezone.utc)
    return dt.astimezone(CN).strftime(fmt)


def cn_date(value: Any) -> str:
    """A date the Chinese way: 2026年12月4日."""
    s = cn_time(value, "%Y-%m-%d")
    if s == "—" or len(s) != 10:
        return s
    y, m, d = s.split("-")
    return f"{y}年{int(m)}月{int(d)}日"


def cn_num(value: Any, digits: int = 0) -> str:
    """A number with thousands grouping (as Chinese finance and statistics print them)."""
    try:
        return f"{float(value):,.{digits}f}" if digits else f"{int(value):,}"
    except (TypeError, ValueError):
        return "—" if value is None else str(value)


def as_json(value: Any) -> Markup:
    """Data for a page's script, in a <script type="application/json"> block (never executed; '<' escaped)."""
    return Markup(json.dumps(value, ensure_ascii=False, default=str).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"))


SEVERITY_ZH = {"critical": "严重", "high": "高", "medium": "中", "low": "低", "informational": "信息"}
STATUS_ZH = {"open": "待处理", "acknowledged": "已确认", "closed": "已关闭", "pending_approval": "待审批", "approved": "已批准",
             "rejected": "已驳回", "cancelled": "已撤回", "expired": "已过期", "succeeded": "成功", "failed": "失败", "running": "执行中",
             "refused": "已拒绝", "accepted": "已受理", "pending": "报送中", "delivered": "已报送（有回执）", "true_positive": "真实攻击", "false_positive": "误报", "benign": "良性"}  # fmt: skip
RISK_ZH = {"low": "低", "high": "高", "critical": "严重"}


def render(request: Request, template: str, status_code: int = 200, **data: Any) -> Any:
    """A page in the person's language, with the menu their roles may read."""
    s: WebSession | None = getattr(request.state, "web_session", None)
    lang = s.lang if s else request.cookies.get("govctl_lang", "zh")
    lang = lang if lang in sessions.LANGS else "zh"

    def t(zh: str, en: str) -> str:
        return zh if lang == "zh" else en

    def label(mapping: dict[str, str], key: Any) -> str:
        return mapping.get(str(key), str(key)) if lang == "zh" else str(key)

    nav = [(p, t(zh, en)) for p, zh, en, read in NAV if s is not None and may_read(request, s, read)]
    ctx = {"request": request, "s": s, "t": t, "lang": lang, "nav": nav, "path": request.url.path, "cn_time": cn_time, "cn_date": cn_date,
           "cn_num": cn_num, "as_json": as_json, "sev": lambda v: label(SEVERITY_ZH, v), "st": lambda v: label(STATUS_ZH, v),
           "risk": lambda v: label(RISK_ZH, v), "may_change": (lambda op: may_change(request, s, op)) if s else (lambda op: False),
           "may_read": (lambda r: may_read(request, s, r)) if s else (lambda r: False), **data}  # fmt: skip
    import urllib.parse

    raw = request.cookies.get("govctl_flash")
    ctx["flash"] = urllib.parse.unquote(raw)[:500] if raw else None
    resp = templates.TemplateResponse(request, template, ctx, status_code=status_code)
    if raw:
        resp.delete_cookie("govctl_flash", path="/")
    return resp


def error_page(request: Request, exc: Any) -> Any:
    """A refused or failed console request: the sign-in page when not signed in, else what was wrong and what to do."""
    from fastapi.responses import RedirectResponse

    from control_plane.gate.errors import Forbidden, Unauthenticated

    if isinstance(exc, Unauthenticated) and request.url.path not in ("/login",):
        import urllib.parse

        if request.method == "GET":
            return RedirectResponse("/login?next=" + urllib.parse.quote(request.url.path), status_code=303)
    title = {True: ("无权访问", "Not allowed")}.get(isinstance(exc, Forbidden), ("未完成", "Not done"))
    ref = request.headers.get("referer", "")
    host = request.headers.get("host", "")
    back_to = None
    for scheme in ("http://", "https://"):
        if host and ref.startswith(f"{scheme}{host}/"):
            back_to = ref[len(scheme) + len(host):]
    lang = getattr(getattr(request.state, "web_session", None), "lang", "zh")
    return render(request, "error.html", status_code=exc.http_status, title=title[0] if lang == "zh" else title[1], message=exc.message,
                  hint=exc.hint, back_to=back_to)  # fmt: skip
