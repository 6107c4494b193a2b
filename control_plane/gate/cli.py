"""The gate's commands: operations and approvals, people, roles and tokens."""

from __future__ import annotations

import json
import sys
from typing import Any, Optional

import typer
from rich.table import Table

from control_plane.clikit import (JsonOpt, OtpOpt, changes, context, decides, emit_json, err, gated, out, pending_note, principal,
                                  public, reads)  # fmt: skip
from control_plane.errors import GovctlError


ops_app = typer.Typer(help="Operations awaiting, given or refused approval (the operation gate).", no_args_is_help=True)
iam_app = typer.Typer(help="Users, roles and API tokens.", no_args_is_help=True)


def _op_table(views: list[Any]) -> Table:
    t = Table("id", "operation", "target", "requester", "risk", "status", "approvals", "created (UTC)")
    for v in views:
        got = sum(1 for a in v.approvals if a["decision"] == "approve")
        t.add_row(v.id, v.operation, v.target, v.requester, v.risk, v.status, f"{got}/{v.approvals_needed}", v.created[:19])
    return t


@ops_app.command("list")
@reads("ops.read")
def ops_list(status: Optional[str] = typer.Option(None, help="pending_approval, approved, succeeded, failed, rejected, cancelled, expired"),
             limit: int = 50, as_json: bool = JsonOpt) -> None:  # fmt: skip
    """Operations, newest first."""
    principal()
    views = context().gate.list(status=status, limit=limit)
    if as_json:
        emit_json([v.as_dict() for v in views])
    else:
        out.print(_op_table(views))


@ops_app.command("show")
@reads("ops.read")
def ops_show(op_id: str, as_json: bool = JsonOpt) -> None:
    """The full request, its risk, the SOC findings, the preview and the approvals so far."""
    v = context().gate.get(op_id, opened_by=principal())  # an approver opening it: a deferred preview is made now
    if as_json:
        emit_json(v.as_dict())
        return
    out.print(f"[bold]{v.id}[/bold]  {v.operation} on {v.target!r}  risk [bold]{v.risk}[/bold]  status {v.status}")
    out.print(f"requested by {v.requester} from {v.source} at {v.created}; expires {v.expires}" + (" [red]BREAK-GLASS[/red]" if v.break_glass else ""))
    out.print(f"reason: {v.reason or '-'}")
    out.print(f"request hash (SM3, approvals are bound to it): {v.request_hash}")
    out.print("parameters:", highlight=False)
    out.print_json(json.dumps(v.params, ensure_ascii=False))
    soc = v.soc
    out.print(f"SOC decision: {soc['action']}" + (" (degraded)" if soc.get("degraded") else "") + f" — {'; '.join(soc['reasons'])}"
              + (f" [rules: {', '.join(soc['matched_rules'])}]" if soc["matched_rules"] else ""))  # fmt: skip
    if v.preview is not None:
        out.print("preview:")
        out.print_json(json.dumps(v.preview, ensure_ascii=False, default=str))
    for a in v.approvals:
        out.print(f"  {a['decision']} by {a['approver']} at {a['ts']}: {a['comment']}")
    if v.result is not None:
        out.print("result:")
        out.print_json(json.dumps(v.result, ensure_ascii=False, default=str))


@ops_app.command("approve")
@decides("approve")
def ops_approve(op_id: str, comment: str = typer.Option("", help="Recorded with the approval."),
                otp: Optional[str] = typer.Option(None, "--otp", envvar="GOVCTL_OTP", help="The current code from your authenticator."),
                as_json: bool = JsonOpt) -> None:  # fmt: skip
    """Approve an operation as shown by `ops show` (approvers only, never your own)."""
    v = context().gate.approve(principal(), op_id, comment, otp=otp)
    emit_json(v.as_dict()) if as_json else out.print(f"{op_id}: {v.status}")




