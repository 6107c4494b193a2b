"""The local services' commands: up, down, status."""

from __future__ import annotations

import contextlib

from typing import Any, Optional

import typer
from rich.table import Table

from control_plane.errors import GovctlError
from control_plane.clikit import (JsonOpt, changes, context, emit_json, err, gated, out, pending_note, reads)  # fmt: skip

services_app = typer.Typer(help="The local services: Elasticsearch, Prometheus, node_exporter, PostgreSQL.", no_args_is_help=True)

def status_table(rows: list[Any]) -> Table:
    t = Table("service", "address", "pid", "role", "health", "log")
    colours = {"healthy": "green", "stopped": "dim", "disabled": "dim"}
    for s in rows:
        role = getattr(s, "role", "")
        c = colours.get(s.health, "red")
        t.add_row(s.name, s.address, str(s.pid or "-"), role or "-", f"[{c}]{s.health}[/{c}]" + (f" ({s.detail})" if s.detail else ""), s.log)
    return t


@services_app.command("up")
@changes("services.up")
def services_up(names: Optional[list[str]] = typer.Argument(None, help="Services to start (default: all enabled)."),
                profile: Optional[str] = typer.Option(None, "--profile", help="single or cluster (the same as govctl --profile)."),
                as_json: bool = JsonOpt) -> None:  # fmt: skip
    """Start the services (idempotent) and wait until each is ready."""
    if profile:
        import os

        from control_plane.clikit import state

        if state.get("ctx") is not None:
            raise GovctlError("--profile must come before anything reads the configuration", hint="use govctl --profile cluster services up")
        os.environ["GOVCTL_PROFILE"] = profile
    with err.status("starting services…", spinner="dots") if not as_json else contextlib.nullcontext():
        view = gated("services.up", ",".join(names or []) or "all")
    rows = view.result["status"]
    if as_json:
        emit_json(rows)
        return
    if view.result["started"]:
        err.print(f"started: {', '.join(view.result['started'])}")
    t = Table("service", "address", "pid", "role", "health", "log")
    for r in rows:
        t.add_row(r["name"], r["address"], str(r["pid"] or "-"), r.get("role") or "-", r["health"], r["log"])
    out.print(t)


@services_app.command("down")
@changes("services.down")
def services_down(names: Optional[list[str]] = typer.Argument(None, help="Services to stop (default: all we started)."),
                  reason: str = typer.Option("", help="Why (recorded with the request)."), as_json: bool = JsonOpt) -> None:  # fmt: skip
    """Stop the services govctl started (never anything else). High risk: needs an approval."""
    view = gated("services.down", ",".join(names or []) or "all", reason=reason)
    if as_json:
        emit_json(view.as_dict())
    elif not pending_note(view):
        stopped = view.result["stopped"]
        out.print(f"stopped: {', '.join(stopped) if stopped else 'nothing was running'}")


@services_app.command("status")
@reads("services.read")
def services_status(as_json: bool = JsonOpt) -> None:
    """Each service's address, pid, role and health, then the control planes; exit 1 if an enabled service is not healthy."""
    from control_plane.services import control_planes

    rt = context()
    rows = rt.supervisor.status()
    planes = control_planes.status(rt.settings)  # `govctl up` runs them: their state is shown, not counted in the exit code
    if as_json:
        emit_json([r.as_dict() for r in rows + planes])
    else:
        out.print(status_table(rows + planes))
    if any(r.health not in ("healthy", "disabled") for r in rows):
        raise typer.Exit(1)


APPS = (("services", services_app),)
