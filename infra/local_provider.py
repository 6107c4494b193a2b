"""The ``local`` target: Python dynamic providers that build each pool's hosts on this machine.

A pool host is a Linux network namespace on a bridge, with its own address, an nftables
"security group", and its own sshd (keys under the pool's storage directory). sshd runs in a
private mount and UTS namespace with overlay mounts over /etc and /var/log and the host's own
hostname, so what a playbook changes on the host stays on the host, never on this machine. Volumes and the
backup bucket are directories under the pool's storage root. Everything is made with the
ordinary tools (iproute2, nft, sshd, ssh-keygen) and removed again on destroy.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pulumi
from pulumi.dynamic import CheckResult, CreateResult, DiffResult, ReadResult, Resource, ResourceProvider, UpdateResult


def sh(*argv: str, check: bool = True, netns: str | None = None, input: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run a command (inside ``netns`` if given); raise with its stderr when it fails."""
    full = ["ip", "netns", "exec", netns, *argv] if netns else list(argv)
    p = subprocess.run(full, capture_output=True, text=True, input=input, timeout=60)
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(full)} failed ({p.returncode}): {(p.stderr or p.stdout).strip()}")
    return p


def _link_exists(name: str) -> bool:
    return sh("ip", "link", "show", name, check=False).returncode == 0


def _netns_exists(name: str) -> bool:
    return name in sh("ip", "netns", "list", check=False).stdout.split()


class BridgeProvider(ResourceProvider):
    """A Linux bridge with the pools' gateway address."""

    def create(self, props: dict[str, Any]) -> CreateResult:
        name, cidr = props["name"], props["gateway_cidr"]
        if not _link_exists(name):
            sh("ip", "link", "add", name, "type", "bridge")
        if cidr not in sh("ip", "-o", "addr", "show", "dev", name).stdout:
            sh("ip", "addr", "add", cidr, "dev", name)
        sh("ip", "link", "set", name, "up")
        return CreateResult(id_=name, outs=dict(props))

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        return ReadResult(id_ if _link_exists(id_) else None, props)

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        if _link_exists(id_):
            sh("ip", "link", "del", id_)


