"""``govctl``: the command line of the control plane.

Every command prints a table or text for people and has ``--json`` for tools. Errors print one
line (what was wrong and what to do); ``--debug`` adds the traceback.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Any, Optional

import click
import typer
import yaml
from rich.console import Console
from rich.table import Table

from control_plane import __version__
from control_plane.config import effective, load
from control_plane.errors import GovctlError
from control_plane.runtime import Runtime, set_current

app = typer.Typer(help="Operations control plane of the city government cloud.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False)  # fmt: skip
services_app = typer.Typer(help="The local services: Elasticsearch, Prometheus, node_exporter, PostgreSQL.", no_args_is_help=True)
config_app = typer.Typer(help="The effective configuration.", no_args_is_help=True)
jobs_app = typer.Typer(help="Scheduled jobs.", no_args_is_help=True)
audit_app = typer.Typer(help="The tamper-evident audit ledger.", no_args_is_help=True)
keys_app = typer.Typer(help="The platform's national-crypto keys.", no_args_is_help=True)
app.add_typer(services_app, name="services")
app.add_typer(config_app, name="config")
app.add_typer(jobs_app, name="jobs")
app.add_typer(audit_app, name="audit")
app.add_typer(keys_app, name="keys")

out = Console()
err = Console(stderr=True)
_state: dict[str, Any] = {"debug": False, "config": None}

JsonOpt = typer.Option(False, "--json", help="Print machine-readable JSON.")


def _rt() -> Runtime:
    rt = _state.get("rt")
    if rt is None:
        rt = _state["rt"] = set_current(Runtime(load(_state["config"])))
    return rt


def _read_token(path: Path) -> str:
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


def _principal() -> Any:
    import pwd

    # the peer is who the kernel says runs this process, never $USER or $LOGNAME
    return _rt().gate.authenticate(_state.get("token"), source="local", local_user=pwd.getpwuid(os.geteuid()).pw_name)


def _gated(operation: str, target: str = "", params: dict | None = None, *, reason: str = "", break_glass: bool = False) -> Any:
    """Submit a change through the operation gate; returns the operation view (run, or awaiting approval)."""
    from control_plane.gate import OperationRequest

    rt = _rt()
    return rt.gate.submit(_principal(), OperationRequest(operation, target, params or {}, reason, break_glass))


def _pending_note(view: Any) -> bool:
    """Tell the user an operation awaits approval; True if it does."""
    if view.status != "pending_approval":
        return False
    err.print(f"[yellow]{view.id}[/yellow]: {view.operation} on {view.target!r} is {view.risk} risk and awaits "
              f"{view.approvals_needed} approval(s): `govctl ops approve {view.id}` (by an approver), then `govctl ops run {view.id}`")
    return True


def _emit_json(data: Any) -> None:
    out.print_json(json.dumps(data, default=str, ensure_ascii=False))


@app.callback()
def _main(
    config: Optional[Path] = typer.Option(None, "--config", "-c", envvar="GOVCTL_CONFIG", help="Path of govctl.yaml."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks on errors."),
    token: Optional[str] = typer.Option(None, "--token", hidden=True, help="Refused: a token on the command line is readable by every local user."),
    token_file: Optional[Path] = typer.Option(None, "--token-file", help="A file (mode 0600, yours) holding your API token; or set GOVCTL_TOKEN."),
) -> None:
    """Global options."""
    _state["config"] = str(config) if config else None
    if token is not None:
        err.print("error: --token VALUE is refused: every local user can read a command line in /proc "
                  "(put the token in GOVCTL_TOKEN, or in a 0600 file given with --token-file)")
        raise typer.Exit(2)
    _state["token"] = _read_token(token_file) if token_file else (os.environ.get("GOVCTL_TOKEN") or None)
    _state["debug"] = debug
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


@app.command()
def version() -> None:
    """Print the version."""
    out.print(__version__)


# -- services --------------------------------------------------------------------------------------


def _status_table(rows: list[Any]) -> Table:
    t = Table("service", "address", "pid", "health", "log")
    colours = {"healthy": "green", "stopped": "dim", "disabled": "dim"}
    for s in rows:
        c = colours.get(s.health, "red")
        t.add_row(s.name, s.address, str(s.pid or "-"), f"[{c}]{s.health}[/{c}]" + (f" ({s.detail})" if s.detail else ""), s.log)
    return t


@services_app.command("up")
def services_up(names: Optional[list[str]] = typer.Argument(None, help="Services to start (default: all enabled)."), as_json: bool = JsonOpt) -> None:
    """Start the services (idempotent) and wait until each is ready."""
    with err.status("starting services…", spinner="dots") if not as_json else _null():
        view = _gated("services.up", ",".join(names or []) or "all")
    rows = view.result["status"]
    if as_json:
        _emit_json(rows)
        return
    if view.result["started"]:
        err.print(f"started: {', '.join(view.result['started'])}")
    t = Table("service", "address", "pid", "health", "log")
    for r in rows:
        t.add_row(r["name"], r["address"], str(r["pid"] or "-"), r["health"], r["log"])
    out.print(t)


@services_app.command("down")
def services_down(names: Optional[list[str]] = typer.Argument(None, help="Services to stop (default: all we started)."),
                  reason: str = typer.Option("", help="Why (recorded with the request)."), as_json: bool = JsonOpt) -> None:  # fmt: skip
    """Stop the services govctl started (never anything else). High risk: needs an approval."""
    view = _gated("services.down", ",".join(names or []) or "all", reason=reason)
    if as_json:
        _emit_json(view.as_dict())
    elif not _pending_note(view):
        stopped = view.result["stopped"]
        out.print(f"stopped: {', '.join(stopped) if stopped else 'nothing was running'}")


@services_app.command("status")
def services_status(as_json: bool = JsonOpt) -> None:
    """Each service's address, pid and health; exit 1 if an enabled service is not healthy."""
    rows = _rt().supervisor.status()
    if as_json:
        _emit_json([r.as_dict() for r in rows])
    else:
        out.print(_status_table(rows))
    if any(r.health not in ("healthy", "disabled") for r in rows):
        raise typer.Exit(1)


# -- config -----------------------------------------------------------------------------------------


@config_app.command("show")
def config_show(as_json: bool = JsonOpt) -> None:
    """Print the effective configuration (secrets as ****)."""
    s = load(_state["config"])
    data = effective(s)
    if as_json:
        _emit_json({"source": s.source, "config": data})
    else:
        out.print(f"# source: {s.source}", highlight=False)
        out.print(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), highlight=False, end="")


# -- jobs -------------------------------------------------------------------------------------------


@jobs_app.command("list")
def jobs_list(as_json: bool = JsonOpt) -> None:
    """Jobs with cadence, next run (Asia/Shanghai by default), pause state and last outcome."""
    from control_plane.scheduler import list_jobs
    from control_plane.scheduler.leader import LeaderLock

    rt = _rt()
    rows = list_jobs(rt)
    holder = LeaderLock(rt.engine, rt.settings.var / "run" / "scheduler.leader").holder()
    if as_json:
        _emit_json({"leader": holder, "jobs": rows})
        return
    t = Table("id", "cadence", "next run", "paused", "last run", "last status")
    for r in rows:
        t.add_row(r["id"], r["cadence"], r["next_run"] or "-", "yes" if r["paused"] else "no",
                  r["last_run"] or "-", r["last_status"] or "-")  # fmt: skip
    out.print(t)
    out.print(f"leader: {'pid ' + str(holder.get('pid')) + ' on ' + str(holder.get('host')) if holder else 'none running (start one with `govctl up`)'}")


