"""`make run` is `govctl up`: it prints the console's address, and the console answers there."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.conftest import make_test_config, write_config
from tests.bastion.conftest import wait_until as wait_for
from tests.console.kit import free_port, read_until_up
from tests.test_cli import GOVCTL

pytestmark = pytest.mark.services


def test_govctl_up_prints_the_console_address(tmp_path: Path, services: object) -> None:
    """The address line names the console; a GET there leads to the sign-in page; Ctrl-C stops it cleanly."""
    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "svc").symlink_to(services.root)  # type: ignore[attr-defined] - the session's services, already up
    api, ssh = free_port(), free_port()
    cfg = write_config(tmp_path / "govctl.yaml", make_test_config(var_dir=tmp_path / "var", api={"port": api}, bastion={"port": ssh},
                                                                   scheduler={"enabled": False}))  # fmt: skip
    env = {**os.environ, "COLUMNS": "200"}
    env.pop("GOVCTL_CONFIG", None)
    proc = subprocess.Popen([*GOVCTL, "--config", str(cfg), "up"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        lines = read_until_up(proc, 120)
        # printed once the API answers: the table already shows this control plane serving, with its scheduler's role
        assert any("control-plane" in ln and "healthy" in ln and "scheduler off" in ln for ln in lines), "".join(lines)
        console = next(ln for ln in lines if ln.startswith("console"))
        assert f"http://127.0.0.1:{api}/" in console and "控制台" in console
        # the lines are printed as uvicorn starts binding: wait for the socket, not for a guess at how long that takes
        wait_for(lambda: _answers(proc, f"http://127.0.0.1:{api}/healthz"), "the console to answer", within=60)
        r = httpx.get(f"http://127.0.0.1:{api}/", follow_redirects=True, timeout=10)
        assert r.status_code == 200 and "动态口令" in r.text and str(r.url).endswith("/login?next=/")
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)


def _answers(proc: subprocess.Popen[str], url: str) -> bool:
    assert proc.poll() is None, "govctl up ended:\n" + (proc.stdout.read() if proc.stdout else "")
    try:
        httpx.get(url, timeout=2)
        return True
    except httpx.ConnectError:
        return False
