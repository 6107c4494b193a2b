"""Logs written by the real programs (tests/data/reallogs, made by its generate.py): parsed fully, and raising exactly the alerts their behaviours call for."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from control_plane import clock
from control_plane.context import Context
from control_plane.soc.parsers import parse_auditd, parse_syslog

CORPUS = Path(__file__).resolve().parents[1] / "data" / "reallogs"
SCENARIOS = json.loads((CORPUS / "scenarios.json").read_text(encoding="utf-8"))


def _lines(name: str) -> list[str]:
    # split on newlines only: auditd's ENRICHED records hold a group separator (0x1d), which str.splitlines also splits on
    return [ln for ln in (CORPUS / name).read_text(encoding="utf-8").split("\n") if ln.strip()]


def _one(events: list[dict], needle: str) -> dict:
    found = [e for e in events if needle in e["event"]["original"]]
    assert len(found) == 1, f"{len(found)} lines contain {needle!r}"
    return found[0]


def _get(ev: dict, path: str) -> object:
    cur: object = ev
    for part in path.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return cur


def test_both_file_formats_parse_to_the_same_events() -> None:
    """rsyslog's traditional and RFC 3339 files hold the same lines; each parses, to the same action, outcome and people, with its time."""
    trad, rfc = [parse_syslog(ln) for ln in _lines("traditional.log")], [parse_syslog(ln) for ln in _lines("rfc3339.log")]
    assert len(trad) == len(rfc) > 100

    def shape(e: dict) -> tuple:
        return tuple(_get(e, f) for f in ("process.name", "event.action", "event.outcome", "user.name", "user.target.name", "source.ip", "process.command_line"))

    assert [shape(e) for e in trad] == [shape(e) for e in rfc]
    for t, r in zip(trad, rfc):  # the same second; RFC 3339 keeps the fraction and the offset
        assert t["@timestamp"][:19] == clock.es_iso(clock.parse(r["@timestamp"]))[:19]
    assert all(e["host"]["name"] == "prim-app-1" for e in trad)


def test_what_the_real_programs_wrote_is_understood() -> None:
    """Field by field, for the forms the issue names (written out here by hand, from the lines themselves)."""
    evs = [parse_syslog(ln) for ln in _lines("traditional.log")]
    # sudo without a terminal: no TTY field, the user name padded
    e = _one(evs, "command not allowed ; PWD=/ ; USER=root ; COMMAND=/bin/rm -rf /srv/x")
    assert (e["user"]["name"], e["user"]["target"]["name"], e["process"]["command_line"], e["event"]["outcome"], e["event"]["reason"]) == \
        ("alice", "root", "/bin/rm -rf /srv/x", "failure", "command not allowed")  # fmt: skip
    assert "tty" not in e["process"]
    e = _one(evs, "command not allowed ; TTY=pts/0")
    assert (e["user"]["name"], e["process"]["tty"]["name"], e["process"]["command_line"]) == ("alice", "pts/0", "/bin/bash -c true")
    e = _one(evs, "3 incorrect password attempts")
    assert (e["user"]["name"], e["event"]["action"], e["event"]["outcome"], e["event"]["reason"]) == ("bob", "sudo_command", "failure", "3 incorrect password attempts")
    e = _one(evs, "a password is required")
    assert (e["user"]["name"], e["event"]["reason"]) == ("bob", "a password is required")
    e = _one(evs, "USER=bob ; COMMAND=/usr/bin/id")
    assert (e["user"]["name"], e["user"]["target"]["name"], e["event"]["outcome"]) == ("alice", "bob", "success")
    # su
    e = _one(evs, "FAILED SU (to root) alice")
    assert (e["event"]["action"], e["event"]["outcome"], e["user"]["name"], e["user"]["target"]["name"]) == ("su", "failure", "alice", "root")
    e = _one(evs, "pam_unix(su-l:auth): authentication failure")
    assert (e["event"]["action"], e["user"]["name"], e["user"]["target"]["name"]) == ("pam_auth_failure", "alice", "root")
    # sshd
    e = next(x for x in evs if "Failed password for invalid user oracle" in x["event"]["original"])
    assert (e["event"]["action"], e["user"]["name"], e["source"]["ip"], e["event"]["reason"]) == ("ssh_login", "oracle", "127.0.0.3", "password (invalid user)")
    e = next(x for x in evs if "Accepted publickey for alice" in x["event"]["original"])
    assert (e["event"]["action"], e["event"]["outcome"], e["user"]["name"], e["source"]["ip"]) == ("ssh_login", "success", "alice", "127.0.0.1")
    e = _one(evs, "Consecutive login failures for user carol")
    assert (e["event"]["action"], e["event"]["outcome"], e["user"]["name"], e["service"]["name"]) == ("account_locked", "failure", "carol", "sshd")
    # accounts and groups, UID and GID 0 included
    e = _one(evs, "new user: name=toor")
    assert (e["event"]["action"], e["user"]["target"]["name"], e["user"]["target"]["id"], e["group"]["id"]) == ("user_created", "toor", "0", "0")
    e = _one(evs, "new group: name=wheel0")
    assert (e["event"]["action"], e["group"]["name"], e["group"]["id"]) == ("group_created", "wheel0", "0")
    assert "action" not in _one(evs, "group added to /etc/group: name=wheel0")["event"]  # the same change again: kept, not counted twice
    e = _one(evs, "delete user 'tmpops'")
    assert (e["event"]["action"], e["user"]["target"]["name"]) == ("user_deleted", "tmpops")
    e = _one(evs, "add 'bob' to group 'sudo'")
    assert (e["event"]["action"], e["user"]["target"]["name"], e["group"]["name"]) == ("user_added_to_group", "bob", "sudo")
    e = _one(evs, "password changed for root")
    assert (e["event"]["action"], e["user"]["target"]["name"]) == ("password_changed", "root")
    e = _one(evs, "changed password expiry for alice")
    assert (e["event"]["action"], e["user"]["target"]["name"]) == ("password_expiry_changed", "alice")
    e = _one(evs, "(root) REPLACE (alice)")
    assert (e["event"]["action"], e["user"]["name"], e["user"]["target"]["name"]) == ("crontab_replace", "root", "alice")
    # a program nobody parses is still an event of its program, never lost
    e = next(x for x in evs if x["process"]["name"] == "rsyslogd")
    assert e["govctl"]["parse"] == "generic" and e["message"].startswith("[origin software=")
    levels = Counter(e["govctl"]["parse"] for e in evs)
    assert levels["full"] >= 0.6 * len(evs), levels


