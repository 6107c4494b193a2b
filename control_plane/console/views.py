"""The console's pages. Reads are the policy's reads; every button submits the same gated operation the CLI and API do."""

from __future__ import annotations

import json
import urllib.parse
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import FileResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from control_plane.apikit import Access, context
from control_plane.console import session as sessions
from control_plane.console.session import WebSession
from control_plane.console.web import HERE, next_page, page_changes, page_decides, page_reads, page_session, render, roles_may_read, source_of
from control_plane.errors import GovctlError
from control_plane.gate import OperationRequest

router = APIRouter(include_in_schema=False)
ASSETS = HERE / "assets" / "node_modules"
# what the pages load, each from its npm package (installed by `make` with `npm ci`), served from here
VENDOR = {
    "htmx.min.js": "htmx.org/dist/htmx.min.js",
    "echarts.min.js": "echarts/dist/echarts.min.js",
    "asciinema-player.min.js": "asciinema-player/dist/bundle/asciinema-player.min.js",
    "asciinema-player.css": "asciinema-player/dist/bundle/asciinema-player.css",
    "xterm.js": "@xterm/xterm/lib/xterm.js",
    "xterm.css": "@xterm/xterm/css/xterm.css",
    "addon-fit.js": "@xterm/addon-fit/lib/addon-fit.js",
}


def public(reason: str) -> Access:
    """A page anyone may load (the sign-in page, static files): the reason is checked by tests/test_access_map.py."""

    class _Public(Access):
        def __call__(self) -> None:  # type: ignore[override]
            return None

    return _Public("public", reason)


def flash(response: Response, text: str) -> Response:
    """A one-line message shown on the next page."""
    response.set_cookie("govctl_flash", urllib.parse.quote(text[:500]), max_age=60, httponly=True, samesite="strict", path="/")
    return response


def back(to: str, text: str) -> Response:
    """Redirect after a form (303: the browser GETs the page), with a message."""
    return flash(RedirectResponse(to, status_code=303), text)


def op_message(view: Any) -> str:
    """What became of a submitted operation, in words."""
    from control_plane.console.web import RISK_ZH, STATUS_ZH

    state = STATUS_ZH.get(view.status, view.status)
    if view.status == "pending_approval":
        return f"{view.operation} 已提交（{view.id}，风险{RISK_ZH.get(view.risk, view.risk)}），等待 {view.approvals_needed} 名审批人批准"
    return f"{view.operation}（{view.id}）：{state}"


def submit(request: Request, s: WebSession, operation: str, target: str, params: dict[str, Any], reason: str = "") -> Any:
    """The gate's submit, as this person from this address."""
    return context(request).gate.submit(s.principal, OperationRequest(operation, target, params, reason))


# -- static --------------------------------------------------------------------------------------------


@router.get("/static/vendor/{name}")
def vendor(name: str, _: None = Depends(public("browser assets from the npm packages make installs; no data"))) -> Response:
    rel = VENDOR.get(name)
    if rel is None or not (ASSETS / rel).is_file():
        return Response("not found (run make to install the console's assets)", status_code=404, media_type="text/plain")
    return FileResponse(ASSETS / rel, headers={"Cache-Control": "public, max-age=86400"})


def mount_static(app: Any) -> None:
    """Our own CSS and JS."""
    app.mount("/static/console", StaticFiles(directory=str(HERE / "static")), name="console-static")


# -- sign in / out -------------------------------------------------------------------------------------


@router.get("/login")
def login_page(request: Request, next: str = "/", _: None = Depends(public("the sign-in form; it shows nothing but the form"))) -> Response:
    return render(request, "login.html", next=_safe_next(next), error=None)


def _safe_next(target: str) -> str:
    """Only a path on this site (an open redirect would hand the session to another)."""
    return target if target.startswith("/") and not target.startswith("//") and "\\" not in target else "/"


