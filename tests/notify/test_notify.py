"""Notifications for real: a local SMTP server (aiosmtpd) and a webhook receiver get what the scan announces; escalation; Alertmanager's route."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import update

from control_plane.config import load
from control_plane.context import Context
from control_plane.gate import OperationRequest, iam
from control_plane.notify import service
from control_plane.notify.models import messages
from control_plane.soc import alerts
from control_plane.gate.decision import AlertRef
from control_plane.wiring import context_for
from tests.conftest import make_test_config, write_config
from tests.bastion.conftest import wait_until
from tests.console.kit import free_port, person
from tests.gate.conftest import make_people

pytestmark = pytest.mark.services


class Mailbox:
    """aiosmtpd's handler: every message received."""

    def __init__(self) -> None:
        self.mails: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's hook name
        import email

        self.mails.append((list(envelope.rcpt_tos), email.message_from_bytes(envelope.content, policy=email.policy.default)))
        return "250 OK"


class Hook(BaseHTTPRequestHandler):
    got: list[dict[str, Any]] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's hook name
        n = int(self.headers.get("content-length", "0"))
        Hook.got.append(json.loads(self.rfile.read(n)))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture()
def channels() -> Iterator[dict[str, Any]]:
    box = Mailbox()
    smtp = Controller(box, hostname="127.0.0.1", port=free_port())
    smtp.start()
    Hook.got = []
    http = ThreadingHTTPServer(("127.0.0.1", free_port()), Hook)
    t = threading.Thread(target=http.serve_forever, daemon=True)
    t.start()
    try:
        yield {"box": box, "smtp_port": smtp.port, "hook": Hook.got, "hook_url": f"http://127.0.0.1:{http.server_address[1]}/hook"}
    finally:
        smtp.stop()
        http.shutdown()


def _rt(tmp_path: Path, ch: dict[str, Any], fmt: str = "generic", **notify: Any) -> Context:
    data = make_test_config(var_dir=tmp_path / "var")
    data["notify"] = {"smtp": {"host": "127.0.0.1", "port": ch["smtp_port"], "sender": "govctl@city.gov.cn"},
                      "webhook": {"url": ch["hook_url"], "format": fmt}, **notify}  # fmt: skip
    return context_for(load(write_config(tmp_path / "govctl.yaml", data)))


def _critical(rt: Context, title: str = "root login from the internet") -> str:
    aid = f"test-{uuid.uuid4().hex[:12]}"
    alerts.raise_alert(rt.es, AlertRef(id=aid, rule="test.rule", title=title, severity="critical", summary="**203.0.113.9** [x](http://evil)",
                                       at=datetime.now(timezone.utc).isoformat(), operation={}))  # fmt: skip
    return aid


def test_alert_and_approval_go_to_subscribers_and_the_webhook_once(tmp_path: Path, channels: dict[str, Any]) -> None:
    """A new critical alert and a request waiting for approval: mailed to those who subscribed to each kind, posted to the webhook, once."""
    rt = _rt(tmp_path, channels)
    people = make_people(rt)
    for who, kinds in (("analyst", ["alert"]), ("boss", ["approval", "alert"]), ("quiet", [])):
        person(rt, who, ["secadmin"] if who == "analyst" else ["approver"])
        me = rt.gate.authenticate(iam.create_token(rt, who)[1], source="127.0.0.1")
        assert rt.gate.submit(me, OperationRequest("notify.subscription.set", who, {"kinds": kinds, "email": f"{who}@city.gov.cn"})).status == "succeeded"
    aid = _critical(rt)
    op = rt.gate.submit(people["ops_engineer"], OperationRequest("dr.drill", "local", {}, reason="季度演练"))
    r = service.scan(rt)
    assert r["new"] >= 2
    mails = channels["box"].mails
    by_subject = {m["Subject"]: set(to) for to, m in mails}
    alert_mail = next(s for s in by_subject if "root login from the internet" in s)
    approval_mail = next(s for s in by_subject if op.id in s or "dr.drill" in s)
    assert by_subject[alert_mail] == {"analyst@city.gov.cn", "boss@city.gov.cn"}
    assert by_subject[approval_mail] == {"boss@city.gov.cn"}
    body = next(m for _, m in mails if m["Subject"] == alert_mail).get_content()
    assert f"/alerts/{aid}" in body
    hooks = channels["hook"]
    assert any(h["kind"] == "alert" and h["id"] == f"alert:{aid}" and h["link"].endswith(f"/alerts/{aid}") for h in hooks)
    n_mail, n_hook = len(mails), len(hooks)
    service.scan(rt)
    assert (len(mails), len(hooks)) == (n_mail, n_hook)  # announced once
    assert rt.ledger.query(operation="notify.deliver", limit=10)
    rt.gate.cancel(people["ops_engineer"], op.id)


