"""Several control planes on one state database: the standbys `govctl up` starts, and their status.

Each control plane serves the API and console on its own port and runs a scheduler that leads
only while it holds the leader lock. `govctl up` on ``api.port`` also starts one more on each of
``api.standby_ports`` (the cluster profile: 8701), so that when one dies the other keeps serving
and takes over the scheduler. The standbys run in sessions of their own: they outlive a first
control plane that is killed (that is their purpose); a first one that stops cleanly stops them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from control_plane.config import Settings
from control_plane.services.supervisor import ServiceStatus, _pid_alive, _port_free


def pid_file(settings: Settings, port: int) -> Path:
    """Where the control plane serving ``port`` writes its pid."""
    return settings.var / "run" / f"control-plane-{port}.pid"


def log_file(settings: Settings, port: int) -> Path:
    """A standby's output."""
    return settings.var / "log" / f"control-plane-{port}.log"


def mark_running(settings: Settings, port: int) -> Path:
    """Write this process's pid for ``services status``; the caller removes it on the way out."""
    p = pid_file(settings, port)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(f"{os.getpid()}\n", encoding="ascii")
    return p


def _pid(settings: Settings, port: int) -> int | None:
    try:
        pid = int(pid_file(settings, port).read_text(encoding="ascii").split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if _pid_alive(pid) else None


def _health(settings: Settings, port: int) -> tuple[str, str, str]:
    """(health, role, detail) from the control plane's own /healthz."""
    try:
        r = httpx.get(f"http://{settings.api.host}:{port}/healthz", timeout=3)
        body = r.json()
        role = str(body.get("checks", {}).get("scheduler", ""))
        state_db = str(body.get("checks", {}).get("state_db", ""))
    except (httpx.HTTPError, ValueError, AttributeError) as exc:
        return "unhealthy", "", type(exc).__name__
    if r.status_code != 200:
        return "unhealthy", role, f"state DB {state_db}"
    return "healthy", f"scheduler {role}" if role else "", ""


def status(settings: Settings) -> list[ServiceStatus]:
    """A row per control plane: the configured ones (``api.port`` and the standbys) when standbys are configured, else the running one."""
    ports = [settings.api.port, *settings.api.standby_ports]
    rows = []
    for i, port in enumerate(ports, 1):
        pid = _pid(settings, port)
        if pid is None and not settings.api.standby_ports:
            continue
        name = "control-plane" if i == 1 else f"control-plane-{i}"
        log = "-" if i == 1 else str(log_file(settings, port))
        address = f"{settings.api.host}:{port}"
        if pid is None:
            rows.append(ServiceStatus(name, address, None, "stopped", log))
            continue
        health, role, detail = _health(settings, port)
        rows.append(ServiceStatus(name, address, pid, health, log, detail, role))
    return rows


def start_standbys(settings: Settings) -> tuple[list[subprocess.Popen[bytes]], list[str]]:
    """Start a control plane on each standby port that has none; returns the processes and what was found already serving."""
    argv = [sys.executable, "-c", "from control_plane.cli import main; main()"]
    if settings.source != "embedded defaults":
        argv += ["--config", settings.source]
    procs, kept = [], []
    for port in settings.api.standby_ports:
        if port == settings.api.port:
            continue
        if _pid(settings, port) is not None:  # left running by a first control plane that was killed: it is still a control plane
            kept.append(f"{settings.api.host}:{port}")
            continue
        if not _port_free(settings.api.host, port):
            from control_plane.errors import GovctlError

            raise GovctlError(f"api: standby port {port} on {settings.api.host} is in use by something else",
                              hint="stop it, or change api.standby_ports")  # fmt: skip
        log = log_file(settings, port)
        log.parent.mkdir(parents=True, exist_ok=True)
        with os.fdopen(os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600), "ab") as fh:  # the child keeps its own descriptor
            procs.append(subprocess.Popen([*argv, "up", "--api-port", str(port), "--no-bastion"], stdin=subprocess.DEVNULL, stdout=fh,
                                          stderr=subprocess.STDOUT, start_new_session=True, env={**os.environ, "COLUMNS": "200"}))  # fmt: skip
    return procs, kept


def stop_standbys(procs: list[subprocess.Popen[bytes]], timeout_s: float = 60) -> None:
    """Ask each standby to stop as Ctrl-C would; kill what does not stop in time."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
    for p in procs:
        try:
            p.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(10)


def wait_serving(settings: Settings, procs: list[subprocess.Popen[bytes]], timeout_s: float = 180) -> None:
    """Wait until every standby answers /healthz; one that ends or never answers is stopped with the others and reported."""
    import time

    from control_plane.errors import GovctlError
    from control_plane.services.supervisor import _tail

    ports = [int(p.args[p.args.index("--api-port") + 1]) for p in procs]  # type: ignore[union-attr]
    deadline = time.monotonic() + timeout_s
    waiting = dict(zip(ports, procs))
    while waiting:
        for port, p in list(waiting.items()):
            if p.poll() is not None or time.monotonic() > deadline:
                stop_standbys(procs)
                why = f"ended with exit code {p.returncode}" if p.returncode is not None else f"did not answer within {timeout_s:.0f} s"
                raise GovctlError(f"the standby control plane on port {port} {why}: {_tail(log_file(settings, port))}",
                                  hint=f"see {log_file(settings, port)}")  # fmt: skip
            if _health(settings, port)[0] == "healthy":
                del waiting[port]
        time.sleep(0.5)
