"""Deployments of the pools."""

from __future__ import annotations

import os


import typer

from control_plane.clikit import (JsonOpt, changes, context, emit_json, err, gated, out, pending_note, principal,
                                  reads)  # fmt: skip


deploy_app = typer.Typer(help="Provision the primary and backup pools (Pulumi, through the gate).", no_args_is_help=True)
StackOpt = typer.Option("local", "--stack", "-s", help="A stack from deploy.stacks in govctl.yaml.")


def _deploy(operation: str, stack: str, reason: str, as_json: bool, break_glass: bool = False) -> None:
    def progress(op: str, name: str, outcome: str) -> None:
        err.print(f"  {'[green]✓' if outcome == 'succeeded' else '[red]✗'}[/] {op:8} {name}")

    view = gated(operation, stack, reason=reason, break_glass=break_glass, progress=None if as_json else progress)
    if as_json:
        emit_json(view.as_dict())
        return
    if pending_note(view):
        if view.preview:
            out.print(f"preview for the approver: {view.preview['change_summary']}")
        return
    res = view.result
    if operation == "deploy.preview":
        out.print(f"stack {stack}: {res['change_summary']}")
        for step in res["steps"]:
            out.print(f"  {step['op']:8} {step['type']:40} {step['name']}")
    else:
        out.print(f"stack {stack}: {res['summary']}")
        for k, v in (res.get("outputs") or {}).items():
            out.print(f"  {k}: {v}")


@deploy_app.command("preview")
@changes("deploy.preview")
def deploy_preview(stack: str = StackOpt, as_json: bool = JsonOpt) -> None:
    """What `up` would change (low risk: runs at once)."""
    _deploy("deploy.preview", stack, "", as_json)


@deploy_app.command("up")
@changes("deploy.up")
def deploy_up(stack: str = StackOpt, reason: str = typer.Option("", help="Why (shown to approvers)."),
              break_glass: bool = typer.Option(False, "--break-glass", help="Emergency: skip approval, alert, open a review."),
              as_json: bool = JsonOpt) -> None:  # fmt: skip
    """Create or update the pools. High risk: an approver sees the preview diff, then you run it."""
    _deploy("deploy.up", stack, reason, as_json, break_glass)


@deploy_app.command("destroy")
@changes("deploy.destroy")
def deploy_destroy(stack: str = StackOpt, reason: str = typer.Option("", help="Why (shown to approvers)."), as_json: bool = JsonOpt) -> None:
    """Delete the pools. Critical: two distinct approvers."""
    _deploy("deploy.destroy", stack, reason, as_json)


@deploy_app.command("outputs")
@reads("deploy.read")
def deploy_outputs(stack: str = StackOpt, as_json: bool = JsonOpt) -> None:
    """The stack's hosts, buckets and zones."""
    from control_plane.deploy.service import outputs

    principal()
    res = outputs(context(), stack)
    if as_json:
        emit_json(res)
    else:
        for k, v in res.items():
            out.print(f"{k}: {v}")


@deploy_app.command("cli-env")
@reads("deploy.read")
def deploy_cli_env() -> None:
    """The exports the standard `pulumi` CLI needs at the repository root (paths only: the passphrase stays in its file).

    Plain lines (never wrapped), for `eval "$(govctl deploy cli-env)"`."""
    from control_plane.resources import project_root

    principal()
    s = context().settings
    typer.echo(f"export PATH={project_root() / '.venv' / 'bin'}:$PATH")
    typer.echo(f"export PULUMI_BACKEND_URL=file://{s.var / 'pulumi' / 'state'} PULUMI_HOME={s.var / 'pulumi' / 'home'}")
    if os.environ.get("GOVCTL_KEY_PASSPHRASE"):
        typer.echo('export PULUMI_CONFIG_PASSPHRASE="$GOVCTL_KEY_PASSPHRASE"')
    elif s.crypto.key_passphrase:
        typer.echo("# the platform key's passphrase is in govctl.yaml (crypto.key_passphrase): export PULUMI_CONFIG_PASSPHRASE yourself")
    else:
        typer.echo(f"export PULUMI_CONFIG_PASSPHRASE_FILE={s.key_passphrase_file()}")
    typer.echo("# then: pulumi preview --stack local; pulumi up --stack local --policy-pack infra/policy")


APPS = (("deploy", deploy_app),)
