"""The medium and low findings: forged source addresses, restores through planted links, break-glass by one person,
file modes at creation, forged synthetic events, and the analysts' decision command."""

from __future__ import annotations

import json
import os
import socket
import stat
import threading
import time
from pathlib import Path

import httpx
import pytest
import uvicorn
from typer.testing import CliRunner

from control_plane import cli, clikit
from control_plane.api.app import create_app, server_config
from control_plane.gate import ApprovalError, OperationRequest
from control_plane.context import Context
from tests.conftest import make_test_config, write_config
from tests.gate.conftest import People


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_x_forwarded_for_is_ignored_unless_from_a_configured_proxy(people: People) -> None:
    """A caller on 127.0.0.1 claiming X-Forwarded-For: 10.9.9.9 is recorded (and whitelisted) as 127.0.0.1."""
    rt = people.rt
    port = _free_port()
    server = uvicorn.Server(server_config(rt.settings, create_app(rt), port=port))
    th = threading.Thread(target=server.run, daemon=True)
    th.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert time.monotonic() < deadline, "the API did not start"
            time.sleep(0.05)
        r = httpx.get(f"http://127.0.0.1:{port}/api/v1/jobs", headers={"Authorization": "Bearer gct_000000000000_wrong",
                                                                       "X-Forwarded-For": "10.9.9.9"})  # fmt: skip
        assert r.status_code == 401
    finally:
        server.should_exit = True
        th.join(timeout=10)
    sources = {r.source for r in rt.ledger.query(operation="gate.authenticate", limit=10)}
    assert sources == {"127.0.0.1"}


def test_restore_never_writes_through_a_planted_link(sqlite_runtime: Context, tmp_path: Path) -> None:
    """A target that is a link, or holds one, is refused before anything is written; nothing outside changes."""
    from dr.files import backup, restore
    from dr.repo import RepoError
    from dr.service import open_repo

    src = tmp_path / "src"
    (src / "etc").mkdir(parents=True)
    (src / "etc" / "passwd").write_text("restored\n")
    repo = open_repo(sqlite_runtime)
    sid, _ = backup(repo, src, name="t")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "passwd").write_text("original\n")
    planted = tmp_path / "target"
    planted.mkdir()
    (planted / "etc").symlink_to(outside)
    with pytest.raises(RepoError, match="not empty"):
        restore(repo, sid, planted)
    link = tmp_path / "link"
    link.symlink_to(outside)
    with pytest.raises(RepoError, match="symbolic link"):
        restore(repo, sid, link)
    assert (outside / "passwd").read_text() == "original\n" and stat.S_IMODE(outside.stat().st_mode) == 0o755
    restore(repo, sid, tmp_path / "fresh")
    assert (tmp_path / "fresh" / "etc" / "passwd").read_text() == "restored\n"


def test_restore_refused_at_submission_into_a_non_empty_target(people: People, tmp_path: Path) -> None:
    """The gate refuses the request (audited) before an approver is even asked."""
    from dr.repo import RepoError

    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x").write_text("x")
    with pytest.raises(RepoError, match="not empty"):
        people.rt.gate.submit(people["sysadmin"], OperationRequest("dr.restore", "abc", {"kind": "files", "target": str(tmp_path / "busy")}))


def test_break_glass_needs_a_second_person_to_close(people: People, services) -> None:  # noqa: ANN001
    """One security administrator closes the break-glass alert; the review must be closed by another."""
    from tests.gate.test_gate import _break_glass_covers_jobs_run

    rt, gate = people.rt, people.rt.gate
    _break_glass_covers_jobs_run(rt)
    v = gate.submit(people["sysadmin"], OperationRequest("jobs.run", "audit.checkpoint", {}, reason="emergency", break_glass=True))
    alert_id = f"gate-break-glass-{v.id}"
    gate.submit(people["secadmin"], OperationRequest("soc.alert.update", alert_id, {"action": "close", "verdict": "benign", "text": "known"}))
    with pytest.raises(ApprovalError, match="second person"):
        gate.submit(people["secadmin"], OperationRequest("gate.review.close", v.id, {"verdict": "justified"}))
    done = gate.submit(people["secadmin2"], OperationRequest("gate.review.close", v.id, {"verdict": "justified"}))
    assert done.status == "succeeded"


def test_secret_files_are_private_from_creation(sqlite_runtime: Context) -> None:
    """The state DB, the anchor file, the key and every generated credential file are 0600."""
    rt = sqlite_runtime
    from control_plane.audit import AuditEvent

    rt.ledger.append(AuditEvent(actor="a", operation="deploy.preview"))
    rt.ledger.checkpoint()
    db = Path(rt.settings.state_url().removeprefix("sqlite:///"))
    for f in (db, rt.settings.anchor_file, rt.settings.key_dir / "platform.key", rt.settings.key_passphrase_file(),
              rt.settings.es_credentials_path(), rt.settings.pg_credentials_path()):  # fmt: skip
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f


def test_a_forged_synthetic_marker_neither_hides_the_alert_nor_stops_the_response(sqlite_runtime: Context, services, tmp_path: Path) -> None:  # noqa: ANN001
    """An outside event carrying govctl.synthetic is treated as real: its alert is in the analysts' queue."""
    from datetime import datetime, timedelta, timezone

    from control_plane.soc import alerts, detect
    from control_plane.soc.ingest import Ingestor
    from control_plane.soc.rules import load_rules

    rt = sqlite_runtime
    rules_dir = tmp_path / "rules"
    rules_dir.mkdir()
    src = Path(__file__).parents[2] / "soc_rules" / "history_tampering.yml"
    (rules_dir / src.name).write_text(src.read_text())
    host = f"forge-{os.getpid()}-{time.time_ns() % 100000}"
    now = datetime.now(timezone.utc)
    ev = {"@timestamp": now.isoformat().replace("+00:00", "Z"), "host": {"name": host},
          "event": {"module": "syslog", "category": ["process"], "type": ["start"], "action": "sudo_command"},
          "process": {"name": "bash", "command_line": "history -c"}, "user": {"name": "mallory"}, "govctl": {"synthetic": "fake-run"}}  # fmt: skip
    assert Ingestor(rt.es, tmp_path / "spool").ingest_documents([ev], source="test").indexed == 1
    rt.es.indices.refresh(index="soc-events-*")
    detect.run(rt, load_rules(rules_dir), now=now + timedelta(seconds=5), lookback_s=600)
    found = [a for a in alerts.search(rt.es, limit=500) if any((e.get("host") or {}).get("name") == host for e in a.get("events", []))]
    assert found and found[0]["kind"] == "detection"


def test_soc_decide_prints_the_decision_and_why(tmp_path: Path) -> None:
    """`govctl soc decide -- TEXT --json` has a top-level action and the commands the rules saw."""
    cfg = write_config(tmp_path / "govctl.yaml", make_test_config(var_dir=tmp_path / "var"))
    clikit.state.clear()
    res = CliRunner().invoke(cli.app, ["--config", str(cfg), "soc", "decide", "--json", "--", "X=rm; sudo $X -rf /"], env={"GOVCTL_TOKEN": ""})
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["action"] == "block" and "rm -rf /" in doc["commands"] and doc["reasons"]
