"""Interactive sessions through the bastion with the real OpenSSH client: login, the four verdicts, evasions typed at a prompt."""

from __future__ import annotations

import itertools
import re
import subprocess
import time

import pexpect
import pytest

from control_plane.bastion import store
from tests.bastion.conftest import OUTSIDER_NS, Env

pytestmark = pytest.mark.services
PROMPT = re.compile(r"[#$] $")
UP, LEFT, BS, TAB = "\x1b[A", "\x1b[D", "\x7f", "\t"
_EVASION = itertools.count()


def _shell(env: Env, who: str, host: str = "prim-app-1") -> pexpect.spawn:
    """A shell for ``who`` (a person of the test's own: each TOTP code is good once, so a person logs in only a few times a step)."""
    p = env.person(who, grant=[host])
    child = env.spawn(p, f"{who}%{host}", "-tt")
    child.expect("全程录像")
    child.expect(PROMPT)
    return child


def _settle(child: pexpect.spawn, marker: str) -> None:
    """Wait for a command's output (a marker computed by the shell, so the typed echo never matches) and the next prompt."""
    child.expect(marker)
    child.expect(PROMPT)


def _blocked(child: pexpect.spawn) -> None:
    child.expect("已阻断")
    child.expect("blocked")
    child.expect(PROMPT)


def _commands(env: Env, session: str) -> list[dict]:
    recs = env.ctx.ledger.query(operation="bastion.command", limit=500)
    return [r.as_dict()["details"] for r in sorted(recs, key=lambda r: r.seq) if r.as_dict()["details"].get("session") == session]


def _live_id(env: Env, user: str) -> str:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        live = store.list_sessions(env.ctx, live_only=True, user=user)
        if live:
            return str(live[0]["id"])
        time.sleep(0.2)
    raise AssertionError(f"no live session of {user}")


def test_login_key_and_totp_then_allowed_and_blocked(env: Env) -> None:
    """Key + TOTP opens a recorded shell; an ordinary command runs; rm -rf / is blocked before the host sees it."""
    child = _shell(env, "alice")
    sid = _live_id(env, "alice")
    child.sendline("echo hello-$((6*7))")
    _settle(child, "hello-42")
    child.sendline("rm -rf /")
    _blocked(child)
    child.sendline("echo still-$((1+1))-here")
    _settle(child, "still-2-here")
    child.sendline("exit")
    child.expect(pexpect.EOF)
    log = _commands(env, sid)
    assert [(d["command"], d["verdict"]["action"]) for d in log] == [("echo hello-$((6*7))", "allow"), ("rm -rf /", "block"),
                                                                     ("echo still-$((1+1))-here", "allow"), ("exit", "allow")]  # fmt: skip
    assert "6d17e980-a9a7-5da7-a3d0-214077543b9c" in log[1]["verdict"]["rules"]  # the SOC's own rule, not a second list
    s = store.get_session(env.ctx, sid)
    assert s["end_reason"] == "normal" and s["commands"] == 4 and s["final_sm3"]


@pytest.mark.parametrize("keys,why", [
    (f"rm -rf /tmpXX{BS}{BS}{BS}{BS}{BS}\r", "editing keys: the line is what the shell holds, not what was typed"),
    (f"wipef{TAB}--no-act /dev/loop9\r", "tab completion writes the command name"),
    ("rm -rf \\\r/\r", "a line continuation"),
    ("\x1b[200~echo pasted\rrm -rf /\x1b[201~\r", "a bracketed paste of two lines"),
    ("X=/; rm -rf $X\r", "a variable the analyzer substitutes"),
    ("echo cm0gLXJmIC8= | base64 -d | sh\r", "an encoded payload"),
    ("r''m -rf /\r", "quotes inside the command name"),
    ("sudo /bin/rm -rf /\r", "a wrapper and a full path"),
])  # fmt: skip
def test_evasions_typed_interactively_are_blocked(env: Env, keys: str, why: str) -> None:
    """Each evasion is blocked, and the host never ran it (the marker file it would have removed is still there)."""
    child = _shell(env, f"ev{next(_EVASION)}")
    child.sendline("mkdir -p /tmp/gb-keep && touch /tmp/gb-keep/f && echo ready-$((2*2))")
    _settle(child, "ready-4")
    child.send(keys)
    _blocked(child)
    child.sendline("test -e /tmp/gb-keep/f && echo kept-$((3*3))")
    _settle(child, "kept-9")
    child.sendline("exit")
    child.expect(pexpect.EOF)


