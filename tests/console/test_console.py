"""The console in a real browser (Debian's Chromium through Playwright) against the real services.

Sign-in with TOTP, an alert triaged from the queue to closed, a critical request approved by two
approvers in two browser contexts, the audit verify button and the signed evidence pack, what an
auditor and an approver may not see or do, CSRF and cross-site refusals; axe-core on every screen.
"""

from __future__ import annotations

import io
import json
import re
import uuid
import zipfile
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest

from control_plane.config import load
from control_plane.context import Context
from control_plane.gate import iam
from control_plane.wiring import context_for
from tests.conftest import make_test_config, write_config
from tests.console.kit import Server, axe, login, person, shot

pytestmark = pytest.mark.services


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, services: object) -> Iterator[dict[str, Any]]:
    """A runtime on the session's services, its console served, and one person per role (two approvers)."""
    tmp = tmp_path_factory.mktemp("console")
    (tmp / "var").mkdir()
    (tmp / "var" / "svc").symlink_to(services.root)  # type: ignore[attr-defined] - the session's services are this runtime's too
    ctx = context_for(load(write_config(tmp / "govctl.yaml", make_test_config(var_dir=tmp / "var"))))
    people = {n: person(ctx, n, roles) for n, roles in (("sec", ["secadmin"]), ("ops", ["ops_engineer"]), ("aud", ["auditor"]),
                                                         ("appr1", ["approver"]), ("appr2", ["approver"]), ("sys", ["sysadmin"]))}  # fmt: skip
    with Server(ctx) as srv:
        yield {"ctx": ctx, "url": srv.url, "p": people, "tmp": tmp}


def _alert(ctx: Context, tmp: Path) -> str:
    """A real alert: sshd logins from outside the whitelist, ingested and detected by the engine."""
    from control_plane.soc import alerts, detect
    from control_plane.soc.ingest import Ingestor
    from control_plane.soc.rules import RULES_DIR, load_rules

    host = f"h{uuid.uuid4().hex[:8]}"
    now = datetime.now(timezone.utc)
    Ingestor(ctx.es, tmp / "spool").ingest([{
        "@timestamp": (now - timedelta(seconds=40 - i)).isoformat().replace("+00:00", "Z"), "host": {"name": host}, "process": {"name": "sshd"},
        "message": "Accepted password for ops from 203.0.113.9 port 50022 ssh2", "user": {"name": "ops"}, "source": {"ip": "203.0.113.9"},
        "event": {"module": "syslog", "category": ["authentication"], "action": "ssh_login", "outcome": "success"}} for i in range(3)])  # fmt: skip
    ctx.es.indices.refresh(index="soc-events-*")
    (tmp / "rules").mkdir(exist_ok=True)
    (tmp / "rules" / "ssh_login_outside_whitelist.yml").write_text((RULES_DIR / "ssh_login_outside_whitelist.yml").read_text())
    detect.run(ctx, load_rules(tmp / "rules"), settle_s=0)
    return next(a["id"] for a in alerts.search(ctx.es, status="open", limit=500) if f"host.name={host}|" in a["group_key"])


def _no_violations(page: Any, name: str) -> None:
    bad = axe(page, name)
    assert not bad, f"{name}: serious or critical accessibility violations: {bad}"