@router.post("/login")
def login_submit(request: Request, username: str = Form(""), password: str = Form(""), otp: str = Form(""), next: str = Form("/"),
                 lang: str = Form("zh"), _: None = Depends(public("checks password and TOTP; throttled and audited"))) -> Response:  # fmt: skip
    ctx = context(request)
    try:
        cookie, _s = sessions.login(ctx, username, password, otp.strip(), source=source_of(request), lang=lang)
    except GovctlError as exc:
        return render(request, "login.html", status_code=401, next=_safe_next(next), error=exc.message, username=username[:64])
    to = _safe_next(next)
    if to == "/" and not roles_may_read(ctx.gate.policy, _s.roles, "ops.read"):  # a 部门管理员 starts on their department's page
        to = next_page(ctx.gate.policy, _s.roles)
    resp = RedirectResponse(to, status_code=303)
    resp.set_cookie(sessions.COOKIE, cookie, httponly=True, samesite="strict", secure=request.url.scheme == "https", path="/")
    return resp


@router.post("/logout")
def logout(request: Request, s: WebSession = Depends(page_session("ends the person's own session; CSRF checked; audited"))) -> Response:
    sessions.end(context(request), s.id_sm3, "logout", principal=s.principal)
    resp = RedirectResponse("/login", status_code=303)
    resp.delete_cookie(sessions.COOKIE, path="/")
    return resp


@router.post("/lang")
def switch_lang(request: Request, lang: str = Form("zh"), next: str = Form("/"), s: WebSession = Depends(page_session("the person's own display language; CSRF checked"))) -> Response:
    sessions.set_lang(context(request), s.id_sm3, lang)
    return RedirectResponse(_safe_next(next), status_code=303)


# -- 总览 overview ---------------------------------------------------------------------------------------


@router.get("/")
def overview(request: Request, s: WebSession = Depends(page_reads("ops.read"))) -> Response:
    from control_plane.console import overview as ov

    return render(request, "overview.html", o=ov.gather(context(request), s))


# -- 告警 alerts -----------------------------------------------------------------------------------------


@router.get("/alerts")
def alerts_page(request: Request, status: str = "", severity: str = "", rule: str = "", group: str = "", limit: int = Query(200, ge=1, le=1000),
                s: WebSession = Depends(page_reads("soc.read"))) -> Response:  # fmt: skip
    from control_plane.console import queries

    data = queries.alert_queue(context(request), status=status or None, severity=severity or None, rule=rule or None, limit=limit)
    return render(request, "alerts.html", q=data, f={"status": status, "severity": severity, "rule": rule, "group": group})


@router.get("/alerts/{alert_id}")
def alert_page(request: Request, alert_id: str, s: WebSession = Depends(page_reads("soc.read"))) -> Response:
    from control_plane.soc import alerts

    a = alerts.get(context(request).es, alert_id)
    return render(request, "alert.html", a=a, verdicts=alerts.VERDICTS)


@router.post("/alerts/{alert_id}/update")
def alert_update(request: Request, alert_id: str, action: str = Form(...), assignee: str = Form(""), verdict: str = Form(""), text: str = Form(""),
                 s: WebSession = Depends(page_changes("soc.alert.update"))) -> Response:  # fmt: skip
    params: dict[str, Any] = {"action": action}
    if assignee:
        params["assignee"] = assignee.strip()
    if verdict:
        params["verdict"] = verdict
    if text.strip():
        params["text"] = text.strip()
    view = submit(request, s, "soc.alert.update", alert_id, params)
    return back(f"/alerts/{urllib.parse.quote(alert_id)}", op_message(view))


@router.post("/alerts/{alert_id}/exception")
def alert_exception(request: Request, alert_id: str, field: str = Form(...), value: str = Form(...), reason: str = Form(...),
                    days: float = Form(30), s: WebSession = Depends(page_changes("soc.exception.change"))) -> Response:  # fmt: skip
    from control_plane.soc import alerts

    a = alerts.get(context(request).es, alert_id)
    view = submit(request, s, "soc.exception.change", a["rule"]["id"], {"action": "add", "match": {field: value}, "reason": reason, "days": days},
                  reason=reason)  # fmt: skip
    return back(f"/alerts/{urllib.parse.quote(alert_id)}", op_message(view))


# -- 事件检索 events -------------------------------------------------------------------------------------


@router.get("/events")
def events_page(request: Request, q: str = "", since: str = "24h", field: list[str] = Query(default=[]), size: int = Query(50, ge=1, le=500),
                s: WebSession = Depends(page_reads("soc.read"))) -> Response:  # fmt: skip
    from control_plane.console import queries

    res = queries.event_search(context(request), q, since, field, size)
    return render(request, "events.html", r=res, q=q, since=since, fields=field)