class Bridge(Resource):
    """The network the local pools' hosts sit on."""

    name: pulumi.Output[str]
    gateway_cidr: pulumi.Output[str]

    def __init__(self, resource_name: str, *, name: str, gateway_cidr: str, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(BridgeProvider(), resource_name, {"name": name, "gateway_cidr": gateway_cidr}, opts)


def _sg_script(ns: str, rules: list[dict[str, Any]]) -> str:
    lines = [
        "table inet govctl_sg {",
        "  chain input {",
        "    type filter hook input priority 0; policy drop;",
        "    iif lo accept",
        "    ct state established,related accept",
        "    meta l4proto icmp accept",
    ]
    for r in rules:
        lines.append(f"    ip saddr {r['source']} {r['protocol']} dport {int(r['port'])} accept")  # the engine hands numbers back as floats
    lines += ["  }", "}"]
    return "\n".join(lines) + "\n"


class HostProvider(ResourceProvider):
    """A pool host: network namespace, veth to the bridge, security group, sshd."""

    def check(self, olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        failures = []
        if len(news.get("netns", "")) > 15:
            failures.append({"property": "netns", "reason": "a namespace name here is at most 15 characters"})
        return CheckResult(news, failures)

    def create(self, props: dict[str, Any]) -> CreateResult:
        ns, addr, gw, bridge = props["netns"], props["address"], props["gateway"], props["bridge"]
        home = Path(props["home"])
        veth = "v" + hashlib.sha1(ns.encode()).hexdigest()[:10]
        if _netns_exists(ns):  # create() is only for new hosts: a namespace by this name is left over from a killed run
            self.delete(ns, {**props, "veth": veth, "home": props["home"] + ".stale"})
        try:
            if not _netns_exists(ns):
                sh("ip", "netns", "add", ns)
            if not _link_exists(veth):
                sh("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
            sh("ip", "link", "set", veth, "master", bridge, "up")
            sh("ip", "link", "set", "lo", "up", netns=ns)
            sh("ip", "addr", "replace", addr, "dev", "eth0", netns=ns)
            sh("ip", "link", "set", "eth0", "up", netns=ns)
            sh("ip", "route", "replace", "default", "via", gw, netns=ns)
            sh("nft", "-f", "-", netns=ns, input="flush ruleset\n" + _sg_script(ns, props["ingress"]))
            pid = self._start_sshd(ns, addr.split("/")[0], home, props["authorized_key"])
        except Exception:
            self.delete(ns, {**props, "veth": veth})
            raise
        host_key = (home / "ssh" / "ssh_host_ed25519_key.pub").read_text().strip()
        return CreateResult(id_=ns, outs={**props, "veth": veth, "ip": addr.split("/")[0], "sshd_pid": pid, "host_key": host_key})

    @staticmethod
    def _start_sshd(ns: str, ip: str, home: Path, authorized_key: str) -> int:
        ssh = home / "ssh"
        ssh.mkdir(parents=True, exist_ok=True)
        key = ssh / "ssh_host_ed25519_key"
        if not key.exists():
            sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key))
        (ssh / "authorized_keys").write_text(authorized_key.strip() + "\n")
        os.chmod(ssh / "authorized_keys", 0o600)
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        cfg = ssh / "sshd_config"
        cfg.write_text(
            f"ListenAddress {ip}\nPort 22\nHostKey {key}\nPidFile {ssh / 'sshd.pid'}\n"
            f"AuthorizedKeysFile {ssh / 'authorized_keys'}\nPermitRootLogin prohibit-password\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
            "X11Forwarding no\nAllowTcpForwarding no\nLogLevel VERBOSE\n"
            f"Subsystem sftp internal-sftp\n"
        )
        sh("/usr/sbin/sshd", "-t", "-f", str(cfg))
        mounts = []
        for target in ("/etc", "/var/log"):
            layer = home / "fs" / target.strip("/").replace("/", "_")
            (layer / "upper").mkdir(parents=True, exist_ok=True)
            (layer / "work").mkdir(parents=True, exist_ok=True)
            mounts.append(f"mount -t overlay overlay -o lowerdir={target},upperdir={layer / 'upper'},workdir={layer / 'work'} {target}")
        boot = " && ".join([*mounts, f"hostname {ns.split('-', 1)[1]}", f"exec /usr/sbin/sshd -f {cfg} -E {ssh / 'sshd.log'}"])
        sh("unshare", "--mount", "--uts", "--propagation", "private", "sh", "-c", boot, netns=ns)
        for _ in range(50):
            text = (ssh / "sshd.pid").read_text().strip() if (ssh / "sshd.pid").exists() else ""
            if text.isdigit():  # sshd creates the file before writing it
                return int(text)
            time.sleep(0.1)
        raise RuntimeError(f"sshd in {ns} did not start; see {ssh / 'sshd.log'}")

    def diff(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        keys = ("netns", "address", "gateway", "bridge", "home", "authorized_key", "ingress", "tags")
        changed = [k for k in keys if olds.get(k) != news.get(k)]
        # the security group and the tags (a department's resize: vCPU, memory) change in place
        return DiffResult(changes=bool(changed), replaces=[k for k in changed if k not in ("ingress", "tags")], delete_before_replace=True)

    def update(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        sh("nft", "-f", "-", netns=id_, input="flush ruleset\n" + _sg_script(id_, news["ingress"]))
        return UpdateResult({**olds, **news})

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        return ReadResult(id_ if _netns_exists(id_) else None, props)

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        pidfile = Path(props["home"]) / "ssh" / "sshd.pid"
        if pidfile.exists():
            try:
                os.kill(int(pidfile.read_text().strip()), signal.SIGTERM)
            except (ProcessLookupError, ValueError):
                pass
            pidfile.unlink(missing_ok=True)
        # any process still inside the namespace (sshd sessions, a stray shell) goes with it
        for pid in sh("ip", "netns", "pids", id_, check=False).stdout.split():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
        if _netns_exists(id_):
            sh("ip", "netns", "del", id_)
        veth = props.get("veth")
        if veth and _link_exists(veth):
            sh("ip", "link", "del", veth, check=False)
        shutil.rmtree(Path(props["home"]), ignore_errors=True)


class Host(Resource):
    """One compute instance of a local pool."""

    ip: pulumi.Output[str]
    host_key: pulumi.Output[str]
    netns: pulumi.Output[str]

    def __init__(self, resource_name: str, props: dict[str, Any], opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(HostProvider(), resource_name, {**props, "ip": None, "host_key": None, "sshd_pid": None, "veth": None}, opts)


class DirectoryProvider(ResourceProvider):
    """A directory standing in for a volume or a bucket (mode 0700; removed on destroy unless retained)."""

    def create(self, props: dict[str, Any]) -> CreateResult:
        path = Path(props["path"])
        path.mkdir(parents=True, exist_ok=True)
        os.chmod(path, 0o700)
        (path / ".govctl-volume").write_text(f"kind={props['kind']}\nencrypted={props['encrypted']}\ntags={props['tags']}\n")
        return CreateResult(id_=str(path), outs=dict(props))

    def diff(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        changed = [k for k in ("path", "kind", "encrypted") if olds.get(k) != news.get(k)]
        return DiffResult(changes=bool(changed) or olds.get("tags") != news.get("tags") or olds.get("size_gb") != news.get("size_gb"), replaces=changed)

    def update(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(self.create(news).outs)

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        return ReadResult(id_ if Path(id_).is_dir() else None, props)

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        shutil.rmtree(id_, ignore_errors=True)


class Directory(Resource):
    """A local volume or bucket."""

    path: pulumi.Output[str]

    def __init__(self, resource_name: str, props: dict[str, Any], opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(DirectoryProvider(), resource_name, props, opts)


class PoolKeyProvider(ResourceProvider):
    """A pool's SM4 data key, generated here and stored wrapped (SM4-GCM) under the stack's key-encryption key."""

    def create(self, props: dict[str, Any]) -> CreateResult:
        from control_plane.crypto import sm4, wrap_key

        kek = bytes.fromhex(props["kek_hex"])
        key_id = os.urandom(8).hex()
        wrapped = wrap_key(kek, sm4.generate_key(), f"pool-key|{props['pool']}|{key_id}".encode()).hex()
        path = Path(props["path"])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f'{{"key_id": "{key_id}", "pool": "{props["pool"]}", "cipher": "sm4-gcm", "wrapped": "{wrapped}"}}\n')
        os.chmod(path, 0o600)
        return CreateResult(id_=key_id, outs={"pool": props["pool"], "path": str(path), "key_id": key_id, "kek_hex": props["kek_hex"]})

    def diff(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        return DiffResult(changes=olds.get("path") != news.get("path"), replaces=["path"] if olds.get("path") != news.get("path") else [])

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        Path(props["path"]).unlink(missing_ok=True)


class PoolKey(Resource):
    """A pool's data-encryption key."""

    key_id: pulumi.Output[str]

    def __init__(self, resource_name: str, props: dict[str, Any], opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(PoolKeyProvider(), resource_name, {**props, "key_id": None},
                         pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(additional_secret_outputs=["kek_hex"])))  # fmt: skip