def test_history_recall_and_unbracketed_paste(env: Env) -> None:
    """A recalled and edited line is judged as edited; of a pasted block each line is judged, the dangerous one dropped with the rest."""
    child = _shell(env, "hist")
    # the hosts of the local target share this machine's file system outside /etc and /var/log: every command
    # here is harmless even if it ran (a path that does not exist; rm's --preserve-root refuses "/")
    child.sendline("chmod 750 /gbnothing")
    child.expect(PROMPT)
    child.send(f"{UP}\x01\x1bf\x1bf{BS}{BS}{BS}777\r")  # "chmod 750 /gbnothing" recalled, edited to "chmod 777 /gbnothing"
    _blocked(child)
    child.send("echo first-$((7*6))\rchmod 777 /gbnothing\recho never-$((1+1))\r")
    child.expect("first-42")
    child.expect("已阻断")
    child.expect(PROMPT)
    child.sendline("echo after-$((8*8))")
    child.expect("after-64")
    assert "never-2" not in child.before
    child.sendline("exit")
    child.expect(pexpect.EOF)


def test_approval_bound_to_the_exact_command(env: Env) -> None:
    """A script file's body cannot be checked: in the production zone the session pauses until an approver approves that command."""
    child = _shell(env, "appr1")
    sid = _live_id(env, "appr1")
    child.sendline("printf 'echo script-ran-$((4*4))\\n' > /tmp/gb-s.sh && echo written-$((1*3))")
    _settle(child, "written-3")
    child.sendline("bash /tmp/gb-s.sh")
    child.expect(r"审批单 (op-\d{8}-[0-9a-f]{8})")
    op_id = child.match.group(1)
    view = env.ctx.gate.get(op_id)
    assert view.operation == "bastion.command" and view.target == "prim-app-1:root"
    assert view.params == {"command": "bash /tmp/gb-s.sh", "session": sid, "kind": "shell"} and view.requester == "appr1"
    child.send("echo sneaked-in\r")  # nothing typed while paused reaches the host
    with pytest.raises(Exception):
        env.ctx.gate.approve(env.people["ops_engineer"], op_id, "not an approver")
    env.ctx.gate.approve(env.people["approver"], op_id, "script checked")
    child.expect("已批准")
    _settle(child, "script-ran-16")
    assert "sneaked-in" not in child.before
    # the same text again is a new request: an approval is good once
    child.sendline("bash /tmp/gb-s.sh")
    child.expect(r"审批单 (op-\d{8}-[0-9a-f]{8})")
    second = child.match.group(1)
    assert second != op_id
    env.ctx.gate.approve(env.people["approver"], second, decision="reject", comment="not twice")
    child.expect("未获批准")
    child.expect(PROMPT)
    child.sendline("bash /tmp/gb-s.sh")
    child.expect(r"审批单 (op-\d{8}-[0-9a-f]{8})")
    third = child.match.group(1)
    child.send("\x03")  # withdrawn by the person
    child.expect("未获批准")
    child.expect(PROMPT)
    assert env.ctx.gate.get(third).status == "cancelled"
    child.sendline("exit")
    child.expect(pexpect.EOF)
    assert [d["verdict"]["action"] for d in _commands(env, sid) if d["command"] == "bash /tmp/gb-s.sh"] == ["require_approval"] * 3