@router.get("/events/{index}/{doc_id}")
def event_doc(request: Request, index: str, doc_id: str, s: WebSession = Depends(page_reads("soc.read"))) -> Response:
    from control_plane.console import queries

    return render(request, "event.html", d=queries.event_doc(context(request), index, doc_id))


# -- 审批 approvals --------------------------------------------------------------------------------------


@router.get("/approvals")
def approvals_page(request: Request, s: WebSession = Depends(page_reads("ops.read"))) -> Response:
    gate = context(request).gate
    pending = gate.list(status="pending_approval", limit=200)
    mine = [v for v in gate.list(limit=500) if v.requester == s.user][:50]
    recent = [v for v in gate.list(limit=100) if v.status != "pending_approval"][:30]
    return render(request, "approvals.html", pending=pending, mine=mine, recent=recent)


@router.get("/approvals/{op_id}")
def approval_page(request: Request, op_id: str, s: WebSession = Depends(page_reads("ops.read"))) -> Response:
    view = context(request).gate.get(op_id, opened_by=s.principal)
    return render(request, "approval.html", v=view, preview=json.dumps(view.preview, ensure_ascii=False, indent=2, default=str) if view.preview else "")


@router.post("/approvals/{op_id}/approve")
def approve(request: Request, op_id: str, comment: str = Form(""), otp: str = Form(""), s: WebSession = Depends(page_decides("approve"))) -> Response:
    view = context(request).gate.approve(s.principal, op_id, comment, otp=otp.strip())
    return back(f"/approvals/{op_id}", f"已批准 {op_id}（{len([a for a in view.approvals if a['decision'] == 'approve'])}/{view.approvals_needed}）")


@router.post("/approvals/{op_id}/reject")
def reject(request: Request, op_id: str, comment: str = Form(""), otp: str = Form(""), s: WebSession = Depends(page_decides("reject"))) -> Response:
    context(request).gate.approve(s.principal, op_id, comment, decision="reject", otp=otp.strip())
    return back(f"/approvals/{op_id}", f"已驳回 {op_id}")


@router.post("/approvals/{op_id}/run")
def run_op(request: Request, op_id: str, s: WebSession = Depends(page_decides("run"))) -> Response:
    view = context(request).gate.run(s.principal, op_id)
    if view.secret:
        resp = render(request, "secret.html", v=view, message=op_message(view))
        resp.headers["Cache-Control"] = "no-store"
        return resp
    return back(f"/approvals/{op_id}", op_message(view))


@router.post("/approvals/{op_id}/cancel")
def cancel_op(request: Request, op_id: str, s: WebSession = Depends(page_decides("cancel"))) -> Response:
    context(request).gate.cancel(s.principal, op_id)
    return back(f"/approvals/{op_id}", f"已撤回 {op_id}")


@router.post("/requests")
def new_request(request: Request, operation: str = Form(...), target: str = Form(""), params: str = Form("{}"), reason: str = Form(""),
                s: WebSession = Depends(page_changes("*"))) -> Response:  # fmt: skip
    """Any operation, as on the API (params as a JSON object; the operation's own types check them)."""
    try:
        p = json.loads(params or "{}")
    except json.JSONDecodeError as exc:
        raise GovctlError(f"参数不是合法的 JSON 对象 / params is not a JSON object: {exc.msg} at {exc.pos}", hint='e.g. {"roles": ["auditor"]}') from None
    if not isinstance(p, dict):
        raise GovctlError("参数必须是 JSON 对象 / params must be a JSON object", hint='e.g. {"roles": ["auditor"]}')
    view = submit(request, s, operation.strip(), target.strip(), p, reason)
    if view.secret:  # a new person's enrolment code: shown once, to the one who asked, never stored in the clear
        resp = render(request, "secret.html", v=view, message=op_message(view))
        resp.headers["Cache-Control"] = "no-store"
        return resp
    return back(f"/approvals/{view.id}", op_message(view))


# -- 会话 bastion sessions ------------------------------------------------------------------------------


@router.get("/sessions")
def sessions_page(request: Request, s: WebSession = Depends(page_reads("bastion.read"))) -> Response:
    from control_plane.bastion import store

    ctx = context(request)
    return render(request, "sessions.html", live=store.list_sessions(ctx, live_only=True, limit=200),
                  recent=store.list_sessions(ctx, live_only=False, limit=100))  # fmt: skip


