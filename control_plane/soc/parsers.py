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
_SSH_FAIL = re.compile(r"^Failed (?P<method>\S+) for (?P<invalid>invalid user )?(?P<user>\S*) from (?P<ip>[\d.:a-fA-F]+) port (?P<port>\d+)")
_SSH_OK = re.compile(r"^Accepted (?P<method>\S+) for (?P<user>\S+) from (?P<ip>[\d.:a-fA-F]+) port (?P<port>\d+)")
_SSH_INVALID = re.compile(r"^Invalid user (?P<user>\S*) from (?P<ip>[\d.:a-fA-F]+)(?: port (?P<port>\d+))?")
_SSH_CLOSED = re.compile(r"^Connection closed by (?:(?P<kind>authenticating|invalid) user (?P<user>\S*) )?(?P<ip>[\d.:a-fA-F]+) port (?P<port>\d+)")
_SSH_DISCONNECTED = re.compile(r"^Disconnected from (?:(?:authenticating |invalid )?user (?P<user>\S*) )?(?P<ip>[\d.:a-fA-F]+) port (?P<port>\d+)")
_SSH_RECEIVED = re.compile(r"^Received disconnect from (?P<ip>[\d.:a-fA-F]+) port (?P<port>\d+)")
_SSH_MAX = re.compile(r"^(?:error: )?maximum authentication attempts exceeded for (?:invalid user )?(?P<user>\S*) from (?P<ip>[\d.:a-fA-F]+) port (?P<port>\d+)")
# sudo writes "USER : [ERROR ; ][TTY=tty ; ]PWD=dir ; USER=target ; [GROUP=g ; ][ENV=… ; ]COMMAND=cmd" (no TTY field
# when it runs without a terminal, the user name padded to a column)
_SUDO = re.compile(r"^\s*(?P<user>\S+) : (?:(?P<err>[^;=]+?) ; )?(?:TTY=(?P<tty>\S+) ; )?PWD=(?P<pwd>.*?) ; USER=(?P<target>\S+) ; "
                   r"(?:GROUP=(?P<group>\S+) ; )?(?:ENV=.*? ; )?COMMAND=(?P<cmd>.+)$")
_SUDO_NOTE = re.compile(r"^\s*(?P<user>\S+) : (?P<note>.+)$")
_SU_OK = re.compile(r"^\(to (?P<target>\S+)\) (?P<user>\S+) on (?P<tty>\S+)")
_SU_FAIL = re.compile(  # util-linux: "FAILED SU (to root) ops on pts/0"; older: "FAILED su for root by ops"
    r"^FAILED (?:su|SU) (?:\(to (?P<target>\S+)\) (?P<user>\S+) on|(?:for (?P<target2>\S+) )?by (?P<user2>\S+))"
)
# PAM, whatever program loaded it
_PAM = re.compile(r"^(?P<module>pam_\w+)\((?P<service>[\w.-]+):(?P<kind>\w+)\): (?P<text>.*)$")
_PAM_AUTHFAIL = re.compile(r"authentication failure;.*?(?:ruser=(?P<ruser>\S*))?\s+rhost=(?P<rhost>\S*)\s*(?:user=(?P<user>\S+))?")
_PAM_SESSION = re.compile(r"session (?P<what>opened|closed) for user (?P<user>[^\s(]+)(?:\(uid=(?P<uid>\d+)\))?(?: by (?P<by>[^\s(]*)(?:\(uid=(?P<byuid>\d+)\))?)?")
_PAM_PASSWORD = re.compile(r"password changed for (?P<user>\S+)")
_PAM_FAILLOCK = re.compile(r"Consecutive login failures for user (?P<user>\S+) account temporarily locked")
# the shadow utilities
_NEW_USER = re.compile(r"^new user: name=(?P<user>[^,]+), UID=(?P<uid>\d+), GID=(?P<gid>\d+)(?:, home=(?P<home>[^,]*))?(?:, shell=(?P<shell>[^,]*))?")
_NEW_GROUP = re.compile(r"^new group: name=(?P<group>[^,]+), GID=(?P<gid>\d+)")
_GROUP_FILE = re.compile(r"^(?:group added to /etc/g(?:roup|shadow)|group '[^']+' removed from /etc/g(?:roup|shadow)|removed shadow group|add '[^']+' to shadow group)")
_DEL_USER = re.compile(r"^delete user '(?P<user>[^']+)'")
_DEL_GROUP = re.compile(r"^(?:group '(?P<group>[^']+)' removed$|removed group '(?P<group2>[^']+)' owned by)")
_ADD_TO_GROUP = re.compile(r"^add '(?P<user>[^']+)' to group '(?P<group>[^']+)'")
_DEL_FROM_GROUP = re.compile(r"^delete '(?P<user>[^']+)' from group '(?P<group>[^']+)'")
_USER_CHANGE = re.compile(r"^(?:change|lock|unlock) user '(?P<user>[^']+)'")
_PASSWD = re.compile(r"^password for '(?P<user>[^']+)' changed by '(?P<by>[^']+)'")
_CHAGE = re.compile(r"^changed password expiry for (?P<user>\S+)")
# cron
_CRONTAB = re.compile(r"^\((?P<by>[^)]+)\) (?P<what>REPLACE|LIST|DELETE|BEGIN EDIT|END EDIT|RELOAD) \((?P<user>[^)]+)\)")
_CRON_CMD = re.compile(r"^\((?P<user>[^)]+)\) CMD \((?P<cmd>.*)\)$")
KNOWN = {"sshd", "sudo", "su", "su-l", "useradd", "usermod", "userdel", "groupadd", "groupdel", "groupmod", "passwd", "chpasswd", "chage",
         "crontab", "cron", "CRON", "runuser", "login"}  # fmt: skip


