"""Bastion fixtures: a deployed two-host stack, the gateway on a port of its own, and people with keys, TOTP and grants.

Everything is real: the hosts are network namespaces with their own sshd, the gateway is the
product's, clients are OpenSSH's ``ssh``/``sftp``/``scp`` driven through pexpect.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pexpect
import pyotp
import pytest

from control_plane.config import load
from control_plane.context import Context
from control_plane.gate import OperationRequest, iam
from control_plane.wiring import context_for
from tests.conftest import make_test_config, write_config
from tests.gate.conftest import People, make_people

STACK = {
    "target": "local", "department": "city-big-data-bureau", "classification": "sensitive",
    "local_bridge": "govbbr0", "local_gateway": "10.79.0.1/16", "local_prefix": "gb",
    "pools": {"primary": {"role": "primary", "zone": "prod-a", "cidr": "10.79.1.0/24", "tiers": {"app": {"count": 1}, "data": {"count": 0}}},
              "backup": {"role": "backup", "zone": "dev-b", "cidr": "10.79.2.0/24", "tiers": {"data": {"count": 1, "data_tier": True}}}},
}  # fmt: skip
OUTSIDER_NS, OUTSIDER_IP = "gb-outsider", "10.79.3.50"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(pred, what: str, within: float = 20.0):  # type: ignore[no-untyped-def]
    """Poll ``pred`` until it returns something truthy (returned), or fail saying what did not happen within ``within`` s."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        got = pred()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError(f"not within {within}s: {what}")


def sh(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


@dataclass
class Person:
    """Someone who logs in: their key file and authenticator."""

    name: str
    key: Path
    totp: pyotp.TOTP
    token: str
    granted: set[str] = field(default_factory=set)

    def code(self, ctx: Context) -> str:
        """A code for a step the bastion has not seen from this person (each code is good once): waits for the next step if needed."""
        while True:
            last = (iam.get_user(ctx, self.name) or {}).get("totp_last_step") or 0
            now = int(time.time()) // 30
            step = max(last + 1, now - 1)
            if step <= now + 1 and step * 30 <= time.time() + 25:  # the server accepts one step either side of its own
                return self.totp.at(step * 30)
            time.sleep(1)


@dataclass
class Env:
    """The bastion test world."""

    ctx: Context
    people: People
    port: int
    hosts: dict[str, str]
    tmp: Path
    persons: dict[str, Person] = field(default_factory=dict)
    spawned: int = 0

    def person(self, name: str, roles: list[str] | None = None, *, grant: list[str] | None = None, account: str = "root") -> Person:
        """A person with an enrolled TOTP, a registered key (through the gate) and, if asked, an approved grant."""
        if name in self.persons:
            p = self.persons[name]
            missing = [h for h in grant or [] if h not in p.granted]
            if missing:
                self.grant(name, missing, account)
                p.granted.update(missing)
            return p
        ctx = self.ctx
        _, enrol_code = iam.create_user(ctx, name, roles=roles or ["ops_engineer"])
        totp = pyotp.parse_uri(iam.start_enrolment(ctx, name, enrol_code))
        if time.time() % 30 > 29:  # the previous step's code, still good, leaves this step and the next for two logins
            time.sleep(1.2)
        _, token, _ = iam.finish_enrolment(ctx, name, enrol_code, totp.at(time.time() - 30))
        key = self.tmp / "keys" / name
        key.parent.mkdir(parents=True, exist_ok=True)
        sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"{name}@laptop", "-f", str(key))
        me = ctx.gate.authenticate(token, source="127.0.0.1")
        done = ctx.gate.submit(me, OperationRequest("bastion.key.add", name, {"public_key": key.with_suffix(".pub").read_text()}))
        assert done.status == "succeeded", done.as_dict()
        p = Person(name, key, totp, token)
        self.persons[name] = p
        if grant:
            self.grant(name, grant, account)
            p.granted.update(grant)
        return p

    def grant(self, name: str, hosts: list[str], account: str = "root", hours: float = 8) -> str:
        """A grant asked for by a security administrator and approved by an approver."""
        gate = self.ctx.gate
        view = gate.submit(self.people["secadmin"], OperationRequest("bastion.grant.add", name, {"hosts": hosts, "account": account, "hours": hours},
                                                                     reason="test access"))  # fmt: skip
        assert view.status == "pending_approval", view.as_dict()
        gate.approve(self.people["approver"], view.id, "ok")
        return str(gate.run(self.people["secadmin"], view.id).result["id"])

    def ssh_args(self, p: Person, *extra: str, log: str = "ERROR") -> list[str]:
        """OpenSSH client options for the gateway: this person's key only, the gateway's host key pinned on first use.

        ``log="INFO"`` shows the server's banner (where the bastion says why it refuses a login), as ssh does by default.
        """
        return ["-p", str(self.port), "-i", str(p.key), "-o", "IdentitiesOnly=yes", "-o", f"UserKnownHostsFile={self.tmp / 'known_hosts'}",
                "-o", "StrictHostKeyChecking=accept-new", "-o", "PreferredAuthentications=publickey,keyboard-interactive",
                "-o", f"LogLevel={log}", "-o", "ServerAliveInterval=5", *extra]  # fmt: skip

    def spawn(self, p: Person, login: str, *args: str, program: str = "ssh", timeout: float = 30) -> pexpect.spawn:
        """Start an OpenSSH client and answer the TOTP prompt."""
        argv = self.ssh_args(p) if program == "ssh" else [a if a != "-p" else "-P" for a in self.ssh_args(p)]
        child = pexpect.spawn(program, [*argv, f"{login}@127.0.0.1", *args], encoding="utf-8", timeout=timeout,
                              dimensions=(40, 160), env={**os.environ, "TERM": "xterm", "LANG": "C.UTF-8"})  # fmt: skip
        self.spawned += 1
        child.logfile_read = open(self.tmp / f"client-{self.spawned:03d}-{login}.log", "w", encoding="utf-8")  # what the person saw, for a failure's post-mortem
        child.expect("OTP: ")
        child.sendline(p.code(self.ctx))
        return child