def _verified(ctx: Any, session_id: str) -> tuple[dict[str, Any], Any]:
    from control_plane.bastion import store
    from control_plane.bastion.recording import recordings_key, verify

    sess = store.get_session(ctx, session_id)
    kek = recordings_key(ctx.key_passphrase(), ctx.settings.crypto.kdf_iterations)
    return sess, verify(Path(sess["recording"]), kek, ctx.signer.public_key, expect_final=sess["final_sm3"] or None, events=True)


@router.get("/sessions/{session_id}")
def session_page(request: Request, session_id: str, s: WebSession = Depends(page_reads("bastion.read"))) -> Response:
    sess, v = _verified(context(request), session_id)
    marks = [{"t": round(e[0], 2), "text": e[2]} for e in v.events[1:] if e[1] == "m"]
    return render(request, "session.html", sess=sess, v=v.as_dict(), marks=marks)


@router.get("/sessions/{session_id}/cast")
def session_cast(request: Request, session_id: str, s: WebSession = Depends(page_reads("bastion.read"))) -> Response:
    """The recording as asciicast v2, for the player (each chunk checked against its seal before it is shown)."""
    _sess, v = _verified(context(request), session_id)
    body = "\n".join(json.dumps(e, ensure_ascii=False) for e in v.events) + "\n"
    context(request).gate.record(s.principal, "bastion.replay", target=session_id, details={"via": "console"})
    return Response(body, media_type="application/x-asciicast", headers={"Cache-Control": "no-store"})


@router.post("/sessions/{session_id}/kill")
def session_kill(request: Request, session_id: str, reason: str = Form(""), s: WebSession = Depends(page_changes("bastion.session.kill"))) -> Response:
    view = submit(request, s, "bastion.session.kill", session_id, {}, reason or "ended from the console")
    return back("/sessions", op_message(view))


# -- 审计 audit ------------------------------------------------------------------------------------------


@router.get("/audit")
def audit_page(request: Request, actor: str = "", operation: str = "", outcome: str = "", since: str = "", limit: int = Query(100, ge=1, le=1000),
               s: WebSession = Depends(page_reads("audit.read"))) -> Response:  # fmt: skip
    ctx = context(request)
    recs = ctx.ledger.query(actor=actor or None, operation=operation or None, outcome=outcome or None, since=since or None, limit=limit)
    return render(request, "audit.html", recs=recs, f={"actor": actor, "operation": operation, "outcome": outcome, "since": since}, report=None)


@router.post("/audit/verify")
def audit_verify(request: Request, pin: str = Form(""), s: WebSession = Depends(page_reads("audit.read"))) -> Response:
    """Verifying changes nothing (a read), but it is a POST: it is work a crawler must not start."""
    ctx = context(request)
    rep = ctx.ledger.verify(pin=pin.strip() or None)
    ctx.gate.record(s.principal, "audit.verify", details={"ok": rep.ok, "records": rep.records, "via": "console"})
    return render(request, "audit.html", recs=ctx.ledger.query(limit=50), f={}, report=rep.as_dict())


@router.get("/audit/evidence")
def evidence(request: Request, since: str = Query(..., pattern=r"^\d{4}-\d{2}-\d{2}$"), until: str = Query(..., pattern=r"^\d{4}-\d{2}-\d{2}$"),
             s: WebSession = Depends(page_reads("audit.read"))) -> Response:  # fmt: skip
    from control_plane.console import evidence as ev

    ctx = context(request)
    data, name = ev.pack(ctx, since, until, by=s.user)
    ctx.gate.record(s.principal, "audit.evidence", target=f"{since}..{until}", details={"bytes": len(data), "via": "console"})
    return Response(data, media_type="application/zip", headers={"Content-Disposition": f'attachment; filename="{name}"'})


# -- 资源池, 灾备, 作业, 用户 -------------------------------------------------------------------------------


@router.get("/pools")
def pools_page(request: Request, s: WebSession = Depends(page_reads("deploy.read"))) -> Response:
    from control_plane.console import overview as ov

    return render(request, "pools.html", pools=ov.pools(context(request)))


# -- 部门资源 departments' resources ------------------------------------------------------------------


