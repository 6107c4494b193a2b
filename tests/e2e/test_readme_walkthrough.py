"""The README's walk-through, command by command, with the real govctl: pools, hardening, block, unblock, audit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pyotp

from tests.conftest import make_test_config, write_config
from tests.deploy.test_local_stack import TEST_STACK, _netns


def test_walkthrough(tmp_path: Path) -> None:
    """Every step the README shows works as written, through the gate, and lands in the audit trail."""
    data = make_test_config(var_dir=tmp_path / "var")
    data["deploy"] = {"stacks": {"local": TEST_STACK}}
    cfg = write_config(tmp_path / "govctl.yaml", data)

    env0 = {**os.environ, "COLUMNS": "200", "GOVCTL_CONFIG": str(cfg)}
    env0.pop("GOVCTL_TOKEN", None)

    def govctl(*args: str, token: str | None = None, ok: bool = True, extra_env: dict | None = None) -> dict | list:
        env = {**env0, **({"GOVCTL_TOKEN": token} if token else {}), **(extra_env or {})}  # tokens never on the command line
        p = subprocess.run([sys.executable, "-m", "control_plane.cli", *args, "--json"], capture_output=True, text=True, env=env, timeout=300)
        assert (p.returncode == 0) == ok, (args, p.returncode, p.stderr[-2000:])
        return json.loads(p.stdout) if p.stdout.strip() else {}

    def enrol(name: str, code: str) -> tuple[str, pyotp.TOTP]:
        """`govctl iam enrol NAME` as the person would: the code, then the authenticator's current code, on stdin."""
        p = subprocess.Popen([sys.executable, "-m", "control_plane.cli", "iam", "enrol", name, "--json"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env0)  # fmt: skip
        p.stdin.write(code + "\n")
        p.stdin.flush()
        uri = ""
        while "otpauth://" not in uri:
            line = p.stderr.readline()
            assert line, "enrolment printed no otpauth URI"
            uri = line.strip()
        totp = pyotp.parse_uri(uri)
        out, err = p.communicate(totp.now() + "\n", timeout=120)
        assert p.returncode == 0, err
        return json.loads(out)["token"], totp

    totps: dict[str, pyotp.TOTP] = {}
    used: dict[str, int] = {}

    def otp(name: str) -> str:
        """The approver's next unused code (each is good once; waits for the next 30 s step when needed, bounded)."""
        deadline = time.monotonic() + 65
        while True:
            step = int(time.time()) // 30
            for s in (step, step + 1):
                if s > used.get(name, 0):
                    used[name] = s
                    return totps[name].at(s * 30)
            assert time.monotonic() < deadline
            time.sleep(1)

    def approve_and_run(view: dict, requester: str, approvers: list[str]) -> dict:
        assert view["status"] == "pending_approval", view
        for a in approvers:
            govctl("ops", "approve", view["id"], "--comment", "checked", token=tokens[a], extra_env={"GOVCTL_OTP": otp(a)})
        return govctl("ops", "run", view["id"], token=requester)

    codes = govctl("iam", "bootstrap")
    tokens = {}
    for u in ("ops", "secadmin", "approver1", "approver2", "auditor"):
        tokens[u], totps[u] = enrol(u, codes[u]["enrolment_code"])
        used[u] = int(time.time()) // 30  # enrolment used this step's code (at the latest): approvals start after it
    ops, sec, auditor = tokens["ops"], tokens["secadmin"], tokens["auditor"]
    a1, a2 = "approver1", "approver2"
    try:
        assert govctl("deploy", "preview", token=ops)["status"] == "succeeded"
        view = govctl("deploy", "up", "--reason", "initial pools", token=ops)
        shown = govctl("ops", "show", view["id"], token=tokens[a1])
        assert shown["preview"]["steps"] and shown["soc"]["action"] == "allow" and shown["soc"]["reasons"][0].startswith("no rule matched")
        assert approve_and_run(view, ops, [a1])["status"] == "succeeded"
        outs = govctl("deploy", "outputs", token=ops)
        assert set(outs["primary_hosts"]) == {"prim-app-1", "prim-data-1"}

        check = govctl("playbook", "run", "baseline", "--limit", "local", "--check", token=ops)
        assert check["status"] == "succeeded" and check["result"]["check"] is True
        base = govctl("playbook", "run", "baseline", "--limit", "local", "--reason", "MLPS baseline", token=ops)
        assert approve_and_run(base, ops, [a1])["result"]["status"] == "successful"
        block = govctl("playbook", "run", "block_ip", "--limit", "prim-app-1", "-e", "ip=10.78.3.9", "--reason", "ssh brute force", token=sec)
        assert approve_and_run(block, sec, [a2])["result"]["changed"] == {"prim-app-1": 1}
        unblock = govctl("playbook", "run", "unblock_ip", "--limit", "prim-app-1", "-e", "ip=10.78.3.9", "--reason", "false positive", token=sec)
        assert approve_and_run(unblock, sec, [a1])["result"]["changed"] == {"prim-app-1": 1}
        govctl("playbook", "run", "block_ip", "--limit", "db-9", "-e", "ip=1.2.3.4", token=sec, ok=False)

        trail = govctl("audit", "show", "--since", "1h", "--limit", "2000", token=auditor)
        seen = {(r["operation"], r["outcome"]) for r in trail}
        for expected in [("deploy.up", "accepted"), ("ops.approve", "succeeded"), ("deploy.step", "succeeded"),
                         ("deploy.up", "succeeded"), ("playbook.run", "succeeded"), ("playbook.task", "changed"),
                         ("playbook.run", "refused")]:  # fmt: skip
            assert expected in seen, expected
        assert govctl("audit", "verify")["ok"] is True
    finally:
        if {n for n in _netns() if n.startswith("gt-")}:
            destroy = govctl("deploy", "destroy", "--reason", "walk-through done", token=ops)
            assert approve_and_run(destroy, ops, [a1, a2])["status"] == "succeeded"
    assert not {n for n in _netns() if n.startswith("gt-")}