def _ts3164(ts: str, year: int | None = None) -> str:
    now = datetime.now(timezone.utc)
    t = datetime.strptime(f"{year or now.year} {ts}", "%Y %b %d %H:%M:%S").replace(tzinfo=timezone.utc)
    if t > now and year is None:  # December lines read in January
        t = t.replace(year=t.year - 1)
    return t.isoformat().replace("+00:00", "Z")


def parse_syslog(line: str, *, year: int | None = None) -> dict[str, Any]:
    """One syslog line (traditional or RFC 3339 time) as ECS; a line no parser knows is kept as a generic event of its program.

    ``govctl.parse`` says how much was understood: ``full`` (an action with its fields), ``partial``
    (a program we parse, a message we do not) or ``generic`` (a program we do not parse).
    """
    m = _SYSLOG.match(line.strip())
    if not m:
        raise ParseError("not a syslog line (expected 'Mon DD HH:MM:SS host program[pid]: message' or an RFC 3339 time)")
    ts = m["ts"]
    ts = _ts3164(ts, year) if ts[0].isalpha() else ts
    prog, msg = m["prog"], m["msg"]
    ev: dict[str, Any] = {
        "@timestamp": ts, "message": msg, "host": {"name": m["host"]},
        "process": {"name": prog, **({"pid": int(m["pid"])} if m["pid"] else {})},
        "event": {"kind": "event", "module": "syslog", "dataset": f"syslog.{prog}", "original": line.rstrip("\n")},
        "log": {"syslog": {"appname": prog, "hostname": m["host"]}},
    }  # fmt: skip
    handler = _HANDLERS.get(prog)
    if handler is not None:
        handler(ev, msg)
    if "action" not in ev["event"] and (p := _PAM.match(msg)):
        _pam(ev, p)
    level = "full" if "action" in ev["event"] else "partial" if prog in KNOWN or _PAM.match(msg) else "generic"
    ev["govctl"] = {"parse": level}
    return ev


def _auth(ev: dict[str, Any], action: str, outcome: str, user: str, ip: str | None = None, port: str | None = None) -> None:
    ev["event"].update(category=["authentication"], type=["start"], action=action, outcome=outcome)
    ev["user"] = {"name": user}
    if ip:
        ev["source"] = {"ip": ip, **({"port": int(port)} if port else {})}
        ev["related"] = {"ip": [ip], "user": [user]}