@jobs_app.command("run")
def jobs_run(job_id: str, as_json: bool = JsonOpt) -> None:
    """Run a job now, in this process, with its own run key."""
    from control_plane.scheduler.registry import get

    get(job_id)
    view = _gated("jobs.run", job_id)
    if as_json:
        _emit_json(view.result if view.result is not None else view.as_dict())
    elif not _pending_note(view):
        r = view.result
        out.print(f"{r['job_id']}: {r['status']} in {r['seconds']}s — {r['detail']}")


@jobs_app.command("pause")
def jobs_pause(job_id: str, reason: str = typer.Option("", help="Why (recorded)."), as_json: bool = JsonOpt) -> None:
    """Pause a job (kept across restarts). High risk: needs an approval."""
    _pause(job_id, True, as_json, reason)


@jobs_app.command("resume")
def jobs_resume(job_id: str, as_json: bool = JsonOpt) -> None:
    """Resume a paused job."""
    _pause(job_id, False, as_json, "")


def _pause(job_id: str, paused: bool, as_json: bool, reason: str) -> None:
    from control_plane.scheduler.registry import get

    get(job_id)
    view = _gated("jobs.pause" if paused else "jobs.resume", job_id, reason=reason)
    if as_json:
        _emit_json(view.as_dict())
    elif not _pending_note(view):
        res = view.result
        out.print(f"{job_id}: {'paused' if res['paused'] else 'resumed, next run ' + str(res['next_run'])}")


@jobs_app.command("runs")
def jobs_runs(job_id: Optional[str] = typer.Argument(None), limit: int = 20, as_json: bool = JsonOpt) -> None:
    """The newest job runs and their outcome."""
    from control_plane.scheduler import recent_runs

    rows = recent_runs(_rt(), job_id, limit)
    if as_json:
        _emit_json(rows)
        return
    t = Table("run key", "trigger", "started", "finished", "status", "detail")
    for r in rows:
        t.add_row(r["run_key"], r["trigger"], r["started"], r["finished"] or "-", r["status"], (r["detail"] or "")[:80])
    out.print(t)


# -- audit ------------------------------------------------------------------------------------------


@audit_app.command("verify")
def audit_verify(pin: Optional[str] = typer.Option(None, "--pin", help="The platform key id you hold (from first start or a monthly report)."),
                 as_json: bool = JsonOpt) -> None:  # fmt: skip
    """Prove the whole chain and every checkpoint against the pinned key; exit 1 and name the first bad record if not."""
    rt = _rt()
    rep = rt.ledger.verify(pin=pin or rt.settings.audit.pinned_key_id)
    if as_json:
        _emit_json(rep.as_dict())
    elif rep.ok:
        out.print(f"[green]ok[/green]: {rep.records} records, {rep.checkpoints} checkpoints ({rep.anchors} anchored), head {rep.head_seq} {rep.head_hash[:16]}…, {rep.seconds}s")
        out.print(f"keys: {' → '.join(rep.keys)} ({'pinned' if rep.pinned else 'NOT pinned: pass --pin'})")
        ext = rep.external_anchor
        out.print(f"newest external anchor: {ext['id']} at record {ext['seq']}; {rep.records_after_external_anchor} records after it are vouched for by this host only"
                  if ext else f"no external anchor yet: all {rep.records_after_external_anchor} records are vouched for by this host only")
    else:
        err.print(f"[red]BROKEN[/red] at record {rep.first_bad}: {rep.problem}")
    for n in rep.notes if not as_json else []:
        err.print(f"note: {n}")
    if not rep.ok:
        raise typer.Exit(1)


def _when(value: str | None) -> str | None:
    """Accept ISO dates/times (read as Asia/Shanghai when naive) or relative ages like 30m, 2h, 7d."""
    if value is None:
        return None
    from datetime import datetime, timedelta, timezone
    from zoneinfo import ZoneInfo

    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if value[:-1].isdigit() and value[-1] in units:
        t = datetime.now(timezone.utc) - timedelta(seconds=int(value[:-1]) * units[value[-1]])
    else:
        try:
            t = datetime.fromisoformat(value)
        except ValueError:
            raise GovctlError(f"cannot read time {value!r}", hint="use ISO 8601 (2026-11-25T08:00) or an age like 30m, 2h, 7d") from None
        if t.tzinfo is None:
            t = t.replace(tzinfo=ZoneInfo(_rt().settings.scheduler.timezone))
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@audit_app.command("show")
def audit_show(
    actor: Optional[str] = typer.Option(None, help="Only this actor."),
    operation: Optional[str] = typer.Option(None, help="Only this operation; 'deploy.*' matches a prefix."),
    target: Optional[str] = typer.Option(None, help="Only this target."),
    since: Optional[str] = typer.Option(None, help="From this time (ISO, or an age: 30m, 2h, 7d)."),
    until: Optional[str] = typer.Option(None, help="Before this time."),
    limit: int = typer.Option(50, min=1, max=10000),
    as_json: bool = JsonOpt,
) -> None:
    """Audit records, newest first, filtered by actor, operation, target and time."""
    recs = _rt().ledger.query(actor=actor, operation=operation, target=target, since=_when(since), until=_when(until), limit=limit)
    if as_json:
        _emit_json([r.as_dict() for r in recs])
        return
    t = Table("seq", "time (UTC)", "actor", "role", "source", "operation", "target", "decision", "outcome")
    for r in recs:
        t.add_row(str(r.seq), r.ts[:19], r.actor, r.role, r.source, r.operation, r.target, r.decision, r.outcome)
    out.print(t)


@audit_app.command("checkpoint")
def audit_checkpoint(as_json: bool = JsonOpt) -> None:
    """Sign a checkpoint over the chain head now."""
    view = _gated("audit.checkpoint", "audit")
    seq = view.result["checkpoint"]
    if as_json:
        _emit_json(view.result)
    else:
        out.print(f"signed checkpoint at record {seq}" if seq else "the head is already covered by a checkpoint")


# -- keys -------------------------------------------------------------------------------------------


@keys_app.command("rotate")
def keys_rotate(reason: str = typer.Option(..., "--reason", help="Why the key changes (critical: two approvers)."), as_json: bool = JsonOpt) -> None:
    """Replace the platform SM2 key: the old key signs the hand-over into the ledger, then the new key signs from there on."""
    view = _gated("keys.rotate", "platform", {}, reason=reason)
    _emit_json(view.as_dict()) if as_json else (_pending_note(view) or out.print(f"platform key {view.result['old_key_id']} → {view.result['new_key_id']}"))


@keys_app.command("show")
def keys_show(as_json: bool = JsonOpt) -> None:
    """The platform SM2 public key (PEM) and its key id."""
    pub = _rt().signer.public_key
    if as_json:
        _emit_json({"key_id": pub.key_id, "public_key_hex": pub.to_hex(), "pem": pub.to_pem()})
    else:
        out.print(f"key id: {pub.key_id}\n{pub.to_pem()}", highlight=False, end="")


# -- ops: the operation gate ---------------------------------------------------------------------------

ops_app = typer.Typer(help="Operations awaiting, given or refused approval (the operation gate).", no_args_is_help=True)
iam_app = typer.Typer(help="Users, roles and API tokens.", no_args_is_help=True)
app.add_typer(ops_app, name="ops")
app.add_typer(iam_app, name="iam")


def _op_table(views: list[Any]) -> Table:
    t = Table("id", "operation", "target", "requester", "risk", "status", "approvals", "created (UTC)")
    for v in views:
        got = sum(1 for a in v.approvals if a["decision"] == "approve")
        t.add_row(v.id, v.operation, v.target, v.requester, v.risk, v.status, f"{got}/{v.approvals_needed}", v.created[:19])
    return t