@ops_app.command("reject")
@decides("reject")
def ops_reject(op_id: str, comment: str = typer.Option("", help="Why."), otp: Optional[str] = OtpOpt, as_json: bool = JsonOpt) -> None:
    """Reject an operation."""
    v = context().gate.approve(principal(), op_id, comment, decision="reject", otp=otp)
    emit_json(v.as_dict()) if as_json else out.print(f"{op_id}: {v.status}")


@ops_app.command("cancel")
@decides("cancel")
def ops_cancel(op_id: str, as_json: bool = JsonOpt) -> None:
    """Withdraw your pending or approved operation."""
    v = context().gate.cancel(principal(), op_id)
    emit_json(v.as_dict()) if as_json else out.print(f"{op_id}: {v.status}")


@ops_app.command("run")
@decides("run")
def ops_run(op_id: str, as_json: bool = JsonOpt) -> None:
    """Run your approved operation (once)."""
    v = context().gate.run(principal(), op_id)
    if as_json:
        emit_json(v.as_dict())
    else:
        out.print(f"{op_id}: {v.status}")
        if v.secret:
            out.print(f"token (shown once): {v.secret}", highlight=False)


@ops_app.command("reviews")
@reads("ops.read")
def ops_reviews(as_json: bool = JsonOpt) -> None:
    """Open after-the-fact reviews of break-glass operations."""

    principal()
    rows = context().gate.open_reviews()
    if as_json:
        emit_json(rows)
        return
    t = Table("operation", "opened", "alert sent")
    for r in rows:
        t.add_row(r["op_id"], r["opened"], "yes" if r["alert_sent"] else "not yet")
    out.print(t)


@ops_app.command("review-close")
@changes("gate.review.close")
def ops_review_close(op_id: str, verdict: str = typer.Option(..., help="The reviewer's finding."), as_json: bool = JsonOpt) -> None:
    """Close a break-glass review with a verdict (a security administrator other than the one who broke the glass)."""
    v = context().gate.submit(principal(), _req("gate.review.close", op_id, {"verdict": verdict}))
    emit_json(v.as_dict()) if as_json else out.print(f"review of {op_id}: closed")


def _req(operation: str, target: str, params: dict) -> Any:
    from control_plane.gate import OperationRequest

    return OperationRequest(operation, target, params)


@iam_app.command("bootstrap")
@public("first run only, by the host's administrator at the console (a peer sysadmin); refused once users exist; audited")
def iam_bootstrap(as_json: bool = JsonOpt) -> None:
    """First run only: create one user per role (two approvers), each with a one-time enrolment code.

    Hand each code to its person only: they enrol themselves (`govctl iam enrol NAME`), choosing
    their own second factor and receiving their own token; no token is printed here.
    """
    from control_plane.gate import iam

    rt = context()
    p = principal()
    if "sysadmin" not in p.roles or p.via != "peer":
        raise GovctlError("bootstrap is for the host's administrator at the console", hint="run it as root on the control-plane host")
    if iam.list_users(rt):
        raise GovctlError("users already exist; bootstrap runs only once", hint="govctl iam user add NAME --role ROLE (a security administrator)")
    made = {}
    for name, roles in (("sysadmin", ["sysadmin"]), ("secadmin", ["secadmin"]), ("auditor", ["auditor"]),
                        ("ops", ["ops_engineer"]), ("approver1", ["approver"]), ("approver2", ["approver"])):  # fmt: skip
        _user, code = iam.create_user(rt, name, roles=roles)
        made[name] = {"roles": roles, "enrolment_code": code}
    rt.gate.record(p, "iam.bootstrap", target="users", params={n: m["roles"] for n, m in made.items()}, details={"users": sorted(made)})
    if as_json:
        emit_json(made)
        return
    t = Table("user", "roles", "enrolment code (for that person only; works once, 72 h)")
    for n, m in made.items():
        t.add_row(n, ", ".join(m["roles"]), m["enrolment_code"])
    out.print(t)
    out.print("each person runs: govctl iam enrol NAME   (asks for the code, sets up TOTP, prints their own token)")


