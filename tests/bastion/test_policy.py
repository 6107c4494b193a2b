"""Watching a live session, the session-length rules, and shell activity as the SOC sees it (events, a correlation, inline context)."""

from __future__ import annotations

import json
import os
import re
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pexpect
import pytest

from control_plane import clock
from control_plane.bastion import store
from control_plane.bastion.gateway import Gateway
from control_plane.config import load
from control_plane.wiring import context_for
from tests.bastion.conftest import wait_until, Env, Person, free_port
from tests.conftest import write_config

pytestmark = pytest.mark.services
PROMPT = re.compile(r"[#$] $")



def _wait(pred, what: str, within: float = 30.0):  # type: ignore[no-untyped-def]
    return wait_until(pred, what, within)


def _live(env: Env, user: str) -> dict:
    return _wait(lambda: next(iter(store.list_sessions(env.ctx, live_only=True, user=user)), None), f"a live session of {user}")


def _shell(env: Env, p: Person, host: str = "prim-app-1", port: int | None = None) -> pexpect.spawn:
    argv = env.ssh_args(p)
    if port is not None:
        argv = [a if a != str(env.port) else str(port) for a in argv]
    c = pexpect.spawn("ssh", [*argv, f"{p.name}%{host}@127.0.0.1", "-tt"], encoding="utf-8", timeout=30,
                      dimensions=(40, 160), env={**os.environ, "TERM": "xterm", "LANG": "C.UTF-8"})  # fmt: skip
    c.logfile_read = open(env.tmp / f"policy-{p.name}-{time.monotonic_ns()}.log", "w", encoding="utf-8")
    c.expect("OTP: ")
    c.sendline(p.code(env.ctx))
    c.expect("全程录像")
    c.expect(PROMPT)
    return c


def test_watch_follows_a_live_session_read_only(env: Env) -> None:
    """govctl bastion watch shows what the person sees while the session runs, and stops when it ends."""
    p = env.person("wendy", grant=["prim-app-1"])
    c = _shell(env, p)
    sid = _live(env, "wendy")["id"]
    w = pexpect.spawn(sys.executable, ["-m", "control_plane.cli", "--config", str(env.tmp / "govctl.yaml"), "bastion", "watch", sid],
                      encoding="utf-8", timeout=60, env={**os.environ, "LANG": "C.UTF-8"})  # fmt: skip
    try:
        w.expect("全程录像")  # the session's banner, from the recording's first chunk
        c.sendline("echo watched-$((7*7))")
        c.expect("watched-49")
        c.expect(PROMPT)
        w.expect("watched-49")
        w.send("touch /tmp/gb-watcher-typed\r")  # a watcher's keys go nowhere
        c.sendline("exit")
        c.expect(pexpect.EOF)
        w.expect(rf"watch of {sid} ends")
        w.expect(pexpect.EOF)
    finally:
        w.close(force=True)
    assert not Path("/tmp/gb-watcher-typed").exists()
    commands = [json.loads(r.details)["command"] for r in sorted(env.ctx.ledger.query(operation="bastion.command", limit=500), key=lambda r: r.seq)
                if json.loads(r.details).get("session") == sid]  # fmt: skip
    assert commands == ["echo watched-$((7*7))", "exit"]


@pytest.fixture()
def strict_gateway(env: Env) -> Iterator[int]:
    """A second gateway on the same state whose policy ends sessions after 5 s idle or 12 s in all."""
    data = json.loads(json.dumps(__import__("yaml").safe_load((env.tmp / "govctl.yaml").read_text())))
    port = free_port()
    data["bastion"].update({"port": port, "idle_timeout_s": 5, "max_session_s": 12})
    gw = Gateway(context_for(load(write_config(env.tmp / "strict.yaml", data))))
    gw.serve_in_thread()
    try:
        yield port
    finally:
        gw.shutdown()