@ops_app.command("list")
def ops_list(status: Optional[str] = typer.Option(None, help="pending_approval, approved, succeeded, failed, rejected, cancelled, expired"),
             limit: int = 50, as_json: bool = JsonOpt) -> None:  # fmt: skip
    """Operations, newest first."""
    _principal()
    views = _rt().gate.list(status=status, limit=limit)
    if as_json:
        _emit_json([v.as_dict() for v in views])
    else:
        out.print(_op_table(views))


@ops_app.command("show")
def ops_show(op_id: str, as_json: bool = JsonOpt) -> None:
    """The full request, its risk, the SOC findings, the preview and the approvals so far."""
    _principal()
    v = _rt().gate.get(op_id)
    if as_json:
        _emit_json(v.as_dict())
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
def ops_approve(op_id: str, comment: str = typer.Option("", help="Recorded with the approval."),
                otp: Optional[str] = typer.Option(None, "--otp", envvar="GOVCTL_OTP", help="The current code from your authenticator."),
                as_json: bool = JsonOpt) -> None:  # fmt: skip
    """Approve an operation as shown by `ops show` (approvers only, never your own)."""
    v = _rt().gate.approve(_principal(), op_id, comment, otp=otp)
    _emit_json(v.as_dict()) if as_json else out.print(f"{op_id}: {v.status}")


OtpOpt = typer.Option(None, "--otp", envvar="GOVCTL_OTP", help="The current code from your authenticator (asked for if you enrolled TOTP and leave it out).")


@ops_app.command("reject")
def ops_reject(op_id: str, comment: str = typer.Option("", help="Why."), otp: Optional[str] = OtpOpt, as_json: bool = JsonOpt) -> None:
    """Reject an operation."""
    v = _rt().gate.approve(_principal(), op_id, comment, decision="reject", otp=otp)
    _emit_json(v.as_dict()) if as_json else out.print(f"{op_id}: {v.status}")


@ops_app.command("cancel")
def ops_cancel(op_id: str, as_json: bool = JsonOpt) -> None:
    """Withdraw your pending or approved operation."""
    v = _rt().gate.cancel(_principal(), op_id)
    _emit_json(v.as_dict()) if as_json else out.print(f"{op_id}: {v.status}")


@ops_app.command("run")
def ops_run(op_id: str, as_json: bool = JsonOpt) -> None:
    """Run your approved operation (once)."""
    v = _rt().gate.run(_principal(), op_id)
    if as_json:
        _emit_json(v.as_dict())
    else:
        out.print(f"{op_id}: {v.status}")
        if v.secret:
            out.print(f"token (shown once): {v.secret}", highlight=False)


@ops_app.command("reviews")
def ops_reviews(as_json: bool = JsonOpt) -> None:
    """Open after-the-fact reviews of break-glass operations."""
    from control_plane.gate.service import open_reviews

    _principal()
    rows = open_reviews(_rt())
    if as_json:
        _emit_json(rows)
        return
    t = Table("operation", "opened", "alert sent")
    for r in rows:
        t.add_row(r["op_id"], r["opened"], "yes" if r["alert_sent"] else "not yet")
    out.print(t)


@ops_app.command("review-close")
def ops_review_close(op_id: str, verdict: str = typer.Option(..., help="The reviewer's finding."), as_json: bool = JsonOpt) -> None:
    """Close a break-glass review with a verdict (a security administrator other than the one who broke the glass)."""
    v = _rt().gate.submit(_principal(), _req("gate.review.close", op_id, {"verdict": verdict}))
    _emit_json(v.as_dict()) if as_json else out.print(f"review of {op_id}: closed")


def _req(operation: str, target: str, params: dict) -> Any:
    from control_plane.gate import OperationRequest

    return OperationRequest(operation, target, params)


@iam_app.command("bootstrap")
def iam_bootstrap(as_json: bool = JsonOpt) -> None:
    """First run only: create one user per role (two approvers), each with a one-time enrolment code.

    Hand each code to its person only: they enrol themselves (`govctl iam enrol NAME`), choosing
    their own second factor and receiving their own token; no token is printed here.
    """
    from control_plane.audit import AuditEvent
    from control_plane.gate import iam

    rt = _rt()
    p = _principal()
    if "sysadmin" not in p.roles or p.via != "peer":
        raise GovctlError("bootstrap is for the host's administrator at the console", hint="run it as root on the control-plane host")
    if iam.list_users(rt):
        raise GovctlError("users already exist; bootstrap runs only once", hint="govctl iam user add NAME --role ROLE (a security administrator)")
    made = {}
    for name, roles in (("sysadmin", ["sysadmin"]), ("secadmin", ["secadmin"]), ("auditor", ["auditor"]),
                        ("ops", ["ops_engineer"]), ("approver1", ["approver"]), ("approver2", ["approver"])):  # fmt: skip
        _user, code = iam.create_user(rt, name, roles=roles)
        made[name] = {"roles": roles, "enrolment_code": code}
    rt.ledger.append(AuditEvent(actor=p.name, role=",".join(p.roles), source=p.source, operation="iam.bootstrap", target="users",
                                params={n: m["roles"] for n, m in made.items()}, details={"users": sorted(made)}))  # fmt: skip
    if as_json:
        _emit_json(made)
        return
    t = Table("user", "roles", "enrolment code (for that person only; works once, 72 h)")
    for n, m in made.items():
        t.add_row(n, ", ".join(m["roles"]), m["enrolment_code"])
    out.print(t)
    out.print("each person runs: govctl iam enrol NAME   (asks for the code, sets up TOTP, prints their own token)")


@iam_app.command("enrol")
def iam_enrol(name: str, ttl_days: int = typer.Option(30, min=1, max=366, help="Lifetime of the first token."), as_json: bool = JsonOpt) -> None:
    """Enrol yourself with the one-time code you were given: set up TOTP and receive your own token.

    The code and the one-time password are read from the terminal (or standard input), never
    from the command line.
    """
    from control_plane.audit import AuditEvent
    from control_plane.gate import iam

    rt = _rt()
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
        rt.ledger.append(AuditEvent(actor="anonymous", role="", source="local", operation="gate.authenticate", target=name, decision="deny",
                                    outcome="refused", details={"error": exc.message, "as": "iam.enrol"}))  # fmt: skip
        raise
    rt.ledger.append(AuditEvent(actor=name, role="", source="local", operation="iam.enrol", target=name, outcome="succeeded",
                                details={"token_id": token_id}))  # fmt: skip
    if as_json:
        _emit_json({"user": name, "token_id": token_id, "token": secret, "expires": expires, "totp_uri": uri})
        return
    out.print(f"enrolled {name}; your token {token_id} (shown once, expires {expires[:10]}):\n{secret}", highlight=False)
    out.print("keep it in a 0600 file for --token-file, or in GOVCTL_TOKEN")


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
def user_add(name: str, role: list[str] = typer.Option(..., "--role", help="Repeat for several roles."),
             department: str = typer.Option("", help="The department of a department administrator."), as_json: bool = JsonOpt) -> None:  # fmt: skip
    """Create a user who enrols with a one-time code (security administrators only; high risk)."""
    view = _gated("iam.user.create", name, {"roles": sorted(role), "department": department})
    if as_json:
        _emit_json({**view.as_dict(), **({"enrolment_code": view.secret} if view.secret else {})})
    elif not _pending_note(view):
        out.print(f"user {name}: {', '.join(view.result['user']['roles'])}; enrolment code (for {name} only, once, 72 h):\n{view.secret}", highlight=False)