@iam_app.command("enrol")
@public("establishes identity with a one-time enrolment code and TOTP; throttled and audited")
def iam_enrol(name: str, ttl_days: int = typer.Option(30, min=1, max=366, help="Lifetime of the first token."), as_json: bool = JsonOpt) -> None:
    """Enrol yourself with the one-time code you were given: set up TOTP and receive your own token.

    The code and the one-time password are read from the terminal (or standard input), never
    from the command line.
    """
    from control_plane.gate.models import Principal
    from control_plane.gate import iam

    rt = context()
    code = _ask("enrolment code: ", secret=True)
    key = f"enrol:{name}"
    try:
        if iam.locked_out(rt, key):
            raise GovctlError(f"too many failed enrolment attempts for {name}", hint="wait 15 minutes or ask for a new code")
        uri = iam.start_enrolment(rt, name, code)
        err.print(f"add this to your authenticator app (TOTP, 30 s, 6 digits):\n{uri}")
        otp = _ask("current 6-digit code: ")
        token_id, secret, expires = iam.finish_enrolment(rt, name, code, otp, ttl_days=ttl_days)
    except GovctlError as exc:
        iam.record_failure(rt, key)
        rt.gate.record(Principal("anonymous", (), "local", "none"), "gate.authenticate", target=name, decision="deny", outcome="refused",
                       details={"error": exc.message, "as": "iam.enrol"})  # fmt: skip
        raise
    rt.gate.record(Principal(name, (), "local", "enrolment"), "iam.enrol", target=name, details={"token_id": token_id})
    if as_json:
        emit_json({"user": name, "token_id": token_id, "token": secret, "expires": expires, "totp_uri": uri})
        return
    out.print(f"enrolled {name}; your token {token_id} (shown once, expires {expires[:10]}):\n{secret}", highlight=False)
    out.print("keep it in a 0600 file for --token-file, or in GOVCTL_TOKEN")


@iam_app.command("password")
@changes("iam.password.set")
def iam_password(as_json: bool = JsonOpt) -> None:
    """Set your own console password (asked twice, never on the command line) with your current TOTP code.

    At least 12 characters of three kinds (lower and upper case, digits, symbols), not your name,
    none of your last five.
    """
    from control_plane.gate import iam

    me = principal()
    if me.via != "token":
        raise GovctlError("a console password belongs to a person who signed in with their own token", hint="set GOVCTL_TOKEN or use --token-file")
    first = _ask("new password: ", secret=True)
    if _ask("again: ", secret=True) != first:
        raise GovctlError("the two passwords differ", hint="type the same password twice")
    token = iam.PENDING_PASSWORD.set((me.name, first, _ask("current 6-digit code: ")))
    try:
        view = gated("iam.password.set", me.name, {})
    finally:
        iam.PENDING_PASSWORD.reset(token)
    if as_json:
        emit_json(view.as_dict())
    else:
        out.print(f"password set for {me.name}; sign in to the console with it and your TOTP code")


def _ask(prompt: str, *, secret: bool = False) -> str:
    """A value from the terminal (hidden when secret), or a line of standard input when there is no terminal."""
    import getpass

    if sys.stdin.isatty():
        return getpass.getpass(prompt) if secret else input(prompt)
    line = sys.stdin.readline()
    if not line:
        raise GovctlError(f"no input for {prompt.strip(': ')}", hint="run it in a terminal, or pipe the values in, one per line")
    return line.strip()


user_app = typer.Typer(help="Users and their roles.", no_args_is_help=True)
token_app = typer.Typer(help="API tokens (stored only as SM3 hashes).", no_args_is_help=True)
role_app = typer.Typer(help="Roles of users (critical: two approvers).", no_args_is_help=True)
iam_app.add_typer(user_app, name="user")
iam_app.add_typer(token_app, name="token")
iam_app.add_typer(role_app, name="role")


