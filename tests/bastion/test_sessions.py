"""Exec requests, SFTP and scp, kill, lock, a gateway killed mid-session, replay and watch, credential rotation, 50 sessions at once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pexpect
import pytest

from control_plane.bastion import store
from control_plane.bastion.recording import recordings_key, verify
from control_plane.crypto import IntegrityError
from control_plane.gate import OperationRequest
from tests.bastion.conftest import wait_until, Env, free_port
from tests.conftest import write_config

pytestmark = pytest.mark.services
PROMPT = r"[#$] $"



def _wait(pred, what: str, within: float = 20.0):  # type: ignore[no-untyped-def]
    return wait_until(pred, what, within)


def _exec(env: Env, who: str, host: str, command: str) -> pexpect.spawn:
    p = env.person(who, grant=[host])
    return env.spawn(p, f"{who}%{host}", command)


def test_exec_requests_are_judged_whole(env: Env) -> None:
    """ssh bastion 'cmd': an allowed command runs with its exit status; a blocked one never reaches the host (126)."""
    ok = _exec(env, "erin", "prim-app-1", "echo exec-$((6*6)); exit 3")
    ok.expect("exec-36")
    ok.expect(pexpect.EOF)
    ok.close()
    assert ok.exitstatus == 3
    bad = _exec(env, "erin", "prim-app-1", "true && rm -rf / --help")
    bad.expect("已阻断")
    bad.expect(pexpect.EOF)
    bad.close()
    assert bad.exitstatus == 126
    recs = [r.as_dict()["details"] for r in env.ctx.ledger.query(operation="bastion.command", limit=200) if r.actor == "erin"]
    assert {(d["kind"], d["verdict"]["action"]) for d in recs} == {("exec", "allow"), ("exec", "block")}


def test_exec_waits_for_approval(env: Env) -> None:
    """An exec request that needs approval waits (the client is told the request id) and runs once approved."""
    child = _exec(env, "eric", "prim-app-1", "bash /tmp/gb-exec-$((1)).sh 2>/dev/null; echo approved-$((9*9))")
    child.expect(r"审批单 (op-\d{8}-[0-9a-f]{8})")
    op_id = child.match.group(1)
    env.ctx.gate.approve(env.people["approver2"], op_id, "fine")
    child.expect("approved-81")
    child.expect(pexpect.EOF)
    assert env.ctx.gate.get(op_id).status == "succeeded"


def _sftp(env: Env, p, *commands: str) -> str:  # type: ignore[no-untyped-def]
    """An interactive sftp session (batch mode would forbid the TOTP step): each command at the prompt; the transcript."""
    c = pexpect.spawn("sftp", [*_sftp_args(env, p), f"{p.name}%prim-app-1@127.0.0.1"], encoding="utf-8", timeout=30)
    c.expect("OTP: ")
    c.sendline(p.code(env.ctx))
    c.expect("sftp> ")
    seen = ""
    for cmd in commands:
        c.sendline(cmd)
        c.expect("sftp> ")
        seen += c.before
    c.sendline("bye")
    c.expect(pexpect.EOF)
    return seen + c.before


def test_sftp_and_scp(env: Env) -> None:
    """Reads and writes under /tmp pass; a write to /etc is refused until approved, then the same write succeeds once."""
    import re

    p = env.person("frank", grant=["prim-app-1"])
    src = env.tmp / "upload.txt"
    src.write_text("uploaded through the bastion\n")
    _sftp(env, env.person("fred", grant=["prim-app-1"]), f"put {src} /tmp/gb-upload.txt", f"get /tmp/gb-upload.txt {env.tmp / 'back.txt'}")
    assert (env.tmp / "back.txt").read_text() == "uploaded through the bastion\n"

    seen = _sftp(env, p, f"put {src} /etc/gb-motd")
    found = re.search(r"op-\d{8}-[0-9a-f]{8}", seen)
    assert found, seen
    op_id = found.group(0)
    view = env.ctx.gate.get(op_id)
    assert view.params["command"] == "cat > /etc/gb-motd" and view.params["kind"] == "sftp" and view.status == "pending_approval"
    env.ctx.gate.approve(env.people["approver"], op_id, "motd change ok")
    c = pexpect.spawn("scp", [*_sftp_args(env, p), str(src), "frank%prim-app-1@127.0.0.1:/etc/gb-motd"], encoding="utf-8", timeout=30)
    c.expect("OTP: ")
    c.sendline(p.code(env.ctx))
    c.expect(pexpect.EOF)
    c.close()
    assert c.exitstatus == 0, c.before
    assert env.ctx.gate.get(op_id).status == "succeeded"
    # the host's /etc is its own (an overlay): the file is on the host, not on this machine
    upper = env.ctx.settings.var / "pools" / "local" / "primary" / "hosts" / "prim-app-1" / "fs" / "etc" / "upper" / "gb-motd"
    assert upper.read_text() == "uploaded through the bastion\n"
    assert not Path("/etc/gb-motd").exists()
    # the approval was good once: the same write again asks anew
    again = _sftp(env, p, f"put {src} /etc/gb-motd")
    assert re.search(r"op-\d{8}-[0-9a-f]{8}", again) and op_id not in again


def _sftp_args(env: Env, p) -> list[str]:  # type: ignore[no-untyped-def]
    return [a if a != "-p" else "-P" for a in env.ssh_args(p)]


def test_kill_and_lock_end_sessions_within_a_second(env: Env) -> None:
    """kill ends one session; lock ends every session of the person and refuses new logins; both recorded."""
    p = env.person("gina", grant=["prim-app-1", "back-data-1"])
    a = env.spawn(p, "gina%prim-app-1", "-tt")
    a.expect(PROMPT)
    b = env.spawn(p, "gina%back-data-1", "-tt")
    b.expect(PROMPT)
    live = _wait(lambda: [s for s in store.list_sessions(env.ctx, user="gina")] if len(store.list_sessions(env.ctx, user="gina")) == 2 else None,
                 "two live sessions")  # fmt: skip
    first = next(s for s in live if s["host"] == "prim-app-1")
    view = env.ctx.gate.submit(env.people["secadmin"], OperationRequest("bastion.session.kill", first["id"]))
    assert view.status == "succeeded"
    t0 = time.monotonic()
    a.expect("终止")
    a.expect(pexpect.EOF)
    assert time.monotonic() - t0 < 5  # asked within a second; the margin is for a busy machine
    assert _wait(lambda: store.get_session(env.ctx, first["id"])["end_reason"] == "killed", "killed recorded")
    env.ctx.gate.submit(env.people["secadmin"], OperationRequest("bastion.lock", "gina", {"reason": "suspicious activity"}))
    b.expect("锁定")
    b.expect(pexpect.EOF)
    assert _wait(lambda: not store.list_sessions(env.ctx, user="gina"), "no live session left")
    again = pexpect.spawn("ssh", [*env.ssh_args(p, log="INFO"), "gina%prim-app-1@127.0.0.1", "true"], encoding="utf-8", timeout=30)
    again.expect("锁定")
    again.expect(pexpect.EOF)
    ends = [r for r in env.ctx.ledger.query(operation="bastion.session.end", limit=50) if r.actor == "gina"]
    assert {json.loads(r.details)["reason"] for r in ends} == {"killed", "locked"}


def test_recording_verifies_replays_and_detects_tampering(env: Env) -> None:
    """A finished session's recording is complete and signed, its end matches the ledger; replay shows it; one flipped byte is caught."""
    p = env.person("hana", grant=["prim-app-1"])
    c = env.spawn(p, "hana%prim-app-1", "-tt")
    c.expect(PROMPT)
    c.sendline("echo recorded-$((11*11))")
    c.expect("recorded-121")
    c.expect(PROMPT)
    c.sendline("exit")
    c.expect(pexpect.EOF)
    s = _wait(lambda: next((s for s in store.list_sessions(env.ctx, live_only=False, user="hana") if s["ended"]), None), "ended session")
    kek = recordings_key(env.ctx.key_passphrase(), env.ctx.settings.crypto.kdf_iterations)
    v = verify(Path(s["recording"]), kek, env.ctx.signer.public_key, expect_final=s["final_sm3"], events=True)
    assert v.complete and v.signed_by == env.ctx.signer.public_key.key_id and v.reason == "normal"
    assert any(e[1] == "o" and "recorded-121" in e[2] for e in v.events[1:])
    assert any(e[1] == "m" and e[2] == "allow: echo recorded-$((11*11))" for e in v.events[1:])
    end = [r for r in env.ctx.ledger.query(operation="bastion.session.end", limit=50) if json.loads(r.details).get("session") == s["id"]][0]
    assert json.loads(end.details)["final_sm3"] == v.final_sm3
    out = subprocess.run([sys.executable, "-m", "control_plane.cli", "--config", str(env.tmp / "govctl.yaml"), "bastion", "replay", s["id"], "--speed", "0"],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "recorded-121" in out.stdout
    raw = bytearray(Path(s["recording"]).read_bytes())
    raw[len(raw) // 2] ^= 0x01
    bad = env.tmp / "tampered.gcast"
    bad.write_bytes(bytes(raw))
    with pytest.raises(IntegrityError):
        verify(bad, kek, env.ctx.signer.public_key, expect_final=s["final_sm3"])


def test_gateway_killed_mid_session(env: Env) -> None:
    """kill -9 of a gateway process: the recording verifies up to its last whole chunk, and the restart records the end as abnormal."""
    data = json.loads(json.dumps(__import__("yaml").safe_load((env.tmp / "govctl.yaml").read_text())))
    port = free_port()
    data["bastion"]["port"] = port
    cfg = write_config(env.tmp / "second.yaml", data)
    env_vars = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "control_plane.cli", "--config", str(cfg), "bastion", "serve"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env_vars)  # fmt: skip
    try:
        line = ""
        deadline = time.monotonic() + 60
        while "ssh -p" not in line and time.monotonic() < deadline:
            line = proc.stdout.readline()  # type: ignore[union-attr]
        assert "ssh -p" in line, "the gateway did not start"
        p = env.person("ivan", grant=["prim-app-1"])
        argv = [a if a != str(env.port) else str(port) for a in env.ssh_args(p)]
        c = pexpect.spawn("ssh", [*argv, "ivan%prim-app-1@127.0.0.1", "-tt"], encoding="utf-8", timeout=30)
        c.expect("OTP: ")
        c.sendline(p.code(env.ctx))
        c.expect(PROMPT)
        c.sendline("for i in 1 2 3 4 5 6; do echo tick-$((i*10)); sleep 0.7; done")
        c.expect("tick-20")
        s = _wait(lambda: next(iter(store.list_sessions(env.ctx, user="ivan")), None), "live session")
        kek = recordings_key(env.ctx.key_passphrase(), env.ctx.settings.crypto.kdf_iterations)
        _wait(lambda: _chunks(Path(s["recording"]), kek) >= 2, "two sealed chunks")
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        c.expect(pexpect.EOF)
    finally:
        if proc.poll() is None:
            proc.kill()
    v = verify(Path(s["recording"]), kek, env.ctx.signer.public_key)
    assert not v.complete and v.chunks >= 2
    from control_plane.bastion.gateway import Gateway
    from control_plane.config import load
    from control_plane.wiring import context_for

    ended = Gateway(context_for(load(cfg))).recover()
    assert s["id"] in ended
    after = store.get_session(env.ctx, s["id"])
    assert after["end_reason"] == "abnormal: gateway stopped" and after["final_sm3"] == v.final_sm3


def _chunks(path: Path, kek: bytes) -> int:
    try:
        return verify(path, kek).chunks
    except (OSError, IntegrityError, ValueError):
        return 0


def test_rotated_host_key_keeps_access_and_drops_the_old_one(env: Env) -> None:
    """Rotation through the gate (approved): sessions still work with the new key; the old key is refused by the host."""
    import asyncio

    import asyncssh

    from control_plane.deploy import hostkeys

    a = store.asset(env.ctx, "back-data-1")
    old = hostkeys.private_key(env.ctx, "back-data-1")
    view = env.ctx.gate.submit(env.people["secadmin"], OperationRequest("bastion.credentials.rotate", "back-data-1", reason="quarterly"))
    assert view.status == "pending_approval"
    env.ctx.gate.approve(env.people["approver"], view.id, "ok")
    assert env.ctx.gate.run(env.people["secadmin"], view.id).status == "succeeded"

    async def login(key: object) -> bool:
        try:
            async with asyncssh.connect(a.address, username="root", client_keys=[key], known_hosts=None, connect_timeout=10):
                return True
        except asyncssh.PermissionDenied:
            return False

    assert asyncio.run(login(old)) is False
    assert asyncio.run(login(hostkeys.private_key(env.ctx, "back-data-1"))) is True
    c = _exec(env, "jack", "back-data-1", "echo rotated-$((2*2))")
    c.expect("rotated-4")
    c.expect(pexpect.EOF)


def test_fifty_concurrent_sessions(env: Env) -> None:
    """Fifty people at once, each in a recorded session: all fifty are live together and all finish with their own output."""
    go = Path("/tmp/gb-fifty-go")  # the local hosts share this machine's /tmp: the test releases every session at once
    go.unlink(missing_ok=True)
    people = [env.person(f"p{i:02d}", grant=["prim-app-1"]) for i in range(50)]
    children = []
    for i, p in enumerate(people):
        c = pexpect.spawn("ssh", [*env.ssh_args(p), f"{p.name}%prim-app-1@127.0.0.1", f"until [ -e {go} ]; do sleep 0.2; done; echo done-$(({i}*2))"],
                          encoding="utf-8", timeout=120)  # fmt: skip
        c.logfile_read = open(env.tmp / f"fifty-{i:02d}.log", "w", encoding="utf-8")
        children.append(c)
    for p, c in zip(people, children):
        c.expect("OTP: ")
        c.sendline(p.code(env.ctx))
    try:
        _wait(lambda: len(store.list_sessions(env.ctx, limit=200)) >= 50, "fifty live sessions", within=120)
    except AssertionError:
        ended = {i: (env.tmp / f"fifty-{i:02d}.log").read_text()[-300:] for i, c in enumerate(children) if not c.isalive()}
        raise AssertionError(f"{len(store.list_sessions(env.ctx, limit=200))} live; clients that ended: {ended}") from None
    finally:
        go.touch()
    for i, c in enumerate(children):
        c.expect(f"done-{i * 2}")
        c.expect(pexpect.EOF)
    go.unlink(missing_ok=True)
    assert _wait(lambda: not store.list_sessions(env.ctx, limit=200), "all ended", within=60)