def _sshd(ev: dict[str, Any], msg: str) -> None:
    if m := _SSH_FAIL.match(msg):
        _auth(ev, "ssh_login", "failure", m["user"], m["ip"], m["port"])
        ev["event"]["reason"] = f"{m['method']}{' (invalid user)' if m['invalid'] else ''}"
    elif m := _SSH_OK.match(msg):
        _auth(ev, "ssh_login", "success", m["user"], m["ip"], m["port"])
        ev["event"]["reason"] = m["method"]
    elif m := _SSH_INVALID.match(msg):
        _auth(ev, "ssh_invalid_user", "failure", m["user"], m["ip"], m["port"])
    elif m := _SSH_MAX.match(msg):
        _auth(ev, "ssh_max_auth_tries", "failure", m["user"], m["ip"], m["port"])
    elif m := _SSH_CLOSED.match(msg):
        _net(ev, "ssh_connection_closed", m["ip"], m["port"], m["user"])
        if m["kind"]:
            ev["event"]["reason"] = f"closed while {m['kind']}"
    elif m := _SSH_DISCONNECTED.match(msg):
        _net(ev, "ssh_logout", m["ip"], m["port"], m["user"])
    elif m := _SSH_RECEIVED.match(msg):
        _net(ev, "ssh_disconnect", m["ip"], m["port"], None)
    elif msg.startswith("Server listening on"):
        ev["event"].update(category=["process"], type=["start"], action="service_started")
    elif msg.startswith("Received signal") and "terminating" in msg:
        ev["event"].update(category=["process"], type=["end"], action="service_stopped")


def _net(ev: dict[str, Any], action: str, ip: str, port: str, user: str | None) -> None:
    ev["event"].update(category=["session"], type=["end"], action=action)
    ev["source"] = {"ip": ip, "port": int(port)}
    if user is not None:
        ev["user"] = {"name": user}


def _sudo(ev: dict[str, Any], msg: str) -> None:
    if m := _SUDO.match(msg):
        cmd = m["cmd"].strip()
        err = (m["err"] or "").strip()
        ev["event"].update(category=["process"], type=["start"], action="sudo_command", outcome="failure" if err else "success")
        ev["user"] = {"name": m["user"], "effective": {"name": m["target"]}, "target": {"name": m["target"]}}
        args = _split(cmd)
        ev["process"].update(command_line=cmd, args=args, working_directory=m["pwd"], executable=args[0] if args else "")
        if m["tty"]:
            ev["process"]["tty"] = {"name": m["tty"]}
        if err:
            ev["event"]["reason"] = err
    elif (m := _SUDO_NOTE.match(msg)) and not _PAM.match(msg):
        ev["user"] = {"name": m["user"]}  # a warning sudo wrote for this person ("unable to resolve host …"): kept, not an action


def _su(ev: dict[str, Any], msg: str) -> None:
    if m := _SU_FAIL.match(msg):
        ev["event"].update(category=["authentication"], type=["start"], action="su", outcome="failure")
        ev["user"] = {"name": m["user"] or m["user2"], "target": {"name": m["target"] or m["target2"] or "root"}}
    elif m := _SU_OK.match(msg):
        ev["event"].update(category=["authentication"], type=["start"], action="su", outcome="success")
        ev["user"] = {"name": m["user"], "target": {"name": m["target"]}}


def _pam(ev: dict[str, Any], p: re.Match[str]) -> None:
    """A PAM module's line (any program): authentication failures, sessions, password changes, lockouts."""
    text, service = p["text"], p["service"]
    ev.setdefault("service", {})["name"] = service
    if m := _PAM_AUTHFAIL.search(text):
        ev["event"].update(category=["authentication"], type=["start"], action="pam_auth_failure", outcome="failure")
        user = m["user"] or ""
        # who asked (ruser) if PAM knows, else the account tried; the account tried is the target
        ev["user"] = {"name": m["ruser"] or user, **({"target": {"name": user}} if user else {})}
        if m["rhost"] and re.fullmatch(r"[\d.:a-fA-F]+", m["rhost"]):
            ev["source"] = {"ip": m["rhost"]}
    elif m := _PAM_SESSION.search(text):
        ev["event"].update(category=["session"], type=["start" if m["what"] == "opened" else "end"], action=f"session_{m['what']}")
        ev["user"] = {"target": {"name": m["user"], **({"id": m["uid"]} if m["uid"] else {})}, "name": m["by"] or m["user"]}
    elif m := _PAM_PASSWORD.search(text):
        _iam(ev, "password_changed", ["user", "change"], target=m["user"])
    elif m := _PAM_FAILLOCK.search(text):
        ev["event"].update(category=["authentication"], type=["info"], action="account_locked", outcome="failure")
        ev["user"] = {"name": m["user"]}