@user_app.command("add")
@changes("iam.user.create")
def user_add(name: str, role: list[str] = typer.Option(..., "--role", help="Repeat for several roles."),
             department: str = typer.Option("", help="The department of a department administrator."), as_json: bool = JsonOpt) -> None:  # fmt: skip
    """Create a user who enrols with a one-time code (security administrators only; high risk)."""
    view = gated("iam.user.create", name, {"roles": sorted(role), "department": department})
    if as_json:
        emit_json({**view.as_dict(), **({"enrolment_code": view.secret} if view.secret else {})})
    elif not pending_note(view):
        out.print(f"user {name}: {', '.join(view.result['user']['roles'])}; enrolment code (for {name} only, once, 72 h):\n{view.secret}", highlight=False)


@role_app.command("set")
@changes("iam.role.change")
def role_set(name: str, role: list[str] = typer.Option(..., "--role", help="The user's roles from now on; repeat for several."), as_json: bool = JsonOpt) -> None:
    """Replace a user's roles (critical: two approvers)."""
    view = gated("iam.role.change", name, {"roles": sorted(role)})
    emit_json(view.as_dict()) if as_json else (pending_note(view) or out.print(f"user {name}: {', '.join(view.result['roles'])}"))


@user_app.command("disable")
@changes("iam.user.change")
def user_disable(name: str, as_json: bool = JsonOpt) -> None:
    """Disable a user (their tokens stop working)."""
    view = gated("iam.user.change", name, {"disabled": True})
    emit_json(view.as_dict()) if as_json else (pending_note(view) or out.print(f"user {name}: disabled"))


@user_app.command("list")
@reads("iam.read")
def user_list(as_json: bool = JsonOpt) -> None:
    """Users with their roles."""
    from control_plane.gate import iam

    principal()
    rows = iam.list_users(context())
    if as_json:
        emit_json(rows)
        return
    t = Table("user", "roles", "disabled", "created")
    for r in rows:
        t.add_row(r["name"], ", ".join(r["roles"]), "yes" if r["disabled"] else "no", r["created"][:19])
    out.print(t)


@token_app.command("create")
@changes("iam.token.create")
def token_create(ttl_days: int = typer.Option(30, min=1, max=366), description: str = "", as_json: bool = JsonOpt) -> None:
    """Issue yourself another API token; the secret is printed once and stored only as its SM3 hash."""
    p = principal()
    view = gated("iam.token.create", p.name, {"ttl_days": ttl_days, "description": description})
    if as_json:
        emit_json({**view.result, "token": view.secret})
    elif not pending_note(view):
        out.print(f"token {view.result['token_id']} for {view.result['user']}, expires {view.result['expires'][:10]}:\n{view.secret}", highlight=False)


@token_app.command("revoke")
@changes("iam.token.revoke")
def token_revoke(token_id: str, user: Optional[str] = typer.Option(None, help="Whose token (default: yours)."), as_json: bool = JsonOpt) -> None:
    """Revoke a token at once."""
    p = principal()
    view = gated("iam.token.revoke", user or p.name, {"token_id": token_id})
    emit_json(view.result) if as_json else out.print(f"revoked {token_id}")


@token_app.command("list")
@reads("tokens.read")
def token_list(user: Optional[str] = None, as_json: bool = JsonOpt) -> None:
    """Tokens with expiry and revocation (never the secrets)."""
    from control_plane.gate import iam

    principal()
    rows = iam.list_tokens(context(), user)
    if as_json:
        emit_json(rows)
        return
    t = Table("id", "user", "created", "expires", "revoked", "description")
    for r in rows:
        t.add_row(r["id"], r["user"], r["created"][:19], r["expires"][:19], (r["revoked"] or "-")[:19], r["description"])
    out.print(t)


APPS = (("ops", ops_app), ("iam", iam_app),)