@role_app.command("set")
def role_set(name: str, role: list[str] = typer.Option(..., "--role", help="The user's roles from now on; repeat for several."), as_json: bool = JsonOpt) -> None:
    """Replace a user's roles (critical: two approvers)."""
    view = _gated("iam.role.change", name, {"roles": sorted(role)})
    _emit_json(view.as_dict()) if as_json else (_pending_note(view) or out.print(f"user {name}: {', '.join(view.result['roles'])}"))


@user_app.command("disable")
def user_disable(name: str, as_json: bool = JsonOpt) -> None:
    """Disable a user (their tokens stop working)."""
    view = _gated("iam.user.change", name, {"disabled": True})
    _emit_json(view.as_dict()) if as_json else (_pending_note(view) or out.print(f"user {name}: disabled"))


@user_app.command("list")
def user_list(as_json: bool = JsonOpt) -> None:
    """Users with their roles."""
    from control_plane.gate import iam

    _principal()
    rows = iam.list_users(_rt())
    if as_json:
        _emit_json(rows)
        return
    t = Table("user", "roles", "disabled", "created")
    for r in rows:
        t.add_row(r["name"], ", ".join(r["roles"]), "yes" if r["disabled"] else "no", r["created"][:19])
    out.print(t)


@token_app.command("create")
def token_create(ttl_days: int = typer.Option(30, min=1, max=366), description: str = "", as_json: bool = JsonOpt) -> None:
    """Issue yourself another API token; the secret is printed once and stored only as its SM3 hash."""
    p = _principal()
    view = _gated("iam.token.create", p.name, {"ttl_days": ttl_days, "description": description})
    if as_json:
        _emit_json({**view.result, "token": view.secret})
    elif not _pending_note(view):
        out.print(f"token {view.result['token_id']} for {view.result['user']}, expires {view.result['expires'][:10]}:\n{view.secret}", highlight=False)


@token_app.command("revoke")
def token_revoke(token_id: str, user: Optional[str] = typer.Option(None, help="Whose token (default: yours)."), as_json: bool = JsonOpt) -> None:
    """Revoke a token at once."""
    p = _principal()
    view = _gated("iam.token.revoke", user or p.name, {"token_id": token_id})
    _emit_json(view.result) if as_json else out.print(f"revoked {token_id}")


@token_app.command("list")
def token_list(user: Optional[str] = None, as_json: bool = JsonOpt) -> None:
    """Tokens with expiry and revocation (never the secrets)."""
    from control_plane.gate import iam

    _principal()
    rows = iam.list_tokens(_rt(), user)
    if as_json:
        _emit_json(rows)
        return
    t = Table("id", "user", "created", "expires", "revoked", "description")
    for r in rows:
        t.add_row(r["id"], r["user"], r["created"][:19], r["expires"][:19], (r["revoked"] or "-")[:19], r["description"])
    out.print(t)


# -- deploy -------------------------------------------------------------------------------------------

deploy_app = typer.Typer(help="Provision the primary and backup pools (Pulumi, through the gate).", no_args_is_help=True)
app.add_typer(deploy_app, name="deploy")
StackOpt = typer.Option("local", "--stack", "-s", help="A stack from deploy.stacks in govctl.yaml.")


def _deploy(operation: str, stack: str, reason: str, as_json: bool, break_glass: bool = False) -> None:
    rt = _rt()
    if not as_json:
        rt.deploy_progress = lambda op, name, outcome: err.print(f"  {'[green]✓' if outcome == 'succeeded' else '[red]✗'}[/] {op:8} {name}")
    view = _gated(operation, stack, reason=reason, break_glass=break_glass)
    if as_json:
        _emit_json(view.as_dict())
        return
    if _pending_note(view):
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
def deploy_preview(stack: str = StackOpt, as_json: bool = JsonOpt) -> None:
    """What `up` would change (low risk: runs at once)."""
    _deploy("deploy.preview", stack, "", as_json)


@deploy_app.command("up")
def deploy_up(stack: str = StackOpt, reason: str = typer.Option("", help="Why (shown to approvers)."),
              break_glass: bool = typer.Option(False, "--break-glass", help="Emergency: skip approval, alert, open a review."),
              as_json: bool = JsonOpt) -> None:  # fmt: skip
    """Create or update the pools. High risk: an approver sees the preview diff, then you run it."""
    _deploy("deploy.up", stack, reason, as_json, break_glass)


@deploy_app.command("destroy")
def deploy_destroy(stack: str = StackOpt, reason: str = typer.Option("", help="Why (shown to approvers)."), as_json: bool = JsonOpt) -> None:
    """Delete the pools. Critical: two distinct approvers."""
    _deploy("deploy.destroy", stack, reason, as_json)


@deploy_app.command("outputs")
def deploy_outputs(stack: str = StackOpt, as_json: bool = JsonOpt) -> None:
    """The stack's hosts, buckets and zones."""
    from control_plane.deploy.service import outputs

    _principal()
    res = outputs(_rt(), stack)
    if as_json:
        _emit_json(res)
    else:
        for k, v in res.items():
            out.print(f"{k}: {v}")


# -- playbooks ----------------------------------------------------------------------------------------

playbook_app = typer.Typer(help="Ansible playbooks on the pools' hosts (through the gate).", no_args_is_help=True)
app.add_typer(playbook_app, name="playbook")


@playbook_app.command("list")
def playbook_list(as_json: bool = JsonOpt) -> None:
    """Playbooks and what each does."""
    from control_plane.playbook.service import available

    rows = available()
    if as_json:
        _emit_json(rows)
        return
    t = Table("playbook", "what it does")
    for k, v in rows.items():
        t.add_row(k, v)
    out.print(t)


@playbook_app.command("run")
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
    view = _gated("playbook.run", limit, {"playbook": name, "check": check, "extravars": extravars}, reason=reason, break_glass=break_glass)
    if as_json:
        _emit_json(view.as_dict())
    elif not _pending_note(view):
        r = view.result
        out.print(f"{name} on {limit}: {r['status']} (rc {r['rc']}){' [check mode]' if check else ''}; changed: {r['changed'] or 'nothing'}")
        out.print(f"artifacts: {r['artifacts']}")


# -- soc ----------------------------------------------------------------------------------------------

soc_app = typer.Typer(help="The SOC engine: detection rules and event ingestion.", no_args_is_help=True)
rules_app = typer.Typer(help="Detection rules (Sigma YAML plus severity, action, mode, response).", no_args_is_help=True)
app.add_typer(soc_app, name="soc")
soc_app.add_typer(rules_app, name="rules")


def _rules_dir(path: Optional[Path]) -> Optional[Path]:
    if path:
        return path
    d = _rt().settings.soc.rules_dir
    return _rt().settings.path(d) if d else None


@rules_app.command("validate")
def rules_validate(path: Optional[Path] = typer.Option(None, "--path", help="A rules directory (default: soc.rules_dir)."), as_json: bool = JsonOpt) -> None:
    """Load every rule; list each refused file with line, field and reason; exit 1 if any."""
    from control_plane.soc.rules import load_rules

    rs = load_rules(_rules_dir(path))
    if as_json:
        _emit_json({"loaded": len(rs.rules), "correlations": len(rs.correlations), "issues": [str(i) for i in rs.issues]})
    else:
        out.print(f"{len(rs.rules)} rules and {len(rs.correlations)} correlations loaded")
        for i in rs.issues:
            err.print(f"[red]refused[/red] {i}", highlight=False)
    if rs.issues:
        raise typer.Exit(1)