@pytest.fixture(scope="package")
def env(tmp_path_factory: pytest.TempPathFactory, services: object) -> Iterator[Env]:
    """The stack deployed once for the bastion tests, the gateway listening, an outsider host on the same bridge."""
    from control_plane.bastion.gateway import Gateway
    from control_plane.deploy import service as deploy

    tmp = tmp_path_factory.mktemp("bastion")
    port = free_port()
    data = make_test_config(var_dir=tmp / "var", bastion={"port": port, "approval_timeout_s": 60, "chunk_s": 0.5,
                                                           "zones": {"dev-b": {"undecidable": "alert", "interactive": "allow"}}})  # fmt: skip
    data["deploy"] = {"stacks": {"local": STACK}}
    cfg = write_config(tmp / "govctl.yaml", data)
    ctx = context_for(load(cfg))
    # deployed from another process: a process that ran the Pulumi engine (gRPC threads) cannot fork the ssh clients pexpect starts
    _deploy(cfg, "up")
    outs = deploy.outputs(ctx, "local")
    hosts = {**outs["primary_hosts"], **outs["backup_hosts"]}
    sh("ip", "netns", "add", OUTSIDER_NS)
    sh("ip", "link", "add", "vgboutside", "type", "veth", "peer", "name", "eth0", "netns", OUTSIDER_NS)
    sh("ip", "link", "set", "vgboutside", "master", STACK["local_bridge"], "up")
    sh("ip", "netns", "exec", OUTSIDER_NS, "ip", "addr", "add", f"{OUTSIDER_IP}/16", "dev", "eth0")
    sh("ip", "netns", "exec", OUTSIDER_NS, "ip", "link", "set", "eth0", "up")
    sh("ip", "netns", "exec", OUTSIDER_NS, "ip", "link", "set", "lo", "up")
    gw = Gateway(ctx)
    gw.serve_in_thread()
    e = Env(ctx, make_people(ctx), port, hosts, tmp)
    e.gateway = gw  # type: ignore[attr-defined]
    try:
        yield e
    finally:
        gw.shutdown()
        sh("ip", "netns", "del", OUTSIDER_NS)
        sh("ip", "link", "del", "vgboutside")
        _deploy(cfg, "destroy")


def _deploy(cfg: Path, action: str) -> None:
    code = ("import sys; from control_plane.config import load; from control_plane.wiring import context_for; "
            "from control_plane.deploy import service as d; ctx = context_for(load(sys.argv[1])); getattr(d, sys.argv[2])(ctx, 'local')")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code, str(cfg), action], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
