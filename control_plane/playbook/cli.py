"""Playbooks on the pools' hosts."""

from __future__ import annotations

from typing import Optional

import typer
from rich.table import Table

from control_plane.clikit import (JsonOpt, changes, emit_json, gated, out, pending_note, reads)  # fmt: skip
from control_plane.errors import GovctlError


playbook_app = typer.Typer(help="Ansible playbooks on the pools' hosts (through the gate).", no_args_is_help=True)


@playbook_app.command("list")
@reads("playbook.read")
def playbook_list(as_json: bool = JsonOpt) -> None:
    """Playbooks and what each does."""
    from control_plane.playbook.service import available

    rows = available()
    if as_json:
        emit_json(rows)
        return
    t = Table("playbook", "what it does")
    for k, v in rows.items():
        t.add_row(k, v)
    out.print(t)


@playbook_app.command("run")
@changes("playbook.run")
def playbook_run(name: str, limit: str = typer.Option(..., "--limit", "-l", help="Hosts or groups, comma-separated."),
                 check: bool = typer.Option(False, "--check", help="Check mode with diff: changes nothing (low risk)."),
                 var: Optional[list[str]] = typer.Option(None, "--var", "-e", help="key=value, repeatable."),
                 reason: str = typer.Option("", help="Why (shown to approvers)."),
                 break_glass: bool = typer.Option(False, "--break-glass", help="Emergency: skip approval, alert, open a review."),
                 as_json: bool = JsonOpt) -> None:  # fmt: skip
    """Run a playbook. A real run is high risk (an approver sees the check-mode diff first); --check is low risk."""
    extravars = {}
    for item in var or []:
        if "=" not in item:
            raise GovctlError(f"--var {item!r} is not key=value")
        k, v = item.split("=", 1)
        extravars[k] = v
    view = gated("playbook.run", limit, {"playbook": name, "check": check, "extravars": extravars}, reason=reason, break_glass=break_glass)
    if as_json:
        emit_json(view.as_dict())
    elif not pending_note(view):
        r = view.result
        out.print(f"{name} on {limit}: {r['status']} (rc {r['rc']}){' [check mode]' if check else ''}; changed: {r['changed'] or 'nothing'}")
        out.print(f"artifacts: {r['artifacts']}")


APPS = (("playbook", playbook_app),)