@rules_app.command("list")
def rules_list(path: Optional[Path] = typer.Option(None, "--path"), as_json: bool = JsonOpt) -> None:
    """Rules with severity, action, mode and response."""
    from control_plane.soc.rules import load_rules

    rs = load_rules(_rules_dir(path))
    feed_only = rs.correlation_only
    rows = [{"id": r.id, "name": r.path.stem, "title": r.title, "severity": r.ours.severity, "action": r.ours.action,
             "mode": r.ours.mode, "response": r.ours.response, "tags": r.tags,
             "kind": "feeds correlations" if r.id in feed_only else "single event"} for r in rs.rules]  # fmt: skip
    rows += [{"id": c.id, "name": c.path.stem, "title": c.title, "severity": c.ours.severity, "action": c.ours.action,
              "mode": c.ours.mode, "response": c.ours.response, "tags": c.tags,
              "kind": f"{c.type} over {', '.join(r.path.stem for r in c.rules)} by {', '.join(c.group_by)} in {c.timespan_s}s"}
             for c in rs.correlations]  # fmt: skip
    if as_json:
        _emit_json(rows)
        return
    t = Table("rule", "severity", "action", "mode", "response", "kind", "title")
    for r in rows:
        t.add_row(r["name"], r["severity"], r["action"], r["mode"], r["response"] or "-", r["kind"], r["title"])
    out.print(t)


@rules_app.command("test")
def rules_test(path: Optional[Path] = typer.Option(None, "--path"), as_json: bool = JsonOpt) -> None:
    """Run every rule over its test events in process (the Elasticsearch check runs in CI); exit 1 on a miss."""
    import yaml as _yaml

    from control_plane.soc.matcher import evaluate
    from control_plane.soc.rules import load_rules

    rs = load_rules(_rules_dir(path))
    results, failed = [], 0
    for r in rs.rules:
        tf = r.path.parent / "tests" / f"{r.path.stem}.yml"
        if not tf.exists():
            results.append({"rule": r.path.stem, "ok": False, "why": f"no test file {tf}"})
            failed += 1
            continue
        case = _yaml.safe_load(tf.read_text())
        bad = [f"missed match #{i}" for i, e in enumerate(case.get("match", [])) if not evaluate(r.condition, e)]
        bad += [f"matched nomatch #{i}" for i, e in enumerate(case.get("nomatch", [])) if evaluate(r.condition, e)]
        failed += bool(bad)
        results.append({"rule": r.path.stem, "ok": not bad, "why": "; ".join(bad)})
    if as_json:
        _emit_json(results)
    else:
        for x in results:
            out.print(f"{'[green]ok[/green]  ' if x['ok'] else '[red]FAIL[/red]'} {x['rule']} {x['why']}")
        out.print(f"{len(results) - failed} passed, {failed} failed")
    if failed or rs.issues:
        raise typer.Exit(1)


alerts_app = typer.Typer(help="Alerts: list, show, acknowledge, assign, note, close with a verdict.", no_args_is_help=True)
soc_app.add_typer(alerts_app, name="alerts")


@alerts_app.command("list")
def alerts_list(status: Optional[str] = typer.Option(None, help="open, acknowledged or closed"), severity: Optional[str] = None,
                rule: Optional[str] = None, assignee: Optional[str] = None,
                since: Optional[str] = typer.Option(None, help="ISO time or an age: 30m, 2h, 7d"), limit: int = 50,
                as_json: bool = JsonOpt) -> None:  # fmt: skip
    """Alerts, newest first."""
    from control_plane.soc import alerts

    _principal()
    rows = alerts.search(_rt().es, status=status, severity=severity, rule=rule, assignee=assignee, since=_when(since), limit=limit)
    if as_json:
        _emit_json(rows)
        return
    t = Table("id", "severity", "status", "rule", "count", "last seen (UTC)", "assignee", "group")
    for a in rows:
        t.add_row(a["id"], a["severity"], a["status"] + (" (shadow)" if a.get("shadow") else ""), a["rule"]["name"], str(a["count"]),
                  str(a["last_seen"])[:19], a.get("assignee") or "-", a["group_key"])  # fmt: skip
    out.print(t)


@alerts_app.command("show")
def alerts_show(alert_id: str, as_json: bool = JsonOpt) -> None:
    """One alert: the rule, the matched events (a snapshot), notes and history."""
    from control_plane.soc import alerts

    _principal()
    a = alerts.get(_rt().es, alert_id)
    if as_json:
        _emit_json(a)
        return
    out.print(f"[bold]{a['id']}[/bold] {a['severity']} {a['status']} — {a['rule']['title']} ({a['rule']['name']})")
    out.print(f"group {a['group_key']}; {a['count']} event(s) from {a['first_seen']} to {a['last_seen']}; assignee {a.get('assignee') or '-'}")
    for ev in a.get("events", []):
        out.print(f"  {ev.get('@timestamp')} {ev.get('host', {}).get('name', '')} {ev.get('message') or ev.get('process', {}).get('command_line', '')}", highlight=False)
    for n in a.get("notes", []):
        out.print(f"  note by {n['author']} at {n['ts']}: {n['text']}")
    for h in a.get("history", []):
        out.print(f"  {h['ts']} {h['actor']}: {h['action']}" + (f" {h.get('from')} → {h.get('to')}" if h.get("from") else ""))


def _alert_action(alert_id: str, action: str, as_json: bool, **params: Any) -> None:
    view = _gated("soc.alert.update", alert_id, {"action": action, **{k: v for k, v in params.items() if v is not None}})
    if as_json:
        _emit_json(view.result if view.result is not None else view.as_dict())
    elif not _pending_note(view):
        r = view.result
        out.print(f"{alert_id}: {r['status']}" + (f", verdict {r['verdict']}" if r.get("verdict") else "") + (f", assignee {r['assignee']}" if r.get("assignee") else ""))


@alerts_app.command("ack")
def alerts_ack(alert_id: str, note: Optional[str] = None, as_json: bool = JsonOpt) -> None:
    """Acknowledge an open alert (you become the assignee unless someone is)."""
    _alert_action(alert_id, "ack", as_json, text=note)


@alerts_app.command("assign")
def alerts_assign(alert_id: str, assignee: str, as_json: bool = JsonOpt) -> None:
    """Assign an alert to an analyst."""
    _alert_action(alert_id, "assign", as_json, assignee=assignee)


@alerts_app.command("note")
def alerts_note(alert_id: str, text: str, as_json: bool = JsonOpt) -> None:
    """Add a note."""
    _alert_action(alert_id, "note", as_json, text=text)


@alerts_app.command("close")
def alerts_close(alert_id: str, verdict: str = typer.Option(..., help="true_positive, false_positive or benign"),
                 note: Optional[str] = None, as_json: bool = JsonOpt) -> None:  # fmt: skip
    """Close an alert with a verdict."""
    _alert_action(alert_id, "close", as_json, verdict=verdict, text=note)


exceptions_app = typer.Typer(help="Rule exceptions: owner, reason, expiry; changed through the gate.", no_args_is_help=True)
soc_app.add_typer(exceptions_app, name="exceptions")


@exceptions_app.command("list")
def exceptions_list(all_: bool = typer.Option(False, "--all", help="Include expired and revoked ones."), as_json: bool = JsonOpt) -> None:
    """Active exceptions (or all)."""
    from control_plane.soc import exceptions as ex

    _principal()
    rows = ex.listing(_rt(), include_inactive=all_)
    if as_json:
        _emit_json(rows)
        return
    t = Table("id", "rule", "match", "owner", "expires", "active", "reason")
    for r in rows:
        t.add_row(r["id"], r["rule_id"], ", ".join(f"{k}={v}" for k, v in r["match"].items()), r["owner"], r["expires"][:10],
                  "yes" if r["active"] else "no", r["reason"])  # fmt: skip
    out.print(t)


