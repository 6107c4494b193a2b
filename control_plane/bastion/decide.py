"""What the bastion does with a line before it runs: the SOC's inline verdict, the zone's policy, and the message people read.

The line is judged as the gate judges any shell text: one ``bastion.command`` operation event
whose ``command`` the engine parses into the commands it would run (wrappers unwrapped, payloads
decoded), matched against the same Sigma rules and correlation context. A rule whose action is
``block`` blocks; an ``alert`` rule lets the line run and raises an alert; what only the run would
show (a script file, code from a pipe, an unparsable line) and programs whose own commands the
bastion cannot see (nested shells, editors, pagers, REPLs) follow the host's zone policy.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from control_plane.gate.decision import SESSION_RANK, OperationEvent, SessionAction, SocUnavailable

if TYPE_CHECKING:
    from control_plane.config import BastionZone
    from control_plane.context import Context

# Programs that take commands the bastion cannot read back: shells, editors with shell escapes,
# pagers, REPLs, terminal multiplexers, remote logins and privilege switches that open a shell.
SHELLS = {"sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "fish", "csh", "tcsh", "rbash", "busybox"}
INTERACTIVE = SHELLS | {
    "vi", "vim", "nvim", "view", "ex", "ed", "emacs", "nano", "more", "most", "man", "info", "pager",
    "python", "python2", "python3", "ipython", "perl", "ruby", "irb", "node", "nodejs", "php", "lua", "gdb", "lldb",
    "mysql", "psql", "sqlite3", "redis-cli", "mongo", "mongosh", "ftp", "lftp", "sftp", "telnet", "ssh", "nc", "ncat", "socat",
    "tmux", "screen", "script", "expect", "top", "htop", "watch", "su", "login", "crontab", "visudo", "vipw", "vigr",
}  # fmt: skip
# ``less`` (and systemd's pager) run in secure mode in a bastion shell (LESSSECURE, SYSTEMD_PAGERSECURE: no shell
# escape, no editor, no log file), so reading a file is no hidden shell, unless a wrapper that resets the environment
# starts it; ``systemctl edit`` opens an editor.
SECURE_PAGERS = {"less"}
ENV_RESETTERS = {"env", "sudo", "doas", "su", "runuser", "pkexec", "setpriv", "systemd-run"}
# a REPL only when started without a script or inline code
REPL_ONLY = {"python", "python2", "python3", "perl", "ruby", "node", "nodejs", "php", "lua", "mysql", "psql", "sqlite3", "redis-cli"}
LEAVE = re.compile(r"\s*(exit|logout)(\s+[0-9]{1,3})?\s*")  # ending the session never waits for anybody
CONTROL = "\x1b]697"  # the bastion's own terminal markers: a line that prints them is trying to forge the shell's answers
OWN_NAMES = ("__govctl_", "bind ", "bind\t", "PS1=", "PS2=", "PROMPT_COMMAND", "READLINE_LINE", "inputrc", "INPUTRC", "accept-line",
             "set -o vi", "set -o emacs", "enable -n", "enable -f", "LESSSECURE", "PAGERSECURE")  # fmt: skip


@dataclass(frozen=True)
class Verdict:
    """The bastion's decision on one line (or exec command, or SFTP operation)."""

    action: SessionAction
    rules: tuple[str, ...] = ()
    reasons: tuple[str, ...] = ()
    degraded: bool = False

    def as_dict(self) -> dict[str, Any]:
        """Plain data for the command log."""
        return {"action": self.action, "rules": list(self.rules), "reasons": list(self.reasons), "degraded": self.degraded}

    def message(self, command: str, *, op_id: str = "") -> str:
        """What the person at the terminal reads: Chinese first, then English; the reasons say which rule."""
        why = "；".join(self.reasons[:3]) or "—"
        short = command if len(command) <= 120 else command[:117] + "…"
        if self.action == "block":
            return (f"\r\n\x1b[1;31m[堡垒机] 已阻断高危命令：{short}\x1b[0m\r\n  原因：{why}\r\n"
                    f"  [bastion] blocked: the command was not sent to the host. It is recorded and the security team is alerted.\r\n")
        if self.action == "require_approval":
            return (f"\r\n\x1b[1;33m[堡垒机] 该命令需要审批后执行：{short}\x1b[0m\r\n  原因：{why}\r\n  审批单 {op_id}：审批人执行 govctl ops approve {op_id}；"
                    f"按 Ctrl-C 撤回。\r\n  [bastion] this command needs an approval ({op_id}); the session waits. Ctrl-C withdraws it.\r\n")  # fmt: skip
        if self.action == "alert":
            return f"\r\n\x1b[33m[堡垒机] 命令已执行并告警：{why}\x1b[0m\r\n  [bastion] allowed with an alert to the security team.\r\n"
        return ""


