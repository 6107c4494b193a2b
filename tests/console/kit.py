"""What the browser tests share: the console served for real (uvicorn on a free port), people who sign in, axe-core, screenshots.

The browser is Debian's Chromium driven by Playwright (its own browser download cannot work on these
machines); pytest-playwright's ``browser`` fixture launches it with the options in ``tests/conftest.py``.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyotp

from control_plane.context import Context
from control_plane.gate import iam

ROOT = Path(__file__).resolve().parents[2]
AXE = ROOT / "control_plane" / "console" / "assets" / "node_modules" / "axe-core" / "axe.min.js"
SHOTS = ROOT / "docs" / "screenshots"
ARTIFACTS = ROOT / "var" / "test" / "console"
PASSWORD = "Gov-cloud-2026!"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def read_until_up(proc: Any, within: float) -> list[str]:
    """The lines `govctl up` prints, up to its closing "Ctrl-C stops …" line (it is serving then); fails if it ends first or takes longer."""
    lines: list[str] = []
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        assert line, "govctl up ended early:\n" + "".join(lines)
        lines.append(line)
        if line.startswith("Ctrl-C"):
            return lines
    raise AssertionError(f"govctl up did not finish starting within {within:.0f} s:\n" + "".join(lines))


class Server:
    """The control plane's FastAPI app (API and console) under uvicorn, in a thread."""

    def __init__(self, ctx: Context) -> None:
        import uvicorn

        from control_plane.api.app import create_app

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(create_app(ctx), host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, name="console", daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline, "the console did not start within 30 s"
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


@dataclass
class Person:
    """Someone with a password and an authenticator."""

    name: str
    totp: pyotp.TOTP
    password: str = PASSWORD

    def code(self, ctx: Context) -> str:
        """A code for a step not used yet by this person (each is good once); waits for the next step when needed."""
        while True:
            last = (iam.get_user(ctx, self.name) or {}).get("totp_last_step") or 0
            now = int(time.time()) // 30
            step = max(last + 1, now - 1)
            if step <= now + 1 and step * 30 <= time.time() + 25:
                return self.totp.at(step * 30)
            time.sleep(1)


def person(ctx: Context, name: str, roles: list[str], department: str = "") -> Person:
    """A registered, enrolled person with a console password (set through the gate, as `govctl iam password` does)."""
    from control_plane.gate import OperationRequest

    _, code = iam.create_user(ctx, name, roles=roles, department=department)
    totp = pyotp.parse_uri(iam.start_enrolment(ctx, name, code))
    _, token, _ = iam.finish_enrolment(ctx, name, code, totp.at(time.time() - 30))
    p = Person(name, totp)
    me = ctx.gate.authenticate(token, source="127.0.0.1")
    tok = iam.PENDING_PASSWORD.set((name, PASSWORD, p.code(ctx)))
    try:
        assert ctx.gate.submit(me, OperationRequest("iam.password.set", name, {})).status == "succeeded"
    finally:
        iam.PENDING_PASSWORD.reset(tok)
    return p


def login(page: Any, base: str, p: Person, ctx: Context, *, lang: str = "zh", landing: str = "/") -> None:
    """Sign in through the form (password and TOTP); the overview (or ``landing``, for someone who may not read it) is shown."""
    page.goto(f"{base}/login")
    page.fill("#username", p.name)
    page.fill("#password", p.password)
    page.fill("#otp", p.code(ctx))
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}{landing}", timeout=15000)


def axe(page: Any, name: str) -> list[dict[str, Any]]:
    """Run axe-core in the page; the serious and critical violations (the page's context must bypass CSP for the injected script)."""
    page.add_script_tag(path=str(AXE))
    res = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    bad = [{"id": v["id"], "impact": v["impact"], "help": v["help"], "nodes": [n["target"] for n in v["nodes"][:5]]}
           for v in res["violations"] if v["impact"] in ("serious", "critical")]  # fmt: skip
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / f"axe-{name}.txt").write_text("\n".join(map(str, bad)) or "no serious or critical violations\n")
    return bad


def shot(page: Any, name: str, *, readme: bool = False) -> Path:
    """A screenshot as a test artifact (var/test/console), and for the README's five (docs/screenshots)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    if readme:
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=False)
    return path