@exceptions_app.command("add")
def exceptions_add(rule: str = typer.Argument(..., help="A rule id or file name, or * for every rule."),
                   match: list[str] = typer.Option(..., "--match", help="field=value (a CIDR for addresses); repeatable."),
                   reason: str = typer.Option(..., help="Why this is not a threat."), days: float = typer.Option(30, help="Expires after this many days (at most 180)."),
                   owner: Optional[str] = typer.Option(None, help="Who answers for it (default: you)."), as_json: bool = JsonOpt) -> None:  # fmt: skip
    """Add an exception (high risk: an approver sees it first)."""
    pairs = {}
    for m in match:
        if "=" not in m:
            raise GovctlError(f"--match {m!r} is not field=value")
        k, v = m.split("=", 1)
        pairs[k] = v
    view = _gated("soc.exception.change", rule, {"action": "add", "match": pairs, "reason": reason, "days": days, **({"owner": owner} if owner else {})})
    _emit_json(view.as_dict()) if as_json else (_pending_note(view) or out.print(f"exception {view.result['id']} until {view.result['expires'][:10]}"))


@exceptions_app.command("revoke")
def exceptions_revoke(exc_id: str, as_json: bool = JsonOpt) -> None:
    """End an exception now."""
    view = _gated("soc.exception.change", exc_id, {"action": "revoke"})
    _emit_json(view.as_dict()) if as_json else (_pending_note(view) or out.print(f"revoked {exc_id}"))


@soc_app.command("decide")
def soc_decide(text: str = typer.Argument(..., help="The shell text to judge (put it after --)."),
               user: str = typer.Option("analyst", "--user", help="Who would type it."),
               source: str = typer.Option("127.0.0.1", "--source", help="From which address."),
               host: str = typer.Option("prim-app-1", "--host", help="On which host."),
               as_json: bool = JsonOpt) -> None:  # fmt: skip
    """Try the inline decision on a command: allow, alert, require_approval or block, the rules that matched and why.

    Nothing runs and nothing is recorded; correlation context is asked of Elasticsearch as the gate would.
    """
    from control_plane.soc.inline import OperationEvent, analyze_cached

    rt = _rt()
    _principal()
    d = rt.inline_engine().evaluate(OperationEvent("host.exec", host, {"command": text}, user, ("ops_engineer",), source))
    an = analyze_cached(text)
    doc = {**d.as_dict(), "commands": [c.line for c in an.commands], "findings": [f.__dict__ for f in an.findings]}
    if as_json:
        _emit_json(doc)
        return
    colour = {"allow": "green", "alert": "yellow", "require_approval": "yellow", "block": "red"}[d.action]
    out.print(f"[{colour}]{d.action}[/{colour}]" + (" (degraded: correlation context unavailable)" if d.degraded else ""))
    for line in doc["commands"]:
        out.print(f"  runs: {line}", highlight=False)
    for r in d.reasons:
        out.print(f"  why:  {r}", highlight=False)
    if d.matched_rules:
        out.print(f"  rules: {', '.join(d.matched_rules)}", highlight=False)


@soc_app.command("ingest")
def soc_ingest(file: Path = typer.Argument(..., exists=True, dir_okay=False, readable=True),
               fmt: str = typer.Option(..., "--format", help="syslog, auditd or json"), as_json: bool = JsonOpt) -> None:  # fmt: skip
    """Parse a log file into ECS events and index them (spooled if Elasticsearch is down, bad lines dead-lettered)."""
    from control_plane.soc.ingest import Ingestor

    rt = _rt()
    p = _principal()
    with open(file, encoding="utf-8", errors="replace") as fh:
        res = Ingestor(rt.es, rt.settings.var / "soc" / "spool").ingest_lines(fh, fmt, source=str(file))
    rt.audit("soc.ingest", target=str(file), actor=p.name, role=",".join(p.roles), params={"format": fmt}, details=res.as_dict())
    if as_json:
        _emit_json(res.as_dict())
    else:
        out.print(f"indexed {res.indexed}, spooled {res.spooled}, replayed {res.replayed}, dead-lettered {res.dead_lettered}"
                  + (f" — {res.errors[0]}" if res.errors else ""))  # fmt: skip


@soc_app.command("health")
def soc_health(as_json: bool = JsonOpt) -> None:
    """The engine's own state: each rule's detection checkpoint, lag and last error, and open engine-health alerts."""
    from control_plane.soc import alerts
    from control_plane.soc.detect import status

    _principal()
    rt = _rt()
    rows = status(rt)
    open_alerts = [a for a in alerts.search(rt.es, kind="engine_health", limit=200) if a["status"] != "closed"]
    if as_json:
        _emit_json({"rules": rows, "engine_health_alerts": open_alerts})
        return
    t = Table("rule", "checkpoint (UTC)", "behind s", "gaps filled", "last error")
    for r in rows:
        t.add_row(r["rule_id"], r["last_end"][:19], f"{r['behind_s']:.0f}", str(r["gaps_filled"]), (r["last_error"] or "-")[:80])
    out.print(t)
    if not open_alerts:
        out.print("no open engine-health alerts")
    for a in open_alerts:
        out.print(f"[red]{a['id']}[/red] {a['rule']['name']}: {a['summary']} (x{a['count']}, last {str(a['last_seen'])[:19]})", highlight=False)


# -- report -----------------------------------------------------------------------------------------

report_app = typer.Typer(help="The monthly report to the provincial authority: build, show, verify, submit, list.", no_args_is_help=True)
app.add_typer(report_app, name="report")
MonthOpt = typer.Option(..., "--month", "-m", help="YYYY-MM (Asia/Shanghai calendar month).")


@report_app.command("build")
def report_build(month: str = MonthOpt, correct: Optional[str] = typer.Option(None, "--correct", help="Build a correcting revision; say why (needs an approver's sign-off)."),
                 as_json: bool = JsonOpt) -> None:  # fmt: skip
    """Build, validate, sign and store a month: JSON, Chinese HTML/PDF, .xlsx. Immutable once built."""
    params: dict[str, Any] = {"correction": True, "reason": correct} if correct else {}
    with err.status(f"building the report for {month}…", spinner="dots"):
        view = _gated("report.build", month, params, reason=correct or "")
    if as_json:
        _emit_json(view.as_dict())
        return
    if _pending_note(view):
        return
    r = view.result
    out.print(f"{month} revision {r['revision']}: {r['path']}  (SM3 {r['digest_sm3'][:16]}…, data coverage {r['coverage_pct']:.2f}%)")
    out.print("  report.json (signed: report.sig.json), report.html, report.pdf, report.xlsx")
    if r.get("provisional"):
        err.print("[yellow]the month has not ended: this revision is provisional and will not be submitted; the final one is built after the month ends[/yellow]")


@report_app.command("show")
def report_show(month: str = MonthOpt, revision: Optional[int] = None, as_json: bool = JsonOpt) -> None:
    """A built month's main figures (or the whole JSON with --json)."""
    from control_plane.report import store

    _principal()
    b = store.get(_rt(), month, revision)
    doc = store.load(b)
    if as_json:
        _emit_json(doc)
        return
    out.print(f"[bold]{month} revision {b.revision}{'' if doc.get('final', True) else ' (provisional)'}[/bold] built {b.created[:19]} by {b.built_by}; coverage {doc['coverage']['prometheus_pct']:.2f}%"
              + (f"; corrects r{doc['supersedes']['revision']}: {doc['supersedes']['reason']}" if doc.get("supersedes") else ""))  # fmt: skip
    t = Table("pool", "hosts", "vCPU", "CPU mean", "CPU p95", "mem mean", "disk mean", "availability %")

    def pc(x: Any) -> str:
        return "-" if x is None else f"{100 * x:.1f}%"

    for p in doc["pools"]:
        t.add_row(p["pool"], str(p["hosts"]), f"{p['vcpu']['allocated'] or 0:g}", pc(p["vcpu"]["utilisation"]["mean"]), pc(p["vcpu"]["utilisation"]["p95"]),
                  pc(p["memory_gib"]["utilisation"]["mean"]), pc(p["storage_gib"]["utilisation"]["mean"]),
                  "-" if p["availability_pct"] is None else f"{p['availability_pct']:.3f}")  # fmt: skip
    out.print(t)
    sec = doc["security"]
    out.print(f"alerts {(sec['alerts'] or {}).get('total', '-')}, refused operations {sec['refused_operations']} (blocked by the SOC {sec['blocked_operations']}); "
              f"under-used hosts {len(doc['underused'])}; files in {b.path}")  # fmt: skip
    for n in doc["notes"]:
        out.print(f"  note: {n}")