@router.get("/resources")
def resources_page(request: Request, department: str = "", s: WebSession = Depends(page_reads("resource.read"))) -> Response:
    """A department's hosts, quota use and open reclamation requests; a 部门管理员 sees only their own department."""
    from control_plane.tenancy import service as ten

    ctx = context(request)
    dept = ten.scope(ctx, s.user, department or None)
    reg = ten.registry(ctx)
    return render(request, "resources.html", dept=dept, departments=[(d.code, d.name) for d in reg.departments],
                  rows=ten.listing(ctx, dept) if dept else [], quotas=ten.quotas(ctx, dept) if dept else [],
                  reclaims=ten.reclaims(ctx, dept) if dept else [], stacks=list(ctx.settings.deploy.stacks))  # fmt: skip


@router.post("/resources/request")
def resources_request(request: Request, department: str = Form(...), pool: str = Form("primary"), hosts: int = Form(1), vcpu: int = Form(...),
                      memory: int = Form(...), storage: int = Form(...), stack: str = Form("local"), expires: str = Form(""),
                      reason: str = Form(""), s: WebSession = Depends(page_changes("resource.request"))) -> Response:  # fmt: skip
    """申请: a gated resource.request (the bureau approves it; over-quota requests are refused at once with the numbers)."""
    params: dict[str, Any] = {"stack": stack, "pool": pool, "hosts": hosts, "vcpu": vcpu, "memory_gib": memory, "storage_gib": storage, "reason": reason}
    if expires:
        params["expires"] = expires
    view = submit(request, s, "resource.request", department, params, reason or "from the console")
    return back(f"/resources?department={department}", op_message(view))


@router.post("/resources/answer/{op_id}")
def resources_answer(request: Request, op_id: str, answer: str = Form(...), note: str = Form(""),
                     s: WebSession = Depends(page_changes("resource.answer"))) -> Response:  # fmt: skip
    """A department confirms a reclamation request or says why it keeps the host."""
    view = submit(request, s, "resource.answer", op_id, {"answer": answer, "note": note})
    return back("/resources", op_message(view))


@router.get("/dr")
def dr_page(request: Request, s: WebSession = Depends(page_reads("dr.read"))) -> Response:
    from control_plane.console import overview as ov

    return render(request, "dr.html", d=ov.dr(context(request)))


@router.get("/dr/drills/{drill_id}")
def drill_report(request: Request, drill_id: str, s: WebSession = Depends(page_reads("dr.read"))) -> Response:
    from control_plane.console import overview as ov

    path = ov.drill_html(context(request), drill_id)
    return FileResponse(path, media_type="text/html", headers=_SANDBOX)


@router.get("/jobs")
def jobs_page(request: Request, s: WebSession = Depends(page_reads("jobs.read"))) -> Response:
    from control_plane.console import overview as ov

    return render(request, "jobs.html", j=ov.jobs(context(request)))


@router.post("/jobs/{job_id}/{action}")
def job_action(request: Request, job_id: str, action: str, reason: str = Form(""), s: WebSession = Depends(page_changes("*"))) -> Response:
    """Run now, pause (high risk: an approver) or resume a job: the jobs.* operations."""
    if action not in ("run", "pause", "resume"):
        raise GovctlError(f"no job action {action!r}", hint="run, pause or resume")
    view = submit(request, s, f"jobs.{action}", job_id, {}, reason or f"from the console: {action}")
    return back("/jobs", op_message(view))


@router.get("/users")
def users_page(request: Request, s: WebSession = Depends(page_reads("iam.read"))) -> Response:
    from control_plane.bastion import store
    from control_plane.gate import iam

    ctx = context(request)
    return render(request, "users.html", users=iam.list_users(ctx), roles=ctx.gate.policy.roles, tokens=iam.list_tokens(ctx),
                  grants=store.list_grants(ctx, None, active_only=True))  # fmt: skip


@router.get("/account")
def account_page(request: Request, s: WebSession = Depends(page_reads("tokens.read"))) -> Response:
    from control_plane.gate import iam

    from control_plane.notify import service

    ctx = context(request)
    return render(request, "account.html", me=iam.public(iam.get_user(ctx, s.user) or {}), tokens=iam.list_tokens(ctx, s.user),
                  sub=service.subscription(ctx, s.user), kinds=service.KINDS)  # fmt: skip