def test_auditd_records_parse() -> None:
    """Every record auditd wrote parses; sudo's command (hex-encoded by auditd) and the account changes are read back."""
    evs = [parse_auditd(ln) for ln in _lines("audit.log")]
    if not SCENARIOS["auditd"]:
        pytest.fail("the corpus was generated where the kernel's audit was not available: regenerate it (make corpus)")
    assert len(evs) > 500 and all(e["govctl"]["parse"] == "full" for e in evs), Counter(e["event"]["dataset"] for e in evs if e["govctl"]["parse"] != "full")
    cmds = {(e["process"]["command_line"], e["event"]["outcome"]) for e in evs if e["event"]["action"] == "audit_user_cmd"}
    assert ("/bin/rm -rf /srv/x", "failure") in cmds and ("/usr/bin/id", "success") in cmds
    added = {(e["user"]["target"].get("id"), e["user"]["target"]["name"]) for e in evs if e["event"]["action"] == "audit_user_created" and "user" in e}
    # auditd names a new account by resolving its id when it writes the record: the UID 0 account comes out as "root",
    # and an account resolved before useradd finished as "unknown(ID)"
    assert ("0", "root") in added and {"1001", "1002", "1003"} <= {i for i, _ in added} and "tmpops" in {n for _, n in added}, added
    locked = [e for e in evs if e["event"]["action"] == "audit_account_locked"]
    assert [e["user"]["name"] for e in locked] == ["carol"], locked
    assert any(e["event"]["action"] == "execve" and e["process"]["args"][:1] == ["crontab"] for e in evs)


@pytest.mark.services
def test_the_corpus_raises_exactly_one_alert_per_behaviour(sqlite_runtime: Context, services, tmp_path: Path) -> None:  # noqa: ANN001
    """Through `govctl soc ingest --stats` and scheduled detection: each behaviour's rule alerts once; nothing else is high or critical."""
    from control_plane.soc import alerts, detect
    from control_plane.soc.rules import load_rules

    rt = sqlite_runtime
    cfg = tmp_path / "govctl.yaml"
    started = clock.now()
    for name, fmt in (("traditional.log", "syslog"), ("audit.log", "auditd")):
        done = subprocess.run([sys.executable, "-m", "control_plane.cli", "--config", str(cfg), "soc", "ingest", str(CORPUS / name), "--format", fmt,
                               "--stats"], capture_output=True, text=True, timeout=300)  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert "dead-lettered 0" in done.stdout, done.stdout
        assert "program" in done.stdout and ("sudo" in done.stdout or fmt == "auditd")
    rt.es.indices.refresh(index="soc-events-*")
    res = detect.run(rt, load_rules(), settle_s=0)
    assert not res.errors, res.errors
    originals = set(_lines("traditional.log")) | set(_lines("audit.log"))
    mine = [a for a in alerts.search(rt.es, limit=1000) if clock.parse(a["@timestamp"]) >= started
            and any((e.get("event") or {}).get("original") in originals for e in a.get("events", []))]  # fmt: skip
    got = Counter(a["rule"]["name"] for a in mine)
    expected = {s["expect"] for s in SCENARIOS["scenarios"]} - {"nothing"}
    assert set(got) == expected, f"unexpected: {set(got) - expected}; missing: {expected - set(got)}"
    assert all(n == 1 for n in got.values()), got
    by_rule = {a["rule"]["name"]: a for a in mine}
    assert by_rule["ssh_bruteforce"]["group_key"] == "source.ip=127.0.0.2"
    assert by_rule["ssh_user_enumeration"]["group_key"] == "source.ip=127.0.0.3"
    assert by_rule["sudo_not_allowed"]["count"] == 2  # alice's two refusals, one alert
    assert by_rule["uid0_account_created"]["grade"]["code"] == "I" and by_rule["uid0_account_created"]["grade"]["name"] == "特别重大事件"