@report_app.command("verify")
def report_verify(month: str = MonthOpt, revision: Optional[int] = None, as_json: bool = JsonOpt) -> None:
    """Re-hash the stored report, check its SM2 signature and the schema; exit 1 if anything is off."""
    from control_plane.report import store

    _principal()
    rt = _rt()
    res = store.verify_revision(rt, store.get(rt, month, revision))
    _emit_json(res) if as_json else out.print(f"{month} r{res['revision']}: signature valid (key {res['key_id']}), SM3 {res['digest_sm3'][:16]}… matches, schema valid")


@report_app.command("submit")
def report_submit(month: str = MonthOpt, revision: Optional[int] = None, as_json: bool = JsonOpt) -> None:
    """Seal a built revision for the province and POST it; retried with back-off until the receipt comes back."""
    view = _gated("report.submit", month, {"revision": revision} if revision else {})
    if as_json:
        _emit_json(view.as_dict())
        return
    if _pending_note(view):
        return
    r = view.result
    if r["status"] == "delivered":
        out.print(f"{month} r{r['revision']} delivered to {r['endpoint']}: receipt {r['receipt_id']}")
    else:
        err.print(f"[yellow]{month} r{r['revision']}: {r['status']} after {r['attempts']} attempt(s): {r['last_error']}[/yellow]")
        if r["status"] == "pending":
            err.print(f"it stays in the outbox; the report.deliver job retries it from {r['next_attempt']}")
        raise typer.Exit(1)


@report_app.command("list")
def report_list(as_json: bool = JsonOpt) -> None:
    """Built revisions and their deliveries."""
    from control_plane.report import deliver, store

    _principal()
    rt = _rt()
    revs = store.all_revisions(rt)
    dels = {(d["month"], d["revision"]): d for d in deliver.list_deliveries(rt)}
    if as_json:
        _emit_json([{**b.as_dict(), "delivery": dels.get((b.month, b.revision))} for b in revs])
        return
    t = Table("month", "rev", "built (UTC)", "by", "coverage %", "SM3", "delivery", "receipt")
    for b in revs:
        d = dels.get((b.month, b.revision))
        t.add_row(b.month, str(b.revision), b.created[:19], b.built_by, f"{b.coverage_pct or 0:.2f}", b.digest_sm3[:12],
                  f"{d['status']} ({d['attempts']})" if d else "-", ((d or {}).get("receipt") or {}).get("receipt", {}).get("receipt_id", "-"))  # fmt: skip
    out.print(t)


# -- dr ---------------------------------------------------------------------------------------------

dr_app = typer.Typer(help="Backups and disaster recovery: backup, snapshots, restore, restore-pg, check, forget, prune, status.", no_args_is_help=True)
app.add_typer(dr_app, name="dr")


def _dr_done(view: Any, as_json: bool, fmt: Any) -> None:
    if as_json:
        _emit_json(view.as_dict())
    elif not _pending_note(view):
        fmt(view.result)


@dr_app.command("backup")
def dr_backup(source: str = typer.Argument(..., help="A source from dr.sources."), as_json: bool = JsonOpt) -> None:
    """Back up a configured source now (files: a snapshot of the tree; postgres: a base backup)."""
    with err.status(f"backing up {source}…", spinner="dots"):
        view = _gated("backup.run", source)

    def fmt(r: dict[str, Any]) -> None:
        st = r["stats"]
        out.print(f"{source}: snapshot {r['snapshot'][:16]} in {r['seconds']:.1f} s — {st.get('files', 0)} files, {st.get('bytes', 0) / 1e6:.1f} MB read, "
                  f"{st.get('skipped_unchanged', 0)} unchanged skipped, {st.get('new_bytes', 0) / 1e6:.1f} MB new, {st.get('stored_bytes', 0) / 1e6:.1f} MB stored"
                  + "".join(f"; copied to {c['repository']}" for c in r.get("copies", [])))  # fmt: skip

    _dr_done(view, as_json, fmt)


@dr_app.command("snapshots")
def dr_snapshots(source: Optional[str] = typer.Option(None, "--source"), as_json: bool = JsonOpt) -> None:
    """Snapshots in the repository (signatures verified), oldest first."""
    from dr.service import open_repo

    _principal()
    snaps = [s for s in open_repo(_rt(), create=False).snapshots() if source is None or s["source"] == source]
    if as_json:
        _emit_json(snaps)
        return
    t = Table("id", "source", "time (UTC)", "restore point", "tags", "files", "MB", "new MB")
    for s in snaps:
        st = s.get("stats", {})
        t.add_row(s["id"][:16], s["source"], s["time"][:19], s.get("restore_point", "")[:19], ",".join(s.get("tags", [])), str(st.get("files", "")),
                  f"{st.get('bytes', 0) / 1e6:.1f}", f"{st.get('new_bytes', 0) / 1e6:.1f}")  # fmt: skip
    out.print(t)


@dr_app.command("restore")
def dr_restore(snapshot: str, target: Path = typer.Option(..., "--target", help="Where to restore (created if missing)."),
               include: list[str] = typer.Option([], "--include", help="Only these paths (repeatable)."), as_json: bool = JsonOpt) -> None:  # fmt: skip
    """Restore a files snapshot (contents, modes, times, symlinks; every file's SM3 checked). High risk: needs an approver."""
    view = _gated("dr.restore", snapshot, {"kind": "files", "target": str(target.resolve()), "include": include})
    _dr_done(view, as_json, lambda r: out.print(f"restored {r['files']} files ({r['bytes'] / 1e6:.1f} MB) from {r['snapshot'][:16]} into {r['target']}, all SM3-verified"))


@dr_app.command("restore-pg")
def dr_restore_pg(source: str = typer.Option("state-db", "--source"), to: str = typer.Option("latest", "--to", help="ISO time or latest."),
                  target: Path = typer.Option(..., "--target", help="An empty directory for the restored cluster."), as_json: bool = JsonOpt) -> None:  # fmt: skip
    """Bring up a PostgreSQL cluster at a point in time (base backup + streamed WAL). High risk: needs an approver."""
    view = _gated("dr.restore", source, {"kind": "postgres", "target": str(target.resolve()), "to": to})
    _dr_done(view, as_json, lambda r: out.print(f"{source} restored to {r['to']} in {r['target']}; running on {r.get('host')}:{r.get('port')} "
                                                f"(base {r['base'][:16]} + {r['wal_snapshots']} WAL shipments)"))  # fmt: skip


