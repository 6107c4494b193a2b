"""The console's web terminal and session pages against the bastion test world: a real host, the real gateway code, a real browser.

A person signed in to the console opens a granted host in xterm.js; an ordinary line runs, rm -rf /
is refused before the host sees it; a security administrator replays the recording beside its
command log, and ends a live web session from the sessions page.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from control_plane.bastion import store
from tests.bastion.conftest import Env, wait_until
from tests.console.kit import Person, Server, axe, login, person, shot

pytestmark = pytest.mark.services
SCREEN = """() => { const b = window.govctlTerminal.buffer.active; const out = [];
  for (let i = 0; i < b.length; i++) out.push(b.getLine(i).translateToString(true)); return out.join("\\n"); }"""


@pytest.fixture(scope="module")
def console(env: Env) -> Iterator[dict[str, Any]]:
    """The console served on the bastion world's runtime; an operator with a grant and a security administrator, both with passwords."""
    webop = person(env.ctx, "webop", ["ops_engineer"])
    env.grant("webop", ["prim-app-1"])
    websec = person(env.ctx, "websec", ["secadmin"])
    with Server(env.ctx) as srv:
        yield {"url": srv.url, "webop": webop, "websec": websec}


def _screen(page: Any) -> str:
    return str(page.evaluate(SCREEN))


def _wait_screen(page: Any, text: str, within: float = 30) -> str:
    return str(wait_until(lambda: (s := _screen(page)) and text in s and s, f"{text!r} on the web terminal", within))


def _open(page: Any, url: str) -> None:
    page.goto(f"{url}/terminal")
    page.click("button:has-text('连接')")
    _wait_screen(page, "全程录像")
    _wait_screen(page, "# ")


def _type(page: Any, line: str) -> None:
    page.click("#terminal")
    page.keyboard.type(line)
    page.keyboard.press("Enter")


def test_web_terminal_runs_a_line_and_refuses_rm_rf(env: Env, console: dict[str, Any], page: Any, browser: Any) -> None:
    """Through the console: the shell is the bastion's (recorded, judged); a blocked line never runs; the replay shows both lines."""
    url, ctx = console["url"], env.ctx
    login(page, url, console["webop"], ctx)
    page.goto(f"{url}/terminal")
    assert "root@prim-app-1" in page.inner_text("#t-host")
    assert not axe(page, "terminal"), "the terminal page has serious accessibility violations"
    _open(page, url)
    sid = wait_until(lambda: next((s["id"] for s in store.list_sessions(ctx, live_only=True, user="webop")), None), "webop's live web session")
    sess = store.get_session(ctx, sid)
    assert sess["gateway"].startswith("web:") and sess["kind"] == "shell" and sess["host"] == "prim-app-1"
    _type(page, "echo web-$((6*7))")
    _wait_screen(page, "web-42")
    _type(page, "rm -rf /")
    screen = _wait_screen(page, "已阻断")
    assert "blocked" in screen
    _type(page, "ls / | wc -l")
    wait_until(lambda: any(line.strip().isdigit() and int(line.strip()) > 5 for line in _screen(page).splitlines()), "the host's / still there")
    verdicts = {d["command"]: d["verdict"]["action"] for d in
                (r.as_dict()["details"] for r in ctx.ledger.query(operation="bastion.command", actor="webop", limit=50)) if d.get("session") == sid}  # fmt: skip
    assert verdicts.get("rm -rf /") == "block" and verdicts.get("echo web-$((6*7))") == "allow"
    page.goto(f"{url}/")  # leaving the page closes the socket: the session ends and its recording is sealed
    wait_until(lambda: store.get_session(ctx, sid)["ended"], "the web session to end when the page closed")

    c = browser.new_context(locale="zh-CN", timezone_id="Asia/Shanghai", viewport={"width": 1366, "height": 900}, bypass_csp=True)
    sec = c.new_page()
    try:
        login(sec, url, console["websec"], ctx)
        sec.goto(f"{url}/sessions")
        assert not axe(sec, "sessions")
        sec.click(f"a[href='/sessions/{sid}'] >> nth=0")
        assert "录像完整性已验证" in sec.inner_text("#rec-verified")
        cmds = sec.inner_text("ol.cmds")
        assert "block: rm -rf /" in cmds and "allow: echo web-$((6*7))" in cmds
        sec.wait_for_selector("#player .ap-player, #player .ap-wrapper", timeout=15000)  # asciinema-player drew itself
        sec.click("button.seek >> nth=-1")  # jump to the last command
        # the player draws each wide character in its own cell: compare without the layout's whitespace
        sec.wait_for_function("() => document.querySelector('#player').innerText.replace(/\\s/g, '').includes('已阻断')", timeout=15000)
        assert not axe(sec, "replay")
        shot(sec, "replay", readme=True)
        assert ctx.ledger.query(operation="bastion.replay", actor="websec")
    finally:
        c.close()


def test_a_live_web_session_is_watched_then_ended_from_the_sessions_page(env: Env, console: dict[str, Any], page: Any, browser: Any) -> None:
    """A security administrator watches a live web session read-only, then ends it with one click (a gated bastion.session.kill)."""
    url, ctx = console["url"], env.ctx
    login(page, url, console["webop"], ctx)
    _open(page, url)
    sid = wait_until(lambda: next((s["id"] for s in store.list_sessions(ctx, live_only=True, user="webop")), None), "webop's live web session")
    c = browser.new_context(bypass_csp=True)
    sec = c.new_page()
    try:
        login(sec, url, console["websec"], ctx)
        sec.goto(f"{url}/sessions/{sid}")  # live: watched read-only while the person works
        sec.wait_for_function("() => window.govctlWatch !== undefined")
        _type(page, "echo watched-$((5*5))")
        wait_until(lambda: "watched-25" in str(sec.evaluate(SCREEN.replace("govctlTerminal", "govctlWatch"))), "the watcher to see the line's output")
        assert ctx.ledger.query(operation="bastion.watch", actor="websec")
        sec.goto(f"{url}/sessions")
        sec.locator("tr", has_text=sid).locator("button:has-text('终止')").click()
        assert "bastion.session.kill" in sec.inner_text(".flash")
        _wait_screen(page, "会话已被管理员终止", within=20)
        wait_until(lambda: store.get_session(ctx, sid)["end_reason"] == "killed", "the session recorded as killed")
    finally:
        c.close()