def test_sign_in_with_password_and_totp(world: dict[str, Any], page: Any) -> None:
    """Wrong factors are refused with one message and audited; the right ones open the overview; sign-out ends the session server-side."""
    ctx, url, sec = world["ctx"], world["url"], world["p"]["sec"]
    page.goto(f"{url}/alerts")
    assert page.url.startswith(f"{url}/login?next=/alerts")  # not signed in: the sign-in page, which then returns there
    _no_violations(page, "login")
    page.fill("#username", "sec")
    page.fill("#password", "not-the-password")
    page.fill("#otp", "000000")
    page.click("button[type=submit]")
    assert "用户名、口令或动态口令错误" in page.inner_text(".error")
    page.fill("#username", "nobody-here")
    page.fill("#password", "whatever-it-is-1")
    page.fill("#otp", "000000")
    page.click("button[type=submit]")
    assert "用户名、口令或动态口令错误" in page.inner_text(".error")  # the same words: no telling which names exist
    login(page, url, sec, ctx)
    assert page.locator("h1").inner_text() == "总览"
    cookie = next(c for c in page.context.cookies() if c["name"] == "govctl_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    refused = [r for r in ctx.ledger.query(operation="console.login", limit=20) if r.outcome == "refused"]
    assert {r.target for r in refused} >= {"sec", "nobody-here"}
    assert ctx.ledger.query(operation="console.login", outcome="succeeded", actor="sec")
    page.click("text=退出")
    page.wait_for_url(f"{url}/login")
    page.context.add_cookies([{**cookie}])  # the old cookie, replayed: the session ended on the server
    page.goto(f"{url}/")
    assert "/login" in page.url
    assert ctx.ledger.query(operation="console.logout", actor="sec")


def test_lockout_after_repeated_failures(world: dict[str, Any]) -> None:
    """Five failures lock the name for 15 minutes: even the right password and code are then refused."""
    ctx, url = world["ctx"], world["url"]
    victim = person(ctx, f"v{uuid.uuid4().hex[:6]}", ["auditor"])
    with httpx.Client(base_url=url) as c:
        for _ in range(5):
            c.post("/login", data={"username": victim.name, "password": "wrong-wrong-1A", "otp": "123456"})
        r = c.post("/login", data={"username": victim.name, "password": victim.password, "otp": victim.code(ctx)}, follow_redirects=False)
    assert r.status_code == 401 and "锁定" in r.text and "govctl_session" not in r.headers.get("set-cookie", "")


def test_overview_and_event_search(world: dict[str, Any], page: Any) -> None:
    """The overview shows the services, open alerts by severity (a chart) and pending approvals; events are searchable with a histogram."""
    ctx, url = world["ctx"], world["url"]
    _alert(ctx, world["tmp"])
    login(page, url, world["p"]["sys"], ctx)
    page.wait_for_selector("#chart-alerts canvas")  # ECharts drew it (served locally: no CDN)
    text = page.inner_text("main")
    for words in ("未关闭告警", "待审批", "基础服务", "elasticsearch", "正常", "备份 RPO", "月度报告"):
        assert words in text, words
    _no_violations(page, "overview")
    shot(page, "overview", readme=True)
    page.goto(f"{url}/events?q=process.name:sshd&since=1h")
    page.wait_for_selector("#chart-hist canvas")
    assert "203.0.113.9" in page.inner_text("main")
    page.click("text=203.0.113.9 >> nth=0")  # a field value narrows the search
    assert "field=source.ip%3A203.0.113.9" in page.url
    _no_violations(page, "events")
    page.goto(f"{url}/events?q=user.name:(unbalanced&since=1h")
    assert "查询语句有误" in page.inner_text("main")  # bad syntax is an error that says so, not "everything"


def test_triage_an_alert_from_the_queue_to_closed(world: dict[str, Any], page: Any) -> None:
    """An analyst acknowledges, notes and closes with a verdict; each step is a gated, audited soc.alert.update."""
    ctx, url = world["ctx"], world["url"]
    aid = _alert(ctx, world["tmp"])
    login(page, url, world["p"]["sec"], ctx)
    page.goto(f"{url}/alerts")
    _no_violations(page, "alerts")
    page.goto(f"{url}/alerts?group=rule")
    assert "按规则" in page.inner_text("main")
    page.goto(f"{url}/alerts")
    page.click(f"a[href='/alerts/{aid}']")
    assert page.inner_text("#alert-status").startswith("待处理")
    assert "203.0.113.9" in page.inner_text("main")  # its events
    _no_violations(page, "alert")
    page.click("button:has-text('确认')")
    assert page.inner_text("#alert-status").startswith("已确认")
    assert "soc.alert.update" in page.inner_text(".flash")
    page.fill("#note", "供应商 VPN 出口，已核实")
    page.click("button:has-text('添加备注')")
    shot(page, "alert", readme=True)
    page.check("input[value=false_positive]")
    page.click("button:has-text('关闭告警')")
    assert page.inner_text("#alert-status") == "已关闭（误报）"
    assert "供应商 VPN 出口" in page.inner_text("main")
    recs = [r for r in ctx.ledger.query(operation="soc.alert.update", actor="sec", limit=20) if r.target == aid and r.outcome == "succeeded"]
    assert len(recs) == 3 and all(json.loads(r.details)["via"] == "console" for r in recs)


def test_critical_request_needs_two_approvers_in_two_browsers(world: dict[str, Any], browser: Any) -> None:
    """A security administrator asks for a role change (critical); two approvers each approve with TOTP in their own context; then it runs."""
    ctx, url, p = world["ctx"], world["url"], world["p"]
    target = person(ctx, f"t{uuid.uuid4().hex[:6]}", ["ops_engineer"])
    contexts = [browser.new_context(locale="zh-CN", timezone_id="Asia/Shanghai", viewport={"width": 1366, "height": 900}, bypass_csp=True) for _ in range(3)]
    sec, a1, a2 = (c.new_page() for c in contexts)
    try:
        login(sec, url, p["sec"], ctx)
        sec.goto(f"{url}/users")
        sec.select_option("#r-op", "iam.role.change")
        sec.fill("#r-target", target.name)
        sec.fill("#r-params", '{"roles": ["auditor"]}')
        sec.fill("#r-reason", "调岗为审计管理员")
        sec.click("button:has-text('提交')")
        assert "等待 2 名审批人批准" in sec.inner_text(".flash")
        op_id = sec.url.rsplit("/", 1)[-1]
        assert sec.inner_text("#op-status") == "待审批"
        assert sec.locator("button:has-text('批准')").count() == 0  # a requester never approves their own
        for page, who in ((a1, p["appr1"]), (a2, p["appr2"])):
            login(page, url, who, ctx)
            page.goto(f"{url}/approvals")
            page.click(f"a[href='/approvals/{op_id}']")
            text = page.inner_text("main")
            assert "iam.role.change" in text and "调岗为审计管理员" in text and "auditor" in text and "sec" in text
            if who is p["appr1"]:
                _no_violations(page, "approval")
                shot(page, "approval", readme=True)
            page.fill("#comment", "已核对")
            page.fill("#otp", who.code(ctx))
            page.click("button[value=approve]")
            assert "已批准" in page.inner_text(".flash")
        a2.reload()
        assert a2.inner_text("#op-status") == "已批准"
        a1.reload()
        assert a1.locator("button:has-text('批准')").count() == 0  # decided once each
        sec.reload()
        sec.click("button:has-text('执行')")
        assert sec.inner_text("#op-status") == "成功"
        assert iam.get_user(ctx, target.name)["roles"] == ["auditor"]
        approvals = [r for r in ctx.ledger.query(operation="ops.approve", limit=20) if json.loads(r.details).get("op") == op_id]
        assert {r.actor for r in approvals} == {"appr1", "appr2"}
    finally:
        for c in contexts:
            c.close()


def test_a_new_person_is_registered_from_the_console_and_their_code_shown_once(world: dict[str, Any], page: Any) -> None:
    """iam.user.create (high risk) from the users page; approved; run by the requester, who sees the enrolment code once; it works."""
    ctx, url, p = world["ctx"], world["url"], world["p"]
    name = f"n{uuid.uuid4().hex[:6]}"
    login(page, url, p["sec"], ctx)
    page.goto(f"{url}/users")
    page.select_option("#r-op", "iam.user.create")
    page.fill("#r-target", name)
    page.fill("#r-params", '{"roles": ["ops_engineer"]}')
    page.fill("#r-reason", "新入职运维工程师")
    page.click("button:has-text('提交')")
    op_id = page.url.rsplit("/", 1)[-1]
    appr = ctx.gate.authenticate(iam.create_token(ctx, "appr1")[1], source="127.0.0.1")
    ctx.gate.approve(appr, op_id, "ok", otp=p["appr1"].code(ctx))
    page.reload()
    page.click("button:has-text('执行')")
    code = page.inner_text("#secret").strip()
    assert code.startswith("enr_") and page.url.endswith(f"/approvals/{op_id}/run")
    assert code not in json.dumps(ctx.gate.get(op_id).as_dict())  # shown, never stored
    assert iam.start_enrolment(ctx, name, code).startswith("otpauth://")


def test_a_job_runs_from_the_jobs_page(world: dict[str, Any], page: Any) -> None:
    """A system administrator runs a job now from 作业: a gated jobs.run, its run listed."""
    ctx, url = world["ctx"], world["url"]
    login(page, url, world["p"]["sys"], ctx)
    page.goto(f"{url}/jobs")
    page.locator("tr", has_text="gate.alerts").locator("button:has-text('立即运行')").click()
    assert "jobs.run" in page.inner_text(".flash") and "成功" in page.inner_text(".flash")
    assert ctx.ledger.query(operation="jobs.run", actor="sys", outcome="succeeded")


def test_a_wrong_or_replayed_code_does_not_approve(world: dict[str, Any], browser: Any) -> None:
    """The approval form refuses a wrong TOTP code and a code already used, and says so."""
    from control_plane.gate import OperationRequest

    ctx, url, p = world["ctx"], world["url"], world["p"]
    me = ctx.gate.authenticate(iam.create_token(ctx, "ops")[1], source="127.0.0.1")
    view = ctx.gate.submit(me, OperationRequest("dr.drill", "local", {}, reason="季度演练"))
    assert view.status == "pending_approval"
    c = browser.new_context(bypass_csp=True)
    page = c.new_page()
    try:
        login(page, url, p["appr1"], ctx)
        page.goto(f"{url}/approvals/{view.id}")
        page.fill("#otp", "000000")
        page.click("button[value=approve]")
        assert "一次性" in page.inner_text("main") or "one-time password" in page.inner_text("main")
        assert ctx.gate.get(view.id).status == "pending_approval"
    finally:
        c.close()
        ctx.gate.cancel(me, view.id)


def test_auditor_sees_no_approve_buttons_and_reaches_no_change_route(world: dict[str, Any], page: Any) -> None:
    """An auditor reads; every change route refuses them even with a valid CSRF token; an approver's menu holds only what they may read."""
    from control_plane.gate import OperationRequest

    ctx, url, p = world["ctx"], world["url"], world["p"]
    opsp = ctx.gate.authenticate(iam.create_token(ctx, "ops")[1], source="127.0.0.1")
    view = ctx.gate.submit(opsp, OperationRequest("dr.drill", "local", {}, reason="演练"))
    aid = _alert(ctx, world["tmp"])
    login(page, url, p["aud"], ctx)
    for path in ("/approvals", "/audit", "/sessions", "/reports", "/users", "/dr", "/jobs", "/pools", "/notifications", "/account"):
        page.goto(f"{url}{path}")
        assert page.locator("h1").count() == 1, path
        _no_violations(page, path.strip("/"))
    page.goto(f"{url}/approvals/{view.id}")
    assert page.locator("button:has-text('批准')").count() == 0 and page.locator("button:has-text('驳回')").count() == 0
    page.goto(f"{url}/alerts/{aid}")
    assert page.locator("button:has-text('确认')").count() == 0 and page.locator("button:has-text('关闭告警')").count() == 0
    csrf = page.get_attribute("body", "data-csrf")
    req = page.request
    for path, form in ((f"/approvals/{view.id}/approve", {"otp": "123456"}), (f"/alerts/{aid}/update", {"action": "ack"}),
                       ("/requests", {"operation": "iam.role.change", "target": "aud", "params": '{"roles": ["sysadmin"]}', "reason": "x"}),
                       (f"/reports/2026-10/submit", {"revision": "1"}), ("/sessions/s-x/kill", {})):  # fmt: skip
        r = req.post(f"{url}{path}", form={**form, "csrf": csrf}, max_redirects=0)
        assert r.status in (400, 403), (path, r.status)
    assert ctx.gate.get(view.id).status == "pending_approval"
    refused = ctx.ledger.query(actor="aud", outcome="refused", limit=50)
    assert {r.operation for r in refused} >= {"ops.approve", "soc.alert.update", "iam.role.change"}
    ctx.gate.cancel(opsp, view.id)
    # an approver's menu: only what their roles read
    c2 = page.context.browser.new_context(bypass_csp=True)
    pg = c2.new_page()
    try:
        login(pg, url, p["appr2"], ctx)
        assert pg.locator("header nav a").all_inner_texts() == ["总览", "审批", "部门资源", "通知"]  # 部门资源: quota use, for deciding on requests
        pg.goto(f"{url}/audit")
        assert "无权访问" in pg.inner_text("h1") and "audit.read" in pg.inner_text("main")
    finally:
        c2.close()


def test_forms_need_the_session_csrf_token_and_the_terminal_needs_this_origin(world: dict[str, Any], page: Any) -> None:
    """A signed-in person's cookie alone changes nothing (a forged cross-site form); the terminal socket refuses another site's page."""
    ctx, url, p = world["ctx"], world["url"], world["p"]
    aid = _alert(ctx, world["tmp"])
    login(page, url, p["sec"], ctx)
    r = page.request.post(f"{url}/alerts/{aid}/update", form={"action": "ack"}, max_redirects=0)
    assert r.status == 401 and "CSRF" in r.text()
    r = page.request.post(f"{url}/alerts/{aid}/update", form={"action": "ack", "csrf": "forged"}, max_redirects=0)
    assert r.status == 401
    from control_plane.soc import alerts

    assert alerts.get(ctx.es, aid)["status"] == "open"
    cookie = next(c for c in page.context.cookies() if c["name"] == "govctl_session")["value"]
    import websockets.sync.client as wsc
    from websockets.exceptions import InvalidStatus

    with pytest.raises(InvalidStatus):
        wsc.connect(f"ws://127.0.0.1:{url.rsplit(':', 1)[1]}/terminal/ws?host=x", origin="http://evil.example", additional_headers={"Cookie": f"govctl_session={cookie}"})
    # security headers on every page
    r = page.request.get(f"{url}/")
    h = r.headers
    assert "script-src 'self'" in h["content-security-policy"] and h["x-frame-options"] == "SAMEORIGIN" and h["x-content-type-options"] == "nosniff"


def test_audit_verify_and_a_signed_evidence_pack(world: dict[str, Any], page: Any) -> None:
    """The verify button shows the result and the newest external anchor; the evidence pack's manifest is signed by the platform key."""
    from control_plane.report.seal import verify

    ctx, url = world["ctx"], world["url"]
    login(page, url, world["p"]["aud"], ctx)
    page.goto(f"{url}/audit")
    page.click("button:has-text('校验审计链')")
    res = page.inner_text("#verify-result")
    assert "校验通过" in res and "最新外部锚点" in res
    _no_violations(page, "audit")
    today = datetime.now(timezone.utc).date()
    page.fill("#ev-since", (today - timedelta(days=1)).isoformat())
    page.fill("#ev-until", today.isoformat())
    with page.expect_download() as dl:
        page.click("button:has-text('下载签名证据包')")
    data = Path(dl.value.path()).read_bytes()
    z = zipfile.ZipFile(io.BytesIO(data))
    manifest = z.read("manifest.json")
    verify(manifest, json.loads(z.read("manifest.sig.json")), ctx.signer.public_key)  # raises on a bad signature
    from control_plane.crypto import sm3_hex

    files = json.loads(manifest)["files"]
    assert {"approvals/operations.json", "iam/role_and_user_changes.json", "audit/records.jsonl", "drills/drills.json"} <= set(files)
    for name, meta in files.items():
        assert sm3_hex(z.read(name)) == meta["sm3"], name
    ops = json.loads(z.read("approvals/operations.json"))
    assert ops and all(o["approvals_needed"] > 0 or o["break_glass"] for o in ops)
    assert b"console.login" in z.read("audit/records.jsonl")
    assert ctx.ledger.query(operation="audit.evidence", actor="aud")


def test_english_is_switchable(world: dict[str, Any], page: Any) -> None:
    """Chinese by default; English on request, kept for the session."""
    ctx, url = world["ctx"], world["url"]
    login(page, url, world["p"]["ops"], ctx)
    assert page.locator("html").get_attribute("lang") == "zh-CN"
    page.click("button:has-text('English')")
    page.wait_for_selector("h1:has-text('Overview')")
    assert page.locator("html").get_attribute("lang") == "en"
    page.goto(f"{url}/approvals")
    assert page.locator("h1").inner_text() == "Approvals"
    assert re.search(r"\d{4}-\d{2}-\d{2}|None", page.inner_text("main"))


def test_a_department_administrator_requests_hosts_and_sees_only_their_department(world: dict[str, Any], page: Any) -> None:
    """A 部门管理员 signs in to their department's page (not the overview they may not read), asks for a host (pending the bureau's
    approval), is refused over quota with the numbers, and cannot open another department's page."""
    ctx, url = world["ctx"], world["url"]
    admin = person(ctx, f"d{uuid.uuid4().hex[:6]}", ["dept_admin"], department="city-big-data-bureau")
    login(page, url, admin, ctx, landing="/resources")
    assert page.locator("h1").inner_text() == "部门资源：申请、配额与回收"
    assert "0 / 8" in page.locator("table").first.inner_text()  # hosts used / quota in the primary pool
    page.fill("#vcpu", "2")
    page.fill("#memory", "4")
    page.fill("#storage", "40")
    page.fill("#reason", "人口库 扩容")
    page.click("text=提交申请")
    page.wait_for_url(f"{url}/resources?department=city-big-data-bureau")
    assert "resource.request 已提交" in page.content() and "等待 1 名审批人批准" in page.content()
    pending = [v for v in ctx.gate.list(status="pending_approval") if v.operation == "resource.request" and v.requester == admin.name]
    assert len(pending) == 1 and pending[0].target == "city-big-data-bureau" and pending[0].params["vcpu"] == 2
    page.fill("#vcpu", "64")
    page.fill("#memory", "4")
    page.fill("#storage", "40")
    page.fill("#reason", "太多")
    with page.expect_navigation():
        page.click("text=提交申请")
    assert "vCPU 0 + 64 > 32" in page.inner_text("main"), page.inner_text("main")  # refused at once, with the numbers
    r = page.goto(f"{url}/resources?department=water-bureau")
    assert r is not None and r.status >= 400 and "administers city-big-data-bureau" in page.inner_text("main")
    _no_violations(page, "resources")