def test_idle_timeout_and_maximum_session_length(env: Env, strict_gateway: int) -> None:
    """A silent session ends after the idle timeout; a busy one runs until the maximum length; each says why, in the ledger too."""
    idle = _shell(env, env.person("idris", grant=["prim-app-1"]), port=strict_gateway)
    busy = _shell(env, env.person("bea", grant=["prim-app-1"]), port=strict_gateway)
    busy_started = clock.parse(_live(env, "bea")["started"])
    idle.expect("空闲超过 5 秒", timeout=30)
    idle.expect(pexpect.EOF)
    n = 0
    while busy.isalive():
        n += 1
        busy.sendline(f"echo busy-{n}")
        i = busy.expect(["最长时长", r"busy-\d+\r\n", pexpect.EOF, pexpect.TIMEOUT], timeout=3)
        if i == 0:
            break
        assert n < 60, "the session outlived its maximum length by far"
        time.sleep(1)
    busy.expect(pexpect.EOF)
    ends = {}
    for who in ("idris", "bea"):
        s = _wait(lambda: next((s for s in store.list_sessions(env.ctx, live_only=False, user=who) if s["ended"]), None), f"{who}'s end")
        ends[who] = s
    assert ends["idris"]["end_reason"] == "idle timeout"
    assert ends["bea"]["end_reason"] == "maximum session length"
    assert clock.parse(ends["bea"]["ended"]) - busy_started >= timedelta(seconds=12)
    ledger = {json.loads(r.details)["session"]: json.loads(r.details)["reason"] for r in env.ctx.ledger.query(operation="bastion.session.end", limit=500)}
    assert ledger[ends["idris"]["id"]] == "idle timeout" and ledger[ends["bea"]["id"]] == "maximum session length"


def test_shell_activity_is_soc_data_and_repeated_blocks_need_approval(env: Env, tmp_path: Path) -> None:
    """Judged lines become govctl.bastion events; three blocks by one person raise the correlation, and then their next line waits."""
    from control_plane.audit.mirror import mirror
    from control_plane.soc import alerts, detect
    from control_plane.soc.rules import RULES_DIR, load_rules

    ctx = env.ctx
    p = env.person("mallet", grant=["prim-app-1"])
    c = _shell(env, p)
    sid = _live(env, "mallet")["id"]
    for line in ("rm -rf /", "X=rm; $X -rf / --no-preserve-root", "echo cm0gLXJmIC8K | base64 -d | sh"):
        c.sendline(line)
        c.expect("已阻断")
        c.expect(PROMPT)
    res = mirror(ctx.ledger, ctx.es, ctx.settings.audit.es_index, feeds=ctx.wiring.audit_feeds)
    assert res.error is None
    ctx.es.indices.refresh(index="soc-events-*")
    hits = ctx.es.search(index="soc-events-*", size=20, query={"bool": {"filter": [
        {"term": {"event.dataset": "govctl.bastion"}}, {"term": {"govctl.session": sid}}]}})["hits"]["hits"]  # fmt: skip
    got = sorted((h["_source"]["process"]["command_line"], h["_source"]["event"]["action"]) for h in hits)
    assert got == sorted([("rm -rf /", "block"), ("X=rm; $X -rf / --no-preserve-root", "block"), ("echo cm0gLXJmIC8K | base64 -d | sh", "block")])
    src = hits[0]["_source"]
    assert (src["user"]["name"], src["host"]["name"], src["user"]["target"]["name"]) == ("mallet", "prim-app-1", "root")

    # scheduled detection raises the correlation for this person
    rules = tmp_path / "rules"
    rules.mkdir()
    for name in ("bastion_command_blocked", "bastion_repeated_blocks"):
        (rules / f"{name}.yml").write_text((RULES_DIR / f"{name}.yml").read_text())
    rs = load_rules(rules)
    assert not rs.issues and len(rs.correlations) == 1
    now = clock.now() + timedelta(seconds=5)  # past detection's settle time for events mirrored a moment ago
    assert not detect.run(ctx, rs, now=now).errors
    raised = [a for a in alerts.search(ctx.es, limit=1000, since=clock.iso(now - timedelta(minutes=15))) if a["group_key"] == "user.name=mallet"]
    assert [a["rule"]["name"] for a in raised] == ["bastion_repeated_blocks"], raised

    # the inline context: the same person's next, harmless line now waits for an approver
    c.sendline("echo after-$((3*3))")
    c.expect(r"审批单 (op-\d{8}-[0-9a-f]{8})")
    op_id = c.match.group(1)
    view = ctx.gate.get(op_id)
    assert "a97d2d8d-41f2-445e-b30e-2d8d5faec5fe" in view.soc["matched_rules"], view.soc
    ctx.gate.approve(env.people["approver"], op_id, "checked with mallet by phone")
    c.expect("after-9")
    c.expect(PROMPT)
    c.sendline("exit")
    c.expect(pexpect.EOF)
    # somebody else is not affected
    other = _shell(env, env.person("calm", grant=["prim-app-1"]))
    other.sendline("echo calm-$((4*4))")
    other.expect("calm-16")
    other.expect(PROMPT)
    other.sendline("exit")
    other.expect(pexpect.EOF)