def test_alert_runs_and_raises(env: Env) -> None:
    """An alert rule lets the line run and raises an alert; in the dev zone a script file runs with an alert instead of waiting."""
    child = _shell(env, "alrt")
    sid = _live_id(env, "alrt")
    child.sendline("cat /etc/shadow | wc -l")
    child.expect("告警")
    child.expect(r"(\d+)\r\n")
    child.expect(PROMPT)
    child.sendline("exit")
    child.expect(pexpect.EOF)
    log = _commands(env, sid)
    assert log[0]["verdict"]["action"] == "alert"
    from control_plane.soc.alerts import get

    alert = get(env.ctx.es, f"bastion-{sid}-1")
    assert alert["severity"] == "medium" and "cat /etc/shadow" in alert["rule"]["title"] and alert["status"] == "open"

    dev = _shell(env, "alrtdev", "back-data-1")
    dev.sendline("printf 'echo dev-ran-$((2*21))\\n' > /tmp/gb-d.sh && bash /tmp/gb-d.sh")
    dev.expect("告警")
    _settle(dev, "dev-ran-42")
    dev.sendline("exit")
    dev.expect(pexpect.EOF)


def test_pager_has_no_shell_escape_and_editors_follow_the_zone(env: Env) -> None:
    """less runs in secure mode (its ! escape refused, the variable read-only); vim and `sudo less` are the zone's interactive case."""
    child = _shell(env, "pager")
    sid = _live_id(env, "pager")
    child.sendline("less /etc/hostname")
    child.expect("prim-app-1")
    child.send("!")
    child.expect("Command not available")
    child.send("q")
    child.expect(PROMPT)
    child.sendline("unset LESSSECURE; echo unset-$((6*7))")
    _blocked(child)
    child.sendline("sudo -n less /etc/hostname | cat; echo sudo-$((6*7))")
    child.expect("告警")
    _settle(child, "sudo-42")
    child.sendline("exit")
    child.expect(pexpect.EOF)
    verdicts = [(c["command"], c["verdict"]["action"]) for c in _commands(env, sid)]
    assert verdicts[0] == ("less /etc/hostname", "allow"), verdicts
    assert verdicts[1][1] == "block" and verdicts[2][1] == "alert", verdicts


def test_refused_host_and_wrong_code(env: Env) -> None:
    """No grant, no session; a wrong code is refused and counted, five failures lock the person out for a while."""
    carol = env.person("carol", grant=["prim-app-1"])
    child = env.spawn(carol, "carol%back-data-1", "true")
    child.expect("没有访问")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 1
    dave = env.person("dave", grant=["prim-app-1"])
    for i in range(5):
        c = pexpect.spawn("ssh", [*env.ssh_args(dave, "-o", "NumberOfPasswordPrompts=1"), "dave%prim-app-1@127.0.0.1", "true"], encoding="utf-8", timeout=30)
        c.expect("OTP: ")
        c.sendline("000000")
        c.expect(pexpect.EOF)
    c = pexpect.spawn("ssh", [*env.ssh_args(dave, log="INFO"), "dave%prim-app-1@127.0.0.1", "true"], encoding="utf-8", timeout=30)
    c.expect("临时锁定")
    c.expect(pexpect.EOF)
    refused = env.ctx.ledger.query(operation="bastion.login", limit=50)
    assert sum(1 for r in refused if r.actor == "dave" and r.decision == "deny") >= 5


def test_hosts_take_ssh_only_from_the_bastion(env: Env) -> None:
    """The hosts' security group admits SSH from the control plane's address only: another machine on the same network is refused."""
    ip = env.hosts["prim-app-1"]
    code = f"import socket; socket.create_connection(('{ip}', 22), timeout=3).close()"
    outside = subprocess.run(["ip", "netns", "exec", OUTSIDER_NS, "python3", "-c", code], capture_output=True, text=True, timeout=30)
    assert outside.returncode != 0, "a host accepted SSH from outside the bastion"
    inside = subprocess.run(["python3", "-c", code], capture_output=True, text=True, timeout=30)
    assert inside.returncode == 0, inside.stderr
