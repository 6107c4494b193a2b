"""Log lines into ECS events: OpenSSH, sudo, su, useradd/usermod (syslog) and auditd records.

Each parser returns an ECS dict, or raises ParseError with the reason (the line then goes to the
dead-letter index). ``event.original`` keeps the raw line.
"""

from __future__ import annotations

import json
import re
import shlex
from datetime import datetime, timezone
from typing import Any

from control_plane.errors import GovctlError


class ParseError(GovctlError):
    """A line that no parser understands."""

    http_status = 422
    exit_code = 2


# RFC 3164 ("Nov 25 10:01:02 host prog[pid]: msg") and RFC 5424-ish ISO timestamps.
_SYSLOG = re.compile(
    r"^(?:<\d+>)?(?P<ts>(?:\w{3}\s+\d{1,2}\s\d\d:\d\d:\d\d)|(?:\d{4}-\d\d-\d\dT[\d:.]+(?:Z|[+-]\d\d:?\d\d)?))\s+"
    r"(?P<host>\S+)\s+(?P<prog>[\w./-]+)(?:\[(?P<pid>\d+)\])?:\s?(?P<msg>.*)$"
)
_SSH_FAIL = re.compile(r"^Failed (?P<method>\S+) for (?:invalid user )?(?P<user>\S+) from (?P<ip>[\d.:a-fA-F]+) port (?P<port>\d+)")
_SSH_OK = re.compile(r"^Accepted (?P<method>\S+) for (?P<user>\S+) from (?P<ip>[\d.:a-fA-F]+) port (?P<port>\d+)")
_SSH_INVALID = re.compile(r"^Invalid user (?P<user>\S*) from (?P<ip>[\d.:a-fA-F]+)(?: port (?P<port>\d+))?")
_SUDO = re.compile(r"^\s*(?P<user>\S+) : (?:(?P<err>.+?) ; )?TTY=(?P<tty>\S+) ; PWD=(?P<pwd>\S+) ; USER=(?P<target>\S+) ; COMMAND=(?P<cmd>.+)$")
_SU_OK = re.compile(r"^\(to (?P<target>\S+)\) (?P<user>\S+) on")
_SU_SESSION = re.compile(r"^pam_unix\(su(?:-l)?:session\): session opened for user (?P<target>[^\s(]+)(?:\(uid=\d+\))? by (?P<user>[^\s(]*)")
_SU_FAIL = re.compile(  # util-linux: "FAILED SU (to root) ops on pts/0"; older: "FAILED su for root by ops"
    r"^FAILED (?:su|SU) (?:\(to (?P<target>\S+)\) (?P<user>\S+) on|(?:for (?P<target2>\S+) )?by (?P<user2>\S+))"
)
_USERADD = re.compile(r"^new user: name=(?P<user>[^,]+), UID=(?P<uid>\d+)")
_USERMOD_GROUP = re.compile(r"^add '(?P<user>[^']+)' to (?:shadow )?group '(?P<group>[^']+)'")


def _ts3164(ts: str, year: int | None = None) -> str:
    now = datetime.now(timezone.utc)
    t = datetime.strptime(f"{year or now.year} {ts}", "%Y %b %d %H:%M:%S").replace(tzinfo=timezone.utc)
    if t > now and year is None:  # December lines read in January
        t = t.replace(year=t.year - 1)
    return t.isoformat().replace("+00:00", "Z")


def parse_syslog(line: str, *, year: int | None = None) -> dict[str, Any]:
    """One syslog line (sshd, sudo, su, useradd, usermod or any other program) as ECS."""
    m = _SYSLOG.match(line.strip())
    if not m:
        raise ParseError("not a syslog line (expected 'Mon DD HH:MM:SS host program[pid]: message')")
    ts = m["ts"]
    ts = _ts3164(ts, year) if ts[0].isalpha() else ts
    prog, msg = m["prog"], m["msg"]
    ev: dict[str, Any] = {
        "@timestamp": ts, "message": msg, "host": {"name": m["host"]},
        "process": {"name": prog, **({"pid": int(m["pid"])} if m["pid"] else {})},
        "event": {"kind": "event", "module": "syslog", "dataset": f"syslog.{prog}", "original": line.rstrip("\n")},
        "log": {"syslog": {"appname": prog, "hostname": m["host"]}},
    }  # fmt: skip
    if prog == "sshd":
        _sshd(ev, msg)
    elif prog == "sudo":
        _sudo(ev, msg)
    elif prog in ("su", "su-l"):
        _su(ev, msg)
    elif prog in ("useradd", "usermod", "groupadd", "userdel"):
        _usermgmt(ev, prog, msg)
    return ev


def _auth(ev: dict[str, Any], action: str, outcome: str, user: str, ip: str | None = None, port: str | None = None) -> None:
    ev["event"].update(category=["authentication"], type=["start"] if outcome == "success" else ["start"], action=action, outcome=outcome)
    ev["user"] = {"name": user}
    if ip:
        ev["source"] = {"ip": ip, **({"port": int(port)} if port else {})}
        ev["related"] = {"ip": [ip], "user": [user]}


def _sshd(ev: dict[str, Any], msg: str) -> None:
    if m := _SSH_FAIL.match(msg):
        _auth(ev, "ssh_login", "failure", m["user"], m["ip"], m["port"])
        ev["event"]["reason"] = m["method"]
    elif m := _SSH_OK.match(msg):
        _auth(ev, "ssh_login", "success", m["user"], m["ip"], m["port"])
        ev["event"]["reason"] = m["method"]
    elif m := _SSH_INVALID.match(msg):
        _auth(ev, "ssh_invalid_user", "failure", m["user"], m["ip"], m["port"])