def _stricter(a: SessionAction, b: SessionAction) -> SessionAction:
    return a if SESSION_RANK[a] >= SESSION_RANK[b] else b


def incomplete(text: str) -> bool:
    """True when the shell would wait for more lines before running anything (a trailing backslash, an open quote, loop or here-document).

    bashlex answers first; only text it cannot parse is asked of bash itself (``bash -n``), so a
    line is called incomplete only when bash agrees that nothing in it can run yet.
    """
    if text.endswith("\\") and not text.endswith("\\\\"):
        return True
    import bashlex

    try:
        bashlex.parse(text)
        return False
    except Exception:  # noqa: BLE001 - bashlex raises several types; bash decides below
        pass
    try:
        p = subprocess.run(["bash", "-n"], input=text, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return False  # not known to be incomplete: the line is judged as it stands
    err = p.stderr
    return any(m in err for m in ("unexpected end of file", "unexpected EOF while looking for matching")) or (
        "here-document" in err and "delimited by end-of-file" in err)


def interactive_programs(text: str) -> list[str]:
    """Programs in the line whose own commands the bastion cannot read back (nested shells, editors, REPLs, su, sudo -i)."""
    from control_plane.soc.inline import analyze_cached

    found = []
    commands = analyze_cached(text).commands
    reset = any(c.name in ENV_RESETTERS for c in commands)
    for c in commands:
        name, args = c.name, c.argv[1:]
        if name in SECURE_PAGERS and reset:
            found.append(name)
        if name in REPL_ONLY and any(not a.startswith("-") for a in args):
            continue  # a script or a query file: judged as a command, not a REPL
        if name in REPL_ONLY and any(a in ("-c", "-e", "-E", "-r", "--command", "--eval") for a in args):
            continue
        if name in SHELLS and ("-c" in args or any(not a.startswith("-") for a in args)):
            continue  # sh -c and sh script.sh are analysed (or found undecidable) by the engine
        if name in ("sudo", "doas") and not {"-i", "-s", "--login", "--shell"} & set(args):
            continue
        if name == "systemctl" and "edit" in args:
            found.append(name)
        if name in INTERACTIVE or name in ("sudo", "doas"):
            found.append(name)
    return found


def judge(ctx: Context, *, user: str, roles: tuple[str, ...], source: str, host: str, account: str, zone: BastionZone,
          command: str, session: str, kind: str = "shell") -> Verdict:  # fmt: skip
    """The verdict on one line a person is about to run on ``account@host``."""
    rules: list[str] = []
    reasons: list[str] = []
    if any(mark in command for mark in (CONTROL, *OWN_NAMES)):
        return Verdict("block", ("govctl.bastion.tamper",),
                       ("the line touches the bastion's shell integration (its markers, key bindings or prompt); 该命令试图篡改堡垒机的命令审计",))  # fmt: skip
    if LEAVE.fullmatch(command):
        return Verdict("allow", (), ("leaving the shell is always allowed (a trap on EXIT was judged when it was set)",))
    ev = OperationEvent("bastion.command", f"{host}:{account}", {"command": command, "session": session, "kind": kind}, user, roles, source)
    try:
        d = ctx.gate.soc.evaluate(ev)
    except (SocUnavailable, OSError) as exc:
        return Verdict(_stricter("require_approval", zone.undecidable), ("govctl.bastion.soc_unavailable",),
                       (f"the SOC engine could not decide ({exc}); the line waits for a person",), degraded=True)  # fmt: skip
    action: SessionAction = d.session_action or ("alert" if d.action == "require_approval" else d.action)
    rules.extend(r for r in d.matched_rules if not r.startswith("govctl.shell."))
    reasons.extend(d.reasons)
    if [k for k in d.findings if k != "fork_bomb"]:
        action = _stricter(action, zone.undecidable)
        rules.extend(f"govctl.shell.{k}" for k in d.findings)
    progs = interactive_programs(command) if kind == "shell" else []
    if progs:
        action = _stricter(action, zone.interactive)
        rules.append("govctl.bastion.interactive")
        reasons.append(f"{', '.join(sorted(set(progs)))} takes commands the bastion cannot read back (zone policy: {zone.interactive}); 该程序内的操作仅录像")
    if action == "allow":
        reasons = [r for r in reasons if not r.startswith("no rule matched")]
    return Verdict(action, tuple(dict.fromkeys(rules)), tuple(reasons), d.degraded)
