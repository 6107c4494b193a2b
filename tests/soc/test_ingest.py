"""Parsers on real log lines, and ingestion into the real Elasticsearch: spool, replay in order, no loss, no doubles, dead letters."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from control_plane.es import client, client_for
from control_plane.soc.ingest import Ingestor
from control_plane.soc.parsers import ParseError, parse_auditd, parse_syslog
from control_plane.soc.schema import DEADLETTER_INDEX

SSH_FAIL = "Nov 24 23:11:02 prim-app-1 sshd[1234]: Failed password for invalid user admin from 203.0.113.7 port 52311 ssh2"
SSH_OK = "Nov 24 23:11:09 prim-app-1 sshd[1240]: Accepted publickey for ops from 10.77.0.1 port 40022 ssh2: ED25519 SHA256:abc"
SUDO = "Nov 24 23:12:00 prim-app-1 sudo:      ops : TTY=pts/0 ; PWD=/root ; USER=root ; COMMAND=/usr/bin/systemctl stop auditd"
SUDO_DENIED = "Nov 24 23:12:05 prim-app-1 sudo:  mallory : user NOT in sudoers ; TTY=pts/1 ; PWD=/home/mallory ; USER=root ; COMMAND=/bin/bash"
SU_FAIL = "Nov 24 23:13:00 prim-app-1 su[2001]: FAILED SU (to root) ops on pts/0"
USERADD = "Nov 24 23:14:00 back-data-1 useradd[3001]: new user: name=svc-x, UID=1001, GID=1001, home=/home/svc-x, shell=/bin/bash, from=/dev/pts/0"
USERMOD = "Nov 24 23:14:05 back-data-1 usermod[3002]: add 'svc-x' to group 'sudo'"
EXECVE = 'type=EXECVE msg=audit(1764025000.123:4242): argc=3 a0="rm" a1="-rf" a2="/"'
EXECVE_HEX = "type=EXECVE msg=audit(1764025001.000:4243): argc=2 a0=6D6B66732E65787434 a1=2F6465762F736461"
LOGIN = "type=USER_LOGIN msg=audit(1764025002.000:4244): pid=1 uid=0 auid=1000 ses=3 msg='op=login acct=\"ops\" exe=\"/usr/sbin/sshd\" hostname=? addr=203.0.113.7 terminal=ssh res=failed'"


def test_openssh_sudo_su_usermgmt_lines() -> None:
    """Real OpenSSH, sudo, su, useradd and usermod lines become ECS with the fields rules use."""
    f = parse_syslog(SSH_FAIL, year=2026)
    assert (f["event"]["action"], f["event"]["outcome"], f["user"]["name"], f["source"]["ip"], f["source"]["port"]) == ("ssh_login", "failure", "admin", "203.0.113.7", 52311)
    assert f["@timestamp"] == "2026-11-24T23:11:02Z" and f["host"]["name"] == "prim-app-1" and f["process"]["pid"] == 1234
    assert parse_syslog(SSH_OK)["event"]["outcome"] == "success"
    s = parse_syslog(SUDO)
    assert s["process"]["command_line"] == "/usr/bin/systemctl stop auditd" and s["user"]["target"]["name"] == "root"
    d = parse_syslog(SUDO_DENIED)
    assert d["event"]["outcome"] == "failure" and d["user"]["name"] == "mallory"
    assert parse_syslog(SU_FAIL)["event"]["outcome"] == "failure"
    assert parse_syslog(USERADD)["user"]["target"]["name"] == "svc-x"
    assert parse_syslog(USERMOD)["group"]["name"] == "sudo"


def test_auditd_records() -> None:
    """EXECVE arguments (quoted and hex) become the command line; logins carry user, address and outcome."""
    assert parse_auditd(EXECVE)["process"]["command_line"] == "rm -rf /"
    assert parse_auditd(EXECVE_HEX)["process"]["command_line"] == "mkfs.ext4 /dev/sda"
    lg = parse_auditd(LOGIN)
    assert (lg["user"]["name"], lg["source"]["ip"], lg["event"]["outcome"]) == ("ops", "203.0.113.7", "failure")


def test_garbage_is_a_parse_error() -> None:
    """Lines that are not syslog or auditd say what was expected."""
    with pytest.raises(ParseError, match="expected"):
        parse_syslog("hello world")
    with pytest.raises(ParseError, match="auditd"):
        parse_auditd("type=")


def _count(es, index: str) -> int:  # noqa: ANN001
    es.indices.refresh(index=index)
    return es.count(index=index)["count"]


def test_spool_while_down_then_replay_in_order_without_doubles(services, tmp_path: Path) -> None:  # noqa: ANN001
    """Events sent while Elasticsearch is unreachable are spooled, then replayed once, in order; re-sending changes nothing."""
    es = client_for(services.settings)
    host = f"h-{uuid.uuid4().hex[:6]}"
    lines = [f"Nov 20 10:00:{i:02d} {host} sshd[{100 + i}]: Failed password for ops from 203.0.113.{i} port 5{i:04d} ssh2" for i in range(40)]
    down = Ingestor(client("http://127.0.0.1:9", timeout=1), tmp_path / "spool")
    r1 = down.ingest_lines(lines[:25], "syslog")
    r2 = down.ingest_lines(lines[25:], "syslog")
    assert r1.spooled == 25 and r2.spooled == 15 and r1.indexed == 0 and down.pending() == 40
    up = Ingestor(es, tmp_path / "spool")
    r3 = up.ingest_lines([], "syslog")
    assert r3.replayed == 40 and up.pending() == 0
    idx = "soc-events-*"
    q = {"term": {"host.name": host}}
    es.indices.refresh(index=idx)
    assert es.count(index=idx, query=q)["count"] == 40
    up.ingest_lines(lines, "syslog")  # the same lines again: same ids, no doubles
    es.indices.refresh(index=idx)
    assert es.count(index=idx, query=q)["count"] == 40
    hits = es.search(index=idx, query=q, size=40, sort=[{"@timestamp": "asc"}])["hits"]["hits"]
    assert [h["_source"]["process"]["pid"] for h in hits] == [100 + i for i in range(40)]


def test_malformed_lines_go_to_dead_letter(services, tmp_path: Path) -> None:  # noqa: ANN001
    """A line no parser understands is kept in the dead-letter index with its file, line number and reason."""
    es = client_for(services.settings)
    marker = f"garbage-{uuid.uuid4().hex[:8]}"
    res = Ingestor(es, tmp_path / "spool").ingest_lines([SSH_OK, marker], "syslog", source="auth.log")
    assert res.indexed == 1 and res.dead_lettered == 1
    es.indices.refresh(index=DEADLETTER_INDEX)
    hit = es.search(index=DEADLETTER_INDEX, query={"term": {"original": marker}})["hits"]["hits"][0]["_source"]
    assert hit["reason"].startswith("auth.log:2: not a syslog line")


def test_http_bulk_endpoint(sqlite_runtime, services) -> None:  # noqa: ANN001
    """POST /api/v1/soc/events: authenticated, role-checked, indexed, bad events dead-lettered, audited."""
    from fastapi.testclient import TestClient

    from control_plane.api.app import create_app
    from tests.gate.conftest import make_people

    rt = sqlite_runtime
    people = make_people(rt)
    client = TestClient(create_app(rt), client=("127.0.0.1", 50001))
    host = f"api-{uuid.uuid4().hex[:6]}"
    events = [parse_syslog(SSH_OK.replace("prim-app-1", host)), {"message": "no timestamp here"}]
    assert client.post("/api/v1/soc/events", json={"events": events}).status_code == 401
    assert client.post("/api/v1/soc/events", json={"events": events}, headers={"Authorization": f"Bearer {people.tokens['auditor']}"}).status_code == 403
    r = client.post("/api/v1/soc/events", json={"events": events}, headers={"Authorization": f"Bearer {people.tokens['secadmin']}"})
    assert r.status_code == 202 and r.json()["indexed"] == 1 and r.json()["dead_lettered"] == 1
    rt.es.indices.refresh(index="soc-events-*")
    assert rt.es.count(index="soc-events-*", query={"term": {"host.name": host}})["count"] == 1
    assert rt.ledger.query(operation="soc.ingest")[0].actor == "secadmin"
