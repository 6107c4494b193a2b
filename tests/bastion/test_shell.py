"""Interactive sessions through the bastion with the real OpenSSH client: login, the four verdicts, evasions typed at a prompt."""

from __future__ import annotations

import re

import pexpect
import pytest

from tests.bastion.conftest import Env

pytestmark = pytest.mark.services
PROMPT = re.compile(r"[#$] $")


def _shell(env: Env, who: str = "alice", host: str = "prim-app-1") -> pexpect.spawn:
    p = env.person(who, grant=[host])
    child = env.spawn(p, f"{who}%{host}", "-tt")
    child.expect("全程录像")
    child.expect(PROMPT)
    return child


def test_login_key_and_totp_then_allowed_and_blocked(env: Env) -> None:
    """Key + TOTP opens a recorded shell; an ordinary command runs; rm -rf / is blocked before the host sees it."""
    child = _shell(env)
    child.sendline("echo hello-$((6*7))")
    child.expect("hello-42")
    child.expect(PROMPT)
    child.sendline("rm -rf /")
    child.expect("已阻断")
    child.expect("blocked")
    child.expect(PROMPT)
    child.sendline("echo still-$((1+1))-here")
    _settle(child, "still-2-here")
    child.sendline("exit")
    child.expect(pexpect.EOF)


def _settle(child: pexpect.spawn, marker: str) -> None:
    """Wait for a command's output (a marker computed by the shell, so the typed echo never matches)."""
    child.expect(marker)
    child.expect(PROMPT)