def _sudo(ev: dict[str, Any], msg: str) -> None:
    m = _SUDO.match(msg)
    if not m:
        return
    cmd = m["cmd"].strip()
    ev["event"].update(category=["process"], type=["start"], action="sudo_command", outcome="failure" if m["err"] else "success")
    ev["user"] = {"name": m["user"], "effective": {"name": m["target"]}, "target": {"name": m["target"]}}
    ev["process"].update(command_line=cmd, args=_split(cmd), working_directory=m["pwd"], executable=_split(cmd)[0] if cmd else "")
    if m["err"]:
        ev["event"]["reason"] = m["err"]


def _su(ev: dict[str, Any], msg: str) -> None:
    if m := _SU_FAIL.match(msg):
        ev["event"].update(category=["authentication"], type=["start"], action="su", outcome="failure")
        ev["user"] = {"name": m["user"] or m["user2"], "target": {"name": m["target"] or m["target2"] or "root"}}
    elif (m := _SU_OK.match(msg)) or (m := _SU_SESSION.match(msg)):
        ev["event"].update(category=["authentication"], type=["start"], action="su", outcome="success")
        ev["user"] = {"name": m["user"], "target": {"name": m["target"]}}


def _usermgmt(ev: dict[str, Any], prog: str, msg: str) -> None:
    if m := _USERADD.match(msg):
        ev["event"].update(category=["iam"], type=["user", "creation"], action="user_created", outcome="success")
        ev["user"] = {"target": {"name": m["user"].strip()}, "id": m["uid"]}
    elif m := _USERMOD_GROUP.match(msg):
        ev["event"].update(category=["iam"], type=["group", "change"], action="user_added_to_group", outcome="success")
        ev["user"] = {"target": {"name": m["user"], "group": {"name": m["group"]}}}
        ev["group"] = {"name": m["group"]}


def _split(cmd: str) -> list[str]:
    try:
        return shlex.split(cmd)
    except ValueError:
        return cmd.split()


_AUDIT = re.compile(r"^type=(?P<type>\w+) msg=audit\((?P<epoch>\d+\.\d+):(?P<serial>\d+)\):\s?(?P<body>.*)$")
_KV = re.compile(r"(\w+)=(\"[^\"]*\"|'[^']*'|\S+)")


def parse_auditd(line: str) -> dict[str, Any]:
    """One auditd record (type=… msg=audit(…): k=v …) as ECS; EXECVE arguments become the command line."""
    m = _AUDIT.match(line.strip())
    if not m:
        raise ParseError("not an auditd record (expected 'type=TYPE msg=audit(EPOCH:SERIAL): key=value …')")
    kv = {k: v.strip("\"'") for k, v in _KV.findall(m["body"])}
    if "=" in kv.get("msg", ""):  # user-space records nest their fields in msg='…'
        kv.update({k: v.strip("\"'") for k, v in _KV.findall(kv.pop("msg"))})
    ts = datetime.fromtimestamp(float(m["epoch"]), timezone.utc).isoformat().replace("+00:00", "Z")
    atype = m["type"]
    ev: dict[str, Any] = {
        "@timestamp": ts, "message": m["body"],
        "event": {"kind": "event", "module": "auditd", "dataset": f"auditd.{atype.lower()}", "action": atype.lower(),
                  "id": f"{m['epoch']}:{m['serial']}", "original": line.rstrip("\n")},
    }  # fmt: skip
    if atype == "EXECVE":
        argc = int(kv.get("argc", "0") or 0)
        args = [_unhex(kv.get(f"a{i}", "")) for i in range(argc)]
        ev["event"].update(category=["process"], type=["start"])
        ev["process"] = {"args": args, "command_line": " ".join(args), "name": args[0].rsplit("/", 1)[-1] if args else ""}
    elif atype in ("USER_LOGIN", "USER_AUTH", "USER_START", "USER_ERR"):
        ev["event"].update(category=["authentication"], outcome="success" if kv.get("res") == "success" else "failure")
        if kv.get("acct"):
            ev["user"] = {"name": kv["acct"]}
        if kv.get("addr") and kv["addr"] not in ("?", ""):
            ev["source"] = {"ip": kv["addr"]}
    elif atype in ("SERVICE_STOP", "SERVICE_START"):
        ev["event"].update(category=["configuration"], type=["change"], action=f"service_{atype.split('_')[1].lower()}")
        ev["govctl"] = {"target": kv.get("unit", "")}
    elif atype == "CONFIG_CHANGE":
        ev["event"].update(category=["configuration"], type=["change"])
    elif atype == "SYSCALL":
        ev["process"] = {"name": kv.get("comm", ""), "executable": kv.get("exe", ""), **({"pid": int(kv["pid"])} if kv.get("pid", "").isdigit() else {})}
        ev["event"]["outcome"] = "success" if kv.get("success") == "yes" else "failure"
    if "auid" in kv and kv["auid"] not in ("4294967295", "unset"):
        ev.setdefault("user", {})["id"] = kv["auid"]
    return ev


def _unhex(v: str) -> str:
    if v and len(v) % 2 == 0 and re.fullmatch(r"[0-9A-F]+", v):
        try:
            return bytes.fromhex(v).decode()
        except (ValueError, UnicodeDecodeError):
            return v
    return v


def parse_json(line: str) -> dict[str, Any]:
    """One JSON (ECS) document per line; it must have @timestamp."""
    try:
        doc = json.loads(line)
    except ValueError as exc:
        raise ParseError(f"not JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(doc, dict):
        raise ParseError("a JSON event must be an object")
    if "@timestamp" not in doc:
        raise ParseError("a JSON event needs @timestamp")
    return doc


PARSERS = {"syslog": parse_syslog, "auditd": parse_auditd, "json": parse_json}