@dr_app.command("check")
def dr_check(read_data: bool = typer.Option(False, "--read-data", help="Read and verify every pack."),
             subset: Optional[float] = typer.Option(None, "--read-data-subset", help="Read N percent of the packs (rotating)."),
             as_json: bool = JsonOpt) -> None:  # fmt: skip
    """Verify the repository: signatures, trees, index and packs; with data reads, every blob's id. Exit 1 on any problem."""
    from dr.check import check
    from dr.service import open_repo

    _principal()
    res = check(open_repo(_rt(), create=False), read_data=read_data, subset_pct=subset)
    if as_json:
        _emit_json(res.as_dict())
    else:
        out.print(f"{res.snapshots} snapshots, {res.trees} trees, {res.blobs_referenced} blobs referenced, {res.packs} packs"
                  + (f"; read {res.packs_read} packs / {res.blobs_read} blobs" + (f" (slice {res.subset})" if res.subset else "") if res.packs_read else ""))  # fmt: skip
        for p in res.problems:
            err.print(f"[red]problem:[/red] {p}", highlight=False)
    if not res.ok:
        raise typer.Exit(1)


@dr_app.command("forget")
def dr_forget(source: Optional[str] = typer.Option(None, "--source"), dry_run: bool = typer.Option(False, "--dry-run"), as_json: bool = JsonOpt) -> None:
    """Apply the retention policy (dr.retention): keep last/daily/weekly/monthly/yearly, forget the rest. High risk."""
    view = _gated("backup.delete", source or "*", {"dry_run": dry_run})
    _dr_done(view, as_json, lambda r: out.print(f"kept {len(r['kept'])}, {'would forget' if r['dry_run'] else 'forgot'} {len(r['forgotten'])} snapshots"))


@dr_app.command("prune")
def dr_prune(dry_run: bool = typer.Option(False, "--dry-run"), as_json: bool = JsonOpt) -> None:
    """Delete data no snapshot references (waits for a running backup). Critical: two approvers."""
    view = _gated("backup.prune", "repository", {"dry_run": dry_run})
    _dr_done(view, as_json, lambda r: out.print(f"{r['packs_deleted']} packs deleted, {r['packs_repacked']} repacked, ~{r['bytes_freed_before_repack'] / 1e6:.1f} MB freed"))


@dr_app.command("drill")
def dr_drill(stack: str = StackOpt, canary_seconds: float = typer.Option(5.0, "--canary-seconds", help="How long canaries are written before the loss."),
             cleanup: Optional[str] = typer.Option(None, "--cleanup", help="Fail back after drill ID instead of running one."), as_json: bool = JsonOpt) -> None:  # fmt: skip
    """A disaster-recovery drill on the local pools: lose the primary, restore and promote on the backup pool, measure RPO/RTO. High risk."""
    params: dict[str, Any] = {"cleanup": cleanup} if cleanup else {"canary_s": canary_seconds}
    with err.status("drill running…" if not cleanup else "failing back…", spinner="dots"):
        view = _gated("dr.drill", stack, params)

    def fmt(r: dict[str, Any]) -> None:
        if cleanup:
            out.print(f"drill {r['drill']}: failback {r['failback']}, primary link {r['primary_link']}, work files removed")
            return
        c = r["canaries"]
        out.print(f"drill {r['drill']}: [bold]{r['status']}[/bold] — RPO {r['rpo_s']} s, RTO {r['rto_s']} s; canaries {c['recovered']}/{c['written']} recovered, SM3 {'match' if c['checksum_sm3_match'] else 'MISMATCH'}")
        out.print(f"  report: {r['files']['html']} (signed JSON {r['files']['json']}); fail back with: govctl dr drill --cleanup {r['drill']}")

    _dr_done(view, as_json, fmt)


@dr_app.command("drills")
def dr_drills(as_json: bool = JsonOpt) -> None:
    """Drills run so far, newest first, with their measured RPO and RTO."""
    from dr.drill import list_drills

    _principal()
    rows = list_drills(_rt())
    if as_json:
        _emit_json(rows)
        return
    t = Table("drill", "stack", "started (UTC)", "RPO s", "RTO s", "status", "failed back", "report")
    for d in rows:
        t.add_row(d["id"], d["stack"], d["started"][:19], f"{d['rpo_s']}", f"{d['rto_s']}", d["status"], (d["cleaned"] or "-")[:19], d["path"] + "/report.html")
    out.print(t)


@dr_app.command("status")
def dr_status(as_json: bool = JsonOpt) -> None:
    """Per source: the newest restore point and its age against the RPO target."""
    from dr.service import open_repo, rpo_status

    _principal()
    rows = rpo_status(_rt(), open_repo(_rt()))
    if as_json:
        _emit_json(rows)
        return
    t = Table("source", "type", "newest restore point", "age s", "RPO target s", "ok")
    for r in rows:
        t.add_row(r["source"], r["type"], (r["newest"] or "none")[:19], "-" if r["age_s"] is None else f"{r['age_s']:.0f}", str(r["rpo_s"]), "yes" if r["ok"] else "[red]NO[/red]")
    out.print(t)
    if not all(r["ok"] for r in rows):
        raise typer.Exit(1)


# -- up ---------------------------------------------------------------------------------------------


@app.command()
def up() -> None:
    """Start everything: services, the HTTP API and the scheduler. Ctrl-C stops all of it."""
    import uvicorn

    from control_plane.api.app import create_app, server_config
    from control_plane.scheduler import SchedulerService
    from control_plane.services.supervisor import _port_free

    rt = _rt()
    s = rt.settings
    if not _port_free(s.api.host, s.api.port):
        raise GovctlError(f"api: port {s.api.port} on {s.api.host} is already in use", hint="stop the other process or set api.port")
    with err.status("starting services…", spinner="dots"):
        view = _gated("services.up", "all", {"rollback": True}, reason="govctl up")
    started = view.result["started"]
    sched = SchedulerService(rt) if s.scheduler.enabled else None
    if sched:
        sched.start()
    receiver = None
    if s.report.receiver.enabled and _port_free(s.report.receiver.host, s.report.receiver.port):
        from control_plane.report.receiver import serve_in_thread

        receiver = serve_in_thread(s, rt.signer.public_key)[0]
    server = uvicorn.Server(server_config(s, create_app(rt, sched)))  # proxy headers only from configured proxies
    out.print(_status_table(rt.supervisor.status()))
    out.print(f"API        {s.api.url}  (OpenAPI {s.api.url}/docs, health {s.api.url}/healthz, metrics {s.api.url}/metrics)")
    out.print(f"audit key  {rt.signer.public_key.key_id}  (write it down: `govctl audit verify --pin {rt.signer.public_key.key_id}` proves the history against it)")
    out.print(f"scheduler  {'on, ' + s.scheduler.timezone if sched else 'off'}; state DB {s.state_url().split('://')[0]}; var {s.var}")
    if receiver:
        out.print(f"province   stand-in endpoint {s.report.endpoint_url} (report.receiver; set report.endpoint for the real one)")
    out.print("Ctrl-C stops the API, the scheduler and the services this command started.")
    try:
        server.run()
    finally:
        if receiver:
            receiver.should_exit = True
        if sched:
            sched.stop()
        stopped = rt.supervisor.down(started) if started else []
        rt.audit("control_plane.down", details={"stopped": stopped, "reason": "Ctrl-C on govctl up"})
        err.print(f"stopped: API, scheduler{', ' + ', '.join(stopped) if stopped else ''}")


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *a: object) -> None:
        return None


def main() -> None:
    """Console entry point: one-line errors, exit codes, --debug tracebacks."""
    try:
        rc = app(standalone_mode=False)  # click returns typer.Exit codes here instead of raising them
    except GovctlError as exc:
        if _state.get("debug"):
            raise
        err.print(f"[red]error:[/red] {exc.one_line()}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        sys.exit(130)
    except click.exceptions.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    sys.exit(rc if isinstance(rc, int) else 0)


if __name__ == "__main__":
    main()
