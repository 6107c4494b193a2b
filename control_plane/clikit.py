"""What every domain's ``cli.py`` shares: the context, the caller's identity, the gate, access marks, output.

Each command declares what it maps to in the policy, once, with a decorator:
``@changes("backup.run")`` (the command submits that operation; the gate authorizes it),
``@reads("dr.read")`` (authorized here, before the command body runs, by the same
``Gate.authorize_read`` the API uses), or ``@public("why")`` for the few that touch no state
(``version``, validating rule files on disk) or establish identity (enrolment).
``tests/test_access_map.py`` lists every command and fails on one without a mark.
"""

from __future__ import annotations

import functools
import json
import os
import pwd
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import typer
from rich.console import Console

from control_plane import clock
from control_plane.config import Settings, load
from control_plane.context import Context
from control_plane.errors import GovctlError
from control_plane.operation import OperationRequest

F = TypeVar("F", bound=Callable[..., Any])

out = Console()
err = Console(stderr=True)
state: dict[str, Any] = {"debug": False, "config": None, "token": None}
# how a context is built: the composition root (control_plane.cli) sets it to wiring.context_for
factory: dict[str, Callable[[Settings], Context]] = {}

JsonOpt = typer.Option(False, "--json", help="Print machine-readable JSON.")
OtpOpt = typer.Option(None, "--otp", envvar="GOVCTL_OTP", help="The current code from your authenticator (asked for if you enrolled TOTP and leave it out).")


def context() -> Context:
    """This invocation's context (built once, from --config / $GOVCTL_CONFIG / the embedded defaults)."""
    ctx = state.get("ctx")
    if ctx is None:
        build = factory.get("context", Context)
        ctx = state["ctx"] = build(load(state["config"]))
    return ctx


def read_token(path: Path) -> str:
    """A token from a file that only its owner can read (anything looser is refused)."""
    try:
        st = path.stat()
        text = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        err.print(f"error: cannot read the token file {path}: {exc.strerror} (check the path)")
        raise typer.Exit(2) from None
    if st.st_mode & 0o077 or st.st_uid != os.geteuid():
        err.print(f"error: the token file {path} is readable by others or not yours (chmod 600 {path}; it must belong to you)")
        raise typer.Exit(2)
    return text


def principal() -> Any:
    """Who runs this command: their token, or (on the control-plane host) the OS user the kernel reports."""
    return context().gate.authenticate(state.get("token"), source="local", local_user=pwd.getpwuid(os.geteuid()).pw_name)


def gated(operation: str, target: str = "", params: dict | None = None, *, reason: str = "", break_glass: bool = False,
          progress: Callable[..., None] | None = None) -> Any:  # fmt: skip
    """Submit a change through the operation gate; returns the operation view (run, or awaiting approval)."""
    return context().gate.submit(principal(), OperationRequest(operation, target, params or {}, reason, break_glass), progress=progress)


def pending_note(view: Any) -> bool:
    """Tell the user an operation awaits approval; True if it does."""
    if view.status != "pending_approval":
        return False
    err.print(f"[yellow]{view.id}[/yellow]: {view.operation} on {view.target!r} is {view.risk} risk and awaits "
              f"{view.approvals_needed} approval(s): `govctl ops approve {view.id}` (by an approver), then `govctl ops run {view.id}`")
    return True


def emit_json(data: Any) -> None:
    """Print JSON for tools."""
    out.print_json(json.dumps(data, default=str, ensure_ascii=False))


def when(value: str | None) -> str | None:
    """An ISO 8601 time or an age (30m, 2h, 7d) as the stored UTC form; naive times are in the scheduler's zone."""
    if value is None:
        return None
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if value[:-1].isdigit() and value[-1] in units:
        return clock.iso(clock.now() - timedelta(seconds=int(value[:-1]) * units[value[-1]]))
    try:
        from datetime import datetime

        t = datetime.fromisoformat(value)
    except ValueError:
        raise GovctlError(f"cannot read time {value!r}", hint="use ISO 8601 (2026-11-25T08:00) or an age like 30m, 2h, 7d") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=ZoneInfo(context().settings.scheduler.timezone))
    return clock.iso(t)


# -- access marks ---------------------------------------------------------------------------------------


def changes(*operations: str) -> Callable[[F], F]:
    """Mark a command that submits these operations (the gate authorizes each submission)."""

    def deco(fn: F) -> F:
        fn.__access__ = ("changes", operations)  # type: ignore[attr-defined]
        return fn

    return deco


def reads(name: str) -> Callable[[F], F]:
    """Mark a command as the policy's read ``name`` and authorize the caller before its body runs."""

    def deco(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            ctx = context()
            ctx.gate.authorize_read(principal(), name)
            return fn(*args, **kwargs)

        wrapper.__access__ = ("reads", (name,))  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return deco


def public(why: str) -> Callable[[F], F]:
    """Mark a command that needs no policy entry, saying why."""

    def deco(fn: F) -> F:
        fn.__access__ = ("public", (why,))  # type: ignore[attr-defined]
        return fn

    return deco


def decides(action: str) -> Callable[[F], F]:
    """Mark a command that is a decision on an operation (approve, reject, cancel, run): the gate's own rules authorize it."""

    def deco(fn: F) -> F:
        fn.__access__ = ("decides", (action,))  # type: ignore[attr-defined]
        return fn

    return deco