def _iam(ev: dict[str, Any], action: str, types: list[str], *, target: str | None = None, uid: str | None = None,
         group: str | None = None, gid: str | None = None) -> None:  # fmt: skip
    ev["event"].update(category=["iam"], type=types, action=action, outcome="success")
    if target is not None:
        ev["user"] = {"target": {"name": target.strip(), **({"id": uid} if uid is not None else {})}}
    if group is not None or gid is not None:
        ev["group"] = {**({"name": group.strip()} if group else {}), **({"id": gid} if gid is not None else {})}


def _usermgmt(ev: dict[str, Any], msg: str) -> None:
    if _GROUP_FILE.match(msg):
        return  # the same change again, as written to /etc/group or /etc/gshadow: kept, not a second action
    if m := _NEW_USER.match(msg):
        _iam(ev, "user_created", ["user", "creation"], target=m["user"], uid=m["uid"], gid=m["gid"])
    elif m := _NEW_GROUP.match(msg):
        _iam(ev, "group_created", ["group", "creation"], group=m["group"], gid=m["gid"])
    elif m := _DEL_USER.match(msg):
        _iam(ev, "user_deleted", ["user", "deletion"], target=m["user"])
    elif m := _DEL_GROUP.match(msg):
        _iam(ev, "group_deleted", ["group", "deletion"], group=m["group"] or m["group2"])
    elif m := _ADD_TO_GROUP.match(msg):
        _iam(ev, "user_added_to_group", ["group", "change"], target=m["user"], group=m["group"])
        ev["user"]["target"]["group"] = {"name": m["group"]}
    elif m := _DEL_FROM_GROUP.match(msg):
        _iam(ev, "user_removed_from_group", ["group", "change"], target=m["user"], group=m["group"])
    elif m := _USER_CHANGE.match(msg):
        _iam(ev, "user_changed", ["user", "change"], target=m["user"])
    elif m := _PASSWD.match(msg):
        _iam(ev, "password_changed", ["user", "change"], target=m["user"])
        ev["user"]["name"] = m["by"]
    elif m := _CHAGE.match(msg):
        _iam(ev, "password_expiry_changed", ["user", "change"], target=m["user"])


def _cron(ev: dict[str, Any], msg: str) -> None:
    if m := _CRONTAB.match(msg):
        what = m["what"].lower().replace(" ", "_")
        ev["event"].update(category=["configuration"], type=["change"] if what in ("replace", "delete") else ["info"], action=f"crontab_{what}")
        ev["user"] = {"name": m["by"], "target": {"name": m["user"]}}
        if what in ("replace", "delete"):
            ev["file"] = {"path": f"/var/spool/cron/crontabs/{m['user']}"}
    elif m := _CRON_CMD.match(msg):
        ev["event"].update(category=["process"], type=["start"], action="cron_command")
        ev["user"] = {"name": m["user"]}
        ev["process"].update(command_line=m["cmd"], args=_split(m["cmd"]))


_HANDLERS = {"sshd": _sshd, "sudo": _sudo, "su": _su, "su-l": _su, "crontab": _cron, "cron": _cron, "CRON": _cron,
             **{p: _usermgmt for p in ("useradd", "usermod", "userdel", "groupadd", "groupdel", "groupmod", "passwd", "chage")}}  # fmt: skip


def _split(cmd: str) -> list[str]:
    try:
        return shlex.split(cmd)
    except ValueError:
        return cmd.split()


_AUDIT = re.compile(r"^type=(?P<type>\w+) msg=audit\((?P<epoch>\d+\.\d+):(?P<serial>\d+)\):\s?(?P<body>.*)$")
_KV = re.compile(r"(\w+)=(\"[^\"]*\"|'[^']*'|\S+)")


_AUDIT_IAM = {"ADD_USER": "user_created", "DEL_USER": "user_deleted", "ADD_GROUP": "group_created", "DEL_GROUP": "group_deleted",
              "USER_MGMT": "user_changed", "GRP_MGMT": "group_changed", "USER_CHAUTHTOK": "password_changed"}  # fmt: skip
_AUDIT_AUTH = ("USER_LOGIN", "USER_AUTH", "USER_START", "USER_END", "USER_ERR", "USER_ACCT", "CRED_ACQ", "CRED_DISP", "CRED_REFR", "LOGIN")
_AUDIT_PLAIN = ("CWD", "PROCTITLE", "BPRM_FCAPS", "SOCKADDR", "DAEMON_START", "DAEMON_END", "DAEMON_ABORT", "CONFIG_CHANGE")