@router.post("/account/password")
def account_password(request: Request, password: str = Form(...), again: str = Form(...), otp: str = Form(...),
                     s: WebSession = Depends(page_changes("iam.password.set"))) -> Response:  # fmt: skip
    from control_plane.gate import iam

    if password != again:
        raise GovctlError("两次输入的口令不一致 / the two passwords differ", hint="type the same password twice")
    token = iam.PENDING_PASSWORD.set((s.user, password, otp.strip()))
    try:
        view = submit(request, s, "iam.password.set", s.user, {})
    finally:
        iam.PENDING_PASSWORD.reset(token)
    return back("/account", op_message(view))


@router.post("/account/notifications")
def account_notifications(request: Request, kinds: list[str] = Form(default=[]), email: str = Form(""),
                          s: WebSession = Depends(page_changes("notify.subscription.set"))) -> Response:  # fmt: skip
    view = submit(request, s, "notify.subscription.set", s.user, {"kinds": kinds, "email": email.strip()})
    return back("/account", op_message(view))


@router.get("/notifications")
def notifications_page(request: Request, s: WebSession = Depends(page_reads("notify.read"))) -> Response:
    from control_plane.notify import service

    return render(request, "notifications.html", msgs=service.recent(context(request), 200), kinds=service.KINDS)


@router.post("/notifications/ack")
def notification_ack(request: Request, id: str = Form(...), s: WebSession = Depends(page_changes("notify.ack"))) -> Response:
    view = submit(request, s, "notify.ack", id, {})
    return back("/notifications", op_message(view))


# -- 报告 reports ----------------------------------------------------------------------------------------

_SANDBOX = {"Content-Security-Policy": "sandbox; default-src 'none'; img-src data:; style-src 'unsafe-inline'; font-src data:", "Cache-Control": "no-store"}


@router.get("/reports")
def reports_page(request: Request, s: WebSession = Depends(page_reads("report.read"))) -> Response:
    from control_plane.console import overview as ov

    return render(request, "reports.html", r=ov.reports(context(request)))


@router.get("/reports/{month}/{revision}")
def report_page(request: Request, month: str, revision: int, s: WebSession = Depends(page_reads("report.read"))) -> Response:
    from control_plane.report import deliver, store

    ctx = context(request)
    b = store.get(ctx, month, revision)
    check = store.verify_revision(ctx, b)
    return render(request, "report.html", b=b, check=check, deliveries=deliver.list_deliveries(ctx, month))


@router.get("/reports/{month}/{revision}/{form}")
def report_file(request: Request, month: str, revision: int, form: str, s: WebSession = Depends(page_reads("report.read"))) -> Response:
    from control_plane.report import store

    names = {"html": ("report.html", "text/html"), "pdf": ("report.pdf", "application/pdf"), "json": ("report.json", "application/json"),
             "xlsx": ("report.xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")}  # fmt: skip
    if form not in names:
        raise GovctlError(f"no form {form!r} of a report", hint="html, pdf, json or xlsx")
    b = store.get(context(request), month, revision)
    path = Path(b.path) / names[form][0]
    if not path.is_file():
        raise GovctlError(f"{names[form][0]} of {month} r{revision} was not rendered", hint="rebuild the month")
    return FileResponse(path, media_type=names[form][1], headers=_SANDBOX if form == "html" else {"Cache-Control": "no-store"})


@router.post("/reports/{month}/submit")
def report_submit(request: Request, month: str, revision: int = Form(...), s: WebSession = Depends(page_changes("report.submit"))) -> Response:
    view = submit(request, s, "report.submit", month, {"revision": revision})
    return back(f"/reports/{month}/{revision}", op_message(view))


@router.post("/reports/build")
def report_build(request: Request, month: str = Form(...), reason: str = Form(""), correction: bool = Form(False),
                 s: WebSession = Depends(page_changes("report.build"))) -> Response:  # fmt: skip
    view = submit(request, s, "report.build", month.strip(), {"correction": True, "reason": reason} if correction else {}, reason)
    return back("/reports" if view.status != "pending_approval" else f"/approvals/{view.id}", op_message(view))


from control_plane.console.terminal import router as _terminal_router  # noqa: E402 - the web terminal's page and socket

router.include_router(_terminal_router)
