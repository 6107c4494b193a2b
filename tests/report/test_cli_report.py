"""The README's report commands, run as a user runs them (govctl in a subprocess, root's local roles)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.standins.province import serve_in_thread
from control_plane.context import Context
from tests.test_cli import govctl


def test_build_show_verify_submit_list(report_rt: Context) -> None:
    """build → show → verify → submit (to the stand-in) → list, each exit 0 with what the README says."""
    cfg = report_rt.settings.base_dir / "govctl.yaml"
    assert Path(cfg).exists()
    p = govctl("report", "build", "--month", "2026-10", config=cfg)
    assert p.returncode == 0, p.stderr
    assert "2026-10 revision 1" in p.stdout and "report.pdf" in p.stdout
    again = govctl("report", "build", "--month", "2026-10", config=cfg)
    assert again.returncode != 0 and "already built" in again.stderr and "--correct" in again.stderr
    show = govctl("report", "show", "--month", "2026-10", config=cfg)
    assert show.returncode == 0 and "primary" in show.stdout and "under-used hosts 1" in show.stdout
    v = govctl("report", "verify", "--month", "2026-10", "--json", config=cfg)
    assert v.returncode == 0 and json.loads(v.stdout)["ok"] is True
    server, thread, recv = serve_in_thread(report_rt.settings, report_rt.signer.public_key)
    try:
        import time

        time.sleep(0.5)
        s = govctl("report", "submit", "--month", "2026-10", config=cfg)
        assert s.returncode == 0, s.stderr
        assert "delivered" in s.stdout and "receipt" in s.stdout
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    lst = govctl("report", "list", "--json", config=cfg)
    rows = json.loads(lst.stdout)
    assert rows[0]["month"] == "2026-10" and rows[0]["delivery"]["status"] == "delivered"
    audit = govctl("audit", "show", "--operation", "report.*", "--json", config=cfg)
    ops = {r["operation"] for r in json.loads(audit.stdout)}
    assert {"report.build", "report.submit"} <= ops