def test_work_chat_markdown_escapes_values_from_logs(tmp_path: Path, channels: dict[str, Any]) -> None:
    """企业微信 style: a markdown body whose values from outside cannot add links or emphasis."""
    rt = _rt(tmp_path, channels, fmt="wecom")
    aid = _critical(rt, title="brute force [click](http://evil.example)")
    service.scan(rt)
    h = next(h for h in channels["hook"] if h.get("msgtype") == "markdown" and aid in h["markdown"]["content"])
    md = h["markdown"]["content"]
    assert md.startswith("### 【高危告警】") and "\\[click\\]\\(http://evil.example\\)" in md and "\\*\\*203.0.113.9\\*\\*" in md


def test_unacknowledged_messages_escalate_to_a_second_person(tmp_path: Path, channels: dict[str, Any]) -> None:
    """Nobody acknowledged a critical alert for longer than the limit: the second person is mailed; an acknowledged one never escalates."""
    rt = _rt(tmp_path, channels, escalate_after_min=15, escalate_to=["deputy"])
    deputy = person(rt, "deputy", ["secadmin"])
    service.set_subscription(rt, deputy.name, [], "deputy@city.gov.cn")
    a1, a2 = _critical(rt, "first"), _critical(rt, "second")
    service.scan(rt)
    assert not any("deputy@city.gov.cn" in to for to, _ in channels["box"].mails)
    sixteen_ago = (datetime.now(timezone.utc) - timedelta(minutes=16)).isoformat()
    with rt.engine.begin() as c:  # as if sixteen minutes had passed since they were announced
        c.execute(update(messages).where(messages.c.id.in_([f"alert:{a1}", f"alert:{a2}"])).values(created=sixteen_ago))
    me = rt.gate.authenticate(iam.create_token(rt, "deputy")[1], source="127.0.0.1")
    assert rt.gate.submit(me, OperationRequest("notify.ack", f"alert:{a2}", {})).status == "succeeded"
    r = service.scan(rt)
    assert r["escalated"] == 1
    esc = [(to, m) for to, m in channels["box"].mails if "deputy@city.gov.cn" in to]
    assert len(esc) == 1 and "升级" in esc[0][1]["Subject"] and "first" in esc[0][1]["Subject"]
    assert any(h.get("escalated_to") == ["deputy"] for h in channels["hook"])
    assert rt.ledger.query(operation="notify.escalate", limit=5)
    service.scan(rt)
    assert len([1 for to, _ in channels["box"].mails if "deputy@city.gov.cn" in to]) == 1  # once


def test_a_failed_delivery_is_kept_and_retried(tmp_path: Path, channels: dict[str, Any]) -> None:
    """The webhook is down: the message records the error and goes out on a later scan."""
    rt_down = _rt(tmp_path, {**channels, "hook_url": f"http://127.0.0.1:{free_port()}/hook"})  # nobody listens there
    aid = _critical(rt_down, "while the hook is down")
    service.scan(rt_down)
    m = next(m for m in service.recent(rt_down) if m["id"] == f"alert:{aid}")
    assert m["deliveries"]["webhook"].startswith("ConnectError")
    rt = _rt(tmp_path, channels)  # the same state DB; the hook is back
    service.scan(rt)
    m = next(m for m in service.recent(rt) if m["id"] == f"alert:{aid}")
    assert m["deliveries"]["webhook"] == "ok" and any(h.get("id") == f"alert:{aid}" for h in channels["hook"])


def test_alertmanager_routes_prometheus_alerts_to_the_same_webhook(tmp_path: Path, channels: dict[str, Any]) -> None:
    """Alertmanager (the Debian package, started by the supervisor) delivers an alert, as Prometheus sends it, to notify.webhook.url."""
    from control_plane.services import Supervisor

    data = make_test_config(var_dir=tmp_path / "var")
    for other in ("elasticsearch", "prometheus", "postgres", "node_exporter"):
        data["services"][other]["enabled"] = False
    port = free_port()
    data["services"]["alertmanager"] = {"port": port}
    data["notify"] = {"webhook": {"url": channels["hook_url"]}}
    sup = Supervisor(load(write_config(tmp_path / "govctl.yaml", data)))
    sup.up(["alertmanager"])
    try:
        now = datetime.now(timezone.utc)
        alert = [{"labels": {"alertname": "HostDown", "pool": "primary", "host": "prim-app-1", "severity": "critical"},
                  "annotations": {"summary": "prim-app-1 不可达"}, "startsAt": now.isoformat()}]  # fmt: skip
        assert httpx.post(f"http://127.0.0.1:{port}/api/v2/alerts", json=alert, timeout=10).status_code == 200
        got = wait_until(lambda: [h for h in channels["hook"] if h.get("receiver") == "govctl-webhook"], "Alertmanager's webhook call", within=60)
        assert got[0]["alerts"][0]["labels"]["alertname"] == "HostDown" and got[0]["status"] == "firing"
    finally:
        sup.down(["alertmanager"])