def parse_auditd(line: str) -> dict[str, Any]:
    """One auditd record (raw or ENRICHED: ``type=… msg=audit(…): k=v …``) as ECS; EXECVE arguments become the command line.

    The audit view of an account change, a sudo command or a login gets its own ``event.action``
    (``audit_user_created``, ``audit_user_cmd``, …) and no Linux log-source category, so rules written
    for the syslog view do not alert twice for one behaviour; EXECVE records are process starts.
    """
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
    if kv.get("node"):
        ev["host"] = {"name": kv["node"]}
    full = True
    if atype == "EXECVE":
        argc = int(kv.get("argc", "0") or 0)
        args = [_unhex(kv.get(f"a{i}", "")) for i in range(argc)]
        ev["event"].update(category=["process"], type=["start"])
        ev["process"] = {"args": args, "command_line": " ".join(args), "name": args[0].rsplit("/", 1)[-1] if args else ""}
    elif atype == "USER_CMD":
        cmd = _unhex(kv.get("cmd", ""))
        ev["event"].update(action="audit_user_cmd", outcome="success" if kv.get("res") == "success" else "failure")
        ev["process"] = {"command_line": cmd, "args": _split(cmd), "working_directory": kv.get("cwd", ""), "parent": {"executable": kv.get("exe", "")}}
    elif atype in _AUDIT_IAM:
        ev["event"].update(action=f"audit_{_AUDIT_IAM[atype]}", outcome="success" if kv.get("res") == "success" else "failure")
        who = kv.get("acct") or (kv.get("ID") if kv.get("ID") and not kv["ID"].startswith("unknown(") else None)
        if who:
            ev["user"] = {"target": {"name": who, **({"id": kv["id"]} if kv.get("id", "").isdigit() else {})}}
    elif atype in _AUDIT_AUTH:
        ev["event"].update(category=["authentication"], outcome="success" if kv.get("res") == "success" else "failure")
        if kv.get("acct"):
            ev["user"] = {"name": kv["acct"]}
        if kv.get("addr") and kv["addr"] not in ("?", ""):
            ev["source"] = {"ip": kv["addr"]}
    elif atype in ("ANOM_LOGIN_FAILURES", "RESP_ACCT_LOCK"):  # pam_faillock: too many failures, then the lock
        ev["event"].update(category=["authentication"], type=["info"], outcome="failure",
                           action="audit_login_failures" if atype == "ANOM_LOGIN_FAILURES" else "audit_account_locked")
        if kv.get("acct"):
            ev["user"] = {"name": kv["acct"]}
    elif atype in ("SERVICE_STOP", "SERVICE_START"):
        ev["event"].update(category=["configuration"], type=["change"], action=f"service_{atype.split('_')[1].lower()}")
        ev["govctl"] = {"target": kv.get("unit", "")}
    elif atype == "SYSCALL":
        ev["process"] = {"name": kv.get("comm", ""), "executable": kv.get("exe", ""), **({"pid": int(kv["pid"])} if kv.get("pid", "").isdigit() else {})}
        ev["event"]["outcome"] = "success" if kv.get("success") == "yes" else "failure"
        if kv.get("key") and kv["key"] != "(null)":
            ev["tags"] = [kv["key"]]
    elif atype == "PATH":
        ev["file"] = {"path": kv.get("name", ""), **({"type": kv["nametype"].lower()} if kv.get("nametype") else {})}
    elif atype == "PROCTITLE":
        ev["process"] = {"command_line": _unhex(kv.get("proctitle", "")).replace("\x00", " ")}
    elif atype not in _AUDIT_PLAIN:
        full = False
    if atype == "CONFIG_CHANGE":
        ev["event"].update(category=["configuration"], type=["change"])
    if "auid" in kv and kv["auid"] not in ("4294967295", "unset"):
        ev.setdefault("user", {})["id"] = kv["auid"]
    if kv.get("UID") and atype not in _AUDIT_IAM:  # ENRICHED logs resolve the acting uid to a name
        ev.setdefault("user", {}).setdefault("name", kv["UID"])
    op = kv.get("op", "") if atype in _AUDIT_IAM else ""
    ev["govctl"] = {**ev.get("govctl", {}), "parse": "full" if full else "partial", **({"audit_op": op} if op else {})}
    return ev


def _unhex(v: str) -> str:
    if v and len(v) % 2 == 0 and re.fullmatch(r"[0-9A-F]+", v):
        try:
            return bytes.fromhex(v).decode("utf-8")
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
