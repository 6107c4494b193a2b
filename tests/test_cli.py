"""The govctl command line, run as a user would run it (a real subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from control_plane.services import Supervisor

GOVCTL = [sys.executable, "-m", "control_plane.cli"]


def govctl(*args: str, config: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run govctl with a config file; capture output."""
    env = {**os.environ, "COLUMNS": "200"}
    env.pop("GOVCTL_CONFIG", None)
    pre = ["--config", str(config)] if config else []
    return subprocess.run([*GOVCTL, *pre, *args], capture_output=True, text=True, env=env, timeout=120)


def test_services_status_json(services: Supervisor, config_file: Path) -> None:
    """`govctl services status --json` lists the five services as healthy, exit 0."""
    p = govctl("services", "status", "--json", config=config_file)
    assert p.returncode == 0, p.stderr
    rows = {r["name"]: r for r in json.loads(p.stdout)}
    assert {n: r["health"] for n, r in rows.items()} == dict.fromkeys(("postgres", "elasticsearch", "node_exporter", "alertmanager", "prometheus"), "healthy")


def test_bad_config_one_line_error(tmp_path: Path) -> None:
    """A bad file: exit 2 and one line naming the key, the value and what is allowed; no traceback."""
    (tmp_path / "bad.yaml").write_text("services:\n  prometheus:\n    port: -1\n")
    p = govctl("config", "show", config=tmp_path / "bad.yaml")
    assert p.returncode == 2
    assert "services.prometheus.port" in p.stderr and "-1" in p.stderr and "Traceback" not in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1


def test_config_show_masks_and_reports_source(tmp_path: Path) -> None:
    """`config show --json` names its source and masks the key passphrase."""
    (tmp_path / "c.yaml").write_text("crypto: {key_passphrase: s3cret-pw}\n")
    p = govctl("config", "show", "--json", config=tmp_path / "c.yaml")
    assert p.returncode == 0 and "s3cret-pw" not in p.stdout
    data = json.loads(p.stdout)
    assert data["source"].endswith("c.yaml") and data["config"]["crypto"]["key_passphrase"] == "****"


def test_audit_verify_exit_codes(tmp_path: Path) -> None:
    """`audit verify` exits 0 on a sound chain and 1, naming the record, after an edit."""
    (tmp_path / "c.yaml").write_text(f"var_dir: {tmp_path / 'var'}\ncrypto: {{kdf_iterations: 100000}}\n")
    cfg = tmp_path / "c.yaml"
    assert govctl("jobs", "run", "scheduler.prune_runs", config=cfg).returncode == 0  # appends an audit record
    assert govctl("jobs", "run", "audit.checkpoint", config=cfg).returncode == 0
    ok = govctl("audit", "verify", "--json", config=cfg)
    assert ok.returncode == 0 and json.loads(ok.stdout)["ok"] is True
    import sqlite3

    with sqlite3.connect(tmp_path / "var" / "state" / "govctl.db") as db:
        db.execute("UPDATE audit_records SET actor = 'nobody' WHERE seq = 1")
    bad = govctl("audit", "verify", config=cfg)
    assert bad.returncode == 1 and "record 1" in bad.stderr


def test_audit_show_filters(tmp_path: Path) -> None:
    """`audit show --operation 'jobs.*' --json` returns the job runs just made, newest first."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"var_dir: {tmp_path / 'var'}\ncrypto: {{kdf_iterations: 100000}}\n")
    govctl("jobs", "run", "scheduler.prune_runs", config=cfg)
    govctl("jobs", "pause", "audit.verify", config=cfg)
    rows = json.loads(govctl("audit", "show", "--operation", "jobs.*", "--since", "1h", "--json", config=cfg).stdout)
    # newest first: the pause is high risk and waits for an approver; the run went through at once, and
    # inside it the job's own change (pruning run records) went through the gate as system:scheduler
    assert [(r["operation"], r["decision"], r["outcome"]) for r in rows] == [
        ("jobs.pause", "require_approval", "accepted"),
        ("jobs.run", "allow", "succeeded"),
        ("jobs.prune", "allow", "succeeded"),
        ("jobs.prune", "allow", "started"),
        ("jobs.prune", "allow", "accepted"),
        ("jobs.run", "allow", "started"),
        ("jobs.run", "allow", "accepted"),
    ]
    assert rows[0]["target"] == "audit.verify" and rows[0]["actor"] == "local:root"
    assert {r["actor"] for r in rows if r["operation"] == "jobs.prune"} == {"system:scheduler"}
    bad = govctl("audit", "show", "--since", "yesterday-ish", config=cfg)
    assert bad.returncode != 0 and "cannot read time" in bad.stderr
